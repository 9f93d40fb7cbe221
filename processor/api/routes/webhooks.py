"""``POST /v1/webhooks/{name}``: the provider webhook receivers configured under ``[webhooks.<name>]``.

No API token here: each provider proves itself its own way (signature, or HTTP credentials in the
URL), checked by processor.webhooks on the raw body before anything is parsed or stored.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from processor.api.errors import ErrorBody, StrictQueryRoute, error_response
from processor.api.json import json_response
from processor.config import WEBHOOK_NAME
from processor.webhooks import WebhookService

router = APIRouter(route_class=StrictQueryRoute, tags=["webhooks"])

_RESPONSES: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorBody, "description": "Bad signature, stale timestamp, replay, malformed body or an "
                                             "unknown query parameter"},
    401: {"model": ErrorBody, "description": "Missing or wrong HTTP credentials"},
    403: {"model": ErrorBody, "description": "Unknown SNS topic"},
    404: {"model": ErrorBody, "description": "No such webhook is configured"},
}


WebhookName = Annotated[str, Path(pattern=WEBHOOK_NAME, description="The receiver's name: [webhooks.<name>]")]


def _service(request: Request) -> WebhookService | None:
    service: WebhookService | None = request.app.state.webhooks
    return service


@router.post("/v1/webhooks/{name}", summary="Receive a provider's bounce and complaint events", responses=_RESPONSES)
async def receive(name: WebhookName, request: Request) -> Response:
    """Verified, parsed, classified and stored in one transaction; a redelivered event is counted
    as a duplicate. 200 with the counts; 4xx (nothing stored) when the request is refused."""
    service = _service(request)
    if service is None or not service.known(name):
        return error_response(404, "not_found", f"no webhook named {name!r} is configured")
    body = await request.body()
    answer = await run_in_threadpool(service.handle, name, body, dict(request.headers))
    if answer.status >= 400:
        return error_response(answer.status, str(answer.body["error"]), str(answer.body["message"]),
                              headers=answer.headers or None)
    return json_response(answer.body, answer.status)


@router.head("/v1/webhooks/{name}", summary="Probe a webhook URL (no body)",
             responses={200: {"description": "A configured webhook"}, 404: {"description": "No such webhook"}})
async def probe(name: WebhookName, request: Request) -> Response:
    """200 for a configured webhook (some providers probe the URL before they post)."""
    service = _service(request)
    return Response(status_code=200 if service is not None and service.known(name) else 404)
