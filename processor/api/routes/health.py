"""/healthz (the process answers), /readyz (the database answers) and /metrics (Prometheus)."""

from __future__ import annotations

import anyio
import sqlalchemy as sa
import structlog
from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.responses import Response

from processor.api.auth import READ, TokenTable
from processor.api.deps import StoreDep
from processor.api.errors import ErrorBody, StrictQueryRoute, error_response
from processor.api.json import json_response
from processor.api.routes.common import blocking
from processor.api.schemas import Health
from processor.store import Store

router = APIRouter(route_class=StrictQueryRoute, tags=["health"],
                   responses={400: {"model": ErrorBody, "description": "Unknown query parameter"}})
log = structlog.get_logger(__name__)

READY_TIMEOUT = 3.0
_OK = b'{"status":"ok"}'


@router.get("/healthz", response_model=Health, summary="Alive")
async def healthz() -> Response:
    """200 while the process serves requests."""
    return Response(_OK, media_type="application/json")


def _ping(store: Store) -> None:
    with store.engine.connect() as conn:
        conn.execute(sa.text("SELECT 1 FROM suppression LIMIT 1")).all()


@router.get("/readyz", response_model=Health, summary="Ready (the database answers)",
            responses={503: {"model": ErrorBody, "description": "The database cannot be reached"}})
async def readyz(request: Request, store: StoreDep) -> Response:
    """200 when a query reaches the database within a few seconds, else 503 (an outage is logged
    once, when it begins, not at every probe)."""
    outage = request.app.state.outage
    try:
        with anyio.fail_after(READY_TIMEOUT):
            await blocking(_ping, store)
    except TimeoutError:
        outage.request_failed("GET", "/readyz", f"no answer from the database within {READY_TIMEOUT} s")
        return error_response(503, "unavailable", "the suppression database does not answer")
    except (sa.exc.SQLAlchemyError, OSError) as exc:
        outage.request_failed("GET", "/readyz", f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}")
        return error_response(503, "unavailable", "the suppression database cannot be reached")
    return json_response({"status": "ok"})


@router.get("/metrics", summary="Prometheus metrics",
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "The Prometheus text format"},
                       401: {"model": ErrorBody, "description": "A token is required (api.public_metrics = false)"},
                       403: {"model": ErrorBody, "description": "The token lacks the read scope"}})
async def metrics(request: Request) -> Response:
    """Messages per mailbox and outcome, events per type and reason, suppression changes, IMAP
    errors and request latency histograms. Public unless ``api.public_metrics`` is false."""
    if not request.app.state.settings.api.public_metrics:
        tokens: TokenTable = request.app.state.tokens
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        tokens.require(token.strip() if scheme.lower() == "bearer" else None, READ)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
