"""Errors as JSON, never a traceback: one body shape for every failure the API answers with.

    {"error": "invalid_address", "message": "invalid address 'x': no '@' in the address",
     "problems": [{"location": "path.address", "message": "..."}]}

``error`` is a stable code a program can branch on; ``message`` is for people; ``problems``
(optional) lists each invalid input. Store and internal failures are logged here with their
detail and answered with a generic message: no driver text, URL or stack reaches a client.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from processor.addresses import AddressError
from processor.api.json import json_response
from processor.metrics import API_UNAVAILABLE
from processor.store import QueryError, StoreError
from processor.store.transfer import TransferError

__all__ = [
    "ERROR_RESPONSES",
    "ApiError",
    "ErrorBody",
    "Outage",
    "Problem",
    "StrictQueryRoute",
    "error_response",
    "install_handlers",
]

log = structlog.get_logger(__name__)


class Problem(BaseModel):
    location: str
    """Where the invalid input is: ``path.address``, ``query.limit``, ``body.addresses.3``, ..."""
    message: str


class ErrorBody(BaseModel):
    error: str
    """A stable code: unauthorized, forbidden, not_found, invalid_address, invalid_request,
    unknown_parameter, too_large, method_not_allowed, unavailable, internal."""
    message: str
    problems: list[Problem] | None = None


class ApiError(Exception):
    """An error the API answers with ``status`` and an ErrorBody."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        problems: list[Problem] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.problems = problems
        self.headers = headers


def error_response(
    status: int,
    error: str,
    message: str,
    problems: Iterable[Problem] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {"error": error, "message": message}
    if problems is not None:
        body["problems"] = [p.model_dump() for p in problems]
    return json_response(body, status, headers)


def _doc(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _doc("Unknown query parameter, or a malformed request"),
    401: _doc("No valid bearer token"),
    403: _doc("The token lacks the scope this operation needs"),
    405: _doc("Method not allowed"),
    422: _doc("Invalid input (the problems name each one)"),
    503: _doc("The database cannot be reached"),
}
"""Documented on every /v1 operation, so that clients (and schemathesis) know each answer."""

_STATUS_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
}


class Outage:
    """The database outage as the API sees it: logged once when it begins (the first request that
    could not reach the database) and once when it ends (the first request that did), with the
    count of requests answered 503 in between; each such request is counted in
    ``bounce_processor_api_unavailable_total``. One line per failed request would flood the log
    at every sender's request rate."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.failed = 0

    def request_failed(self, method: str, path: str, error: str) -> None:
        API_UNAVAILABLE.inc()
        if self.since is None:
            self.since = time.monotonic()
            self.failed = 0
            log.error("api.database_unavailable", error=error, first_request=f"{method} {path}",
                      action="answering 503 until it returns; logged again when it does")
        self.failed += 1

    def database_answered(self) -> None:
        if self.since is None:
            return
        seconds = round(time.monotonic() - self.since, 1)
        self.since = None
        log.warning("api.database_available", after_seconds=seconds, failed_requests=self.failed)


def _location(loc: Iterable[Any]) -> str:
    return ".".join(str(part) for part in loc)


def _validation_problems(exc: RequestValidationError) -> list[Problem]:
    """Pydantic's errors without their ``input`` and ``ctx`` (which would echo request data)."""
    problems = []
    for error in exc.errors():
        message = str(error.get("msg", "invalid value"))
        problems.append(Problem(location=_location(error.get("loc", ())), message=message))
    return problems


def _summary(problems: list[Problem]) -> str:
    first = problems[0] if problems else None
    if first is None:
        return "invalid request"
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{first.location}: {first.message}{more}"


def install_handlers(app: FastAPI, routes: Iterable[APIRoute]) -> None:
    """Every error the API can meet, answered as an ErrorBody (``routes``: for 405's Allow header)."""
    routes = list(routes)

    async def api_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.error, exc.message, exc.problems, exc.headers)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = _STATUS_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        headers = dict(exc.headers) if exc.headers else None
        if exc.status_code == 405:
            # Starlette names only the first route whose path matches; name every method allowed.
            allowed = sorted({m for r in routes if r.path_regex.match(request.url.path) for m in r.methods or ()})
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
        return error_response(exc.status_code, code, message, headers=headers)

    async def validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = _validation_problems(exc)
        return error_response(422, "invalid_request", _summary(problems), problems)

    async def address_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AddressError)
        location = "path.address" if "address" in request.path_params else "body"
        return error_response(422, "invalid_address", str(exc), [Problem(location=location, message=exc.problem)])

    async def query_error(_: Request, exc: Exception) -> Response:
        return error_response(422, "invalid_request", str(exc))

    async def transfer_error(_: Request, exc: Exception) -> Response:
        return error_response(422, "invalid_file", str(exc))

    outage = Outage()
    app.state.outage = outage

    async def store_error(request: Request, exc: Exception) -> Response:
        outage.request_failed(request.method, request.url.path, str(exc))
        return error_response(503, "unavailable", "the suppression database cannot be reached; try again later",
                              headers={"Retry-After": "5"})

    async def internal_error(request: Request, exc: Exception) -> Response:
        log.error("api.internal_error", path=request.url.path, method=request.method,
                  error_type=type(exc).__name__, exc_info=exc)
        return error_response(500, "internal", "internal error; it has been logged")

    handlers: dict[type[Exception], Callable[[Request, Exception], Awaitable[Response]]] = {
        ApiError: api_error,
        StarletteHTTPException: http_error,
        RequestValidationError: validation_error,
        AddressError: address_error,
        QueryError: query_error,
        TransferError: transfer_error,
        StoreError: store_error,
        Exception: internal_error,
    }
    for kind, handler in handlers.items():
        app.add_exception_handler(kind, handler)


def _query_names(route: APIRoute) -> frozenset[str]:
    """The query parameters a route declares, its dependencies' included."""
    names: set[str] = set()
    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        names.update(field.alias for field in dependant.query_params)
        pending.extend(dependant.dependencies)
    return frozenset(names)


class StrictQueryRoute(APIRoute):
    """An APIRoute that answers 400 to a query parameter it does not declare (a misspelt filter
    must not silently widen a listing or an export), or to one given twice (no operation takes a
    list in its query, and silently using one of the values would be a guess)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        allowed = _query_names(self)

        async def strict(request: Request) -> Response:
            if request.scope["query_string"]:
                params = request.query_params
                unknown = sorted({name for name in params if name not in allowed})
                repeated = sorted({name for name in params if name in allowed and len(params.getlist(name)) > 1})
                if repeated:
                    raise ApiError(
                        400, "invalid_request", f"query parameter {repeated[0]!r} is given more than once",
                        [Problem(location=f"query.{name}", message="given more than once") for name in repeated],
                    )
                if unknown:
                    shown = ", ".join(repr(name[:60]) for name in unknown[:5])
                    expected = ", ".join(sorted(allowed)) or "none"
                    raise ApiError(
                        400, "unknown_parameter", f"unknown query parameter {shown} (expected: {expected})",
                        [Problem(location=f"query.{name[:60]}", message="unknown parameter") for name in unknown[:5]],
                    )
            return await handler(request)

        return strict
