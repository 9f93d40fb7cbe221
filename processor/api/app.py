"""The application factory: ``create_app(settings, store=None)`` builds the whole HTTP API.

    app = create_app(settings)              # opens the store itself (closed at shutdown)
    app = create_app(settings, store)       # the daemon's store, shared (left open)

Tests build their own app per database. ``processor.api.server.serve`` runs one under uvicorn.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from processor.api.auth import TokenTable
from processor.api.errors import ApiError, Outage, install_handlers
from processor.api.fastpath import LookupFastPath
from processor.api.json import FastJSONResponse
from processor.api.routes import ROUTERS, suppressions
from processor.classify import load_classifier
from processor.config import Settings
from processor.delivery import OutboxSender
from processor.metrics import API_LATENCY
from processor.store import Store, open_store
from processor.webhooks import WebhookService

__all__ = ["create_app"]

log = structlog.get_logger(__name__)

API_VERSION = "1"
_UNMATCHED = "unmatched"
_IMPORT_PATH = "/v1/suppressions/import"
_STORE_ROUTES = ("/v1/", "/readyz")
"""Routes whose success (2xx, or a 404 from a look-up) shows that the database answered."""


class _LatencyAndAccessLog:
    """Pure ASGI middleware: one API_LATENCY observation per request, labelled with the route
    template (never the raw path, which would make a label per address), the access log, and the
    end of a database outage (the first request that reached the database again)."""

    def __init__(self, app: ASGIApp, access_log: bool, outage: Outage) -> None:
        self.app = app
        self.access_log = access_log
        self.outage = outage
        self._children: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path_format", _UNMATCHED) if route is not None else _UNMATCHED
            key = (scope["method"], template, status)
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = API_LATENCY.labels(method=key[0], route=template, status=str(status))
            child.observe(elapsed)
            if self.outage.since is not None and (status < 400 or status == 404) and template.startswith(_STORE_ROUTES):
                self.outage.database_answered()
            if self.access_log:
                log.info("api.request", method=scope["method"], path=scope["path"], status=status,
                         ms=round(elapsed * 1000, 2))


class _BodyLimit:
    """Refuses request bodies larger than ``limit`` (413) on every route but the streamed import,
    which has its own limit; a body is otherwise read whole before validation."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD") or scope["path"] == _IMPORT_PATH:
            await self.app(scope, receive, send)
            return
        limit = self.limit
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await self._refuse(send)
                return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise ApiError(413, "too_large", f"the request body is larger than {limit} bytes")
            return message

        await self.app(scope, counted, send)

    async def _refuse(self, send: Send) -> None:
        response = FastJSONResponse(
            {"error": "too_large", "message": f"the request body is larger than {self.limit} bytes"}, 413
        )
        await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def create_app(
    settings: Settings | None = None, store: Store | None = None, *, lean_lookups: bool = True,
    deliver_outbox: bool = True,
) -> FastAPI:
    """The HTTP API on ``store`` (opened from ``settings.database`` when None, and then closed
    at shutdown). Raises StoreError when the database cannot be opened. ``lean_lookups=False``
    leaves single look-ups to the FastAPI route (see processor.api.fastpath; the tests compare).
    With outbox endpoints configured (and ``deliver_outbox``), the app posts suppression-changed
    events while it runs (processor.delivery)."""
    settings = settings or Settings()
    owned = store is None
    opened = store if store is not None else open_store(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        stop, job, sender = asyncio.Event(), None, None
        if settings.outbox.endpoints and deliver_outbox:
            sender = OutboxSender(opened)
            job = asyncio.create_task(sender.run_forever(stop))
        try:
            yield
        finally:
            stop.set()
            if job is not None and sender is not None:
                await job
                sender.close()
            if owned:
                opened.close()

    app = FastAPI(
        title="bounce-processor suppression API",
        version=API_VERSION,
        description="Ask before each delivery whether an address may be mailed; manage the suppression list.",
        lifespan=lifespan,
        default_response_class=FastJSONResponse,
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.store = opened
    app.state.tokens = TokenTable(settings.api.tokens)
    app.state.webhooks = _webhooks(settings, opened)
    install_handlers(app, (route for router in ROUTERS for route in router.routes if isinstance(route, APIRoute)))
    for router in ROUTERS:
        app.include_router(router)
    if settings.api.console:
        from processor.console import install_console

        install_console(app)
    body_limit = max(16 * 1024 * 1024, settings.api.batch_limit * 1100)
    app.add_middleware(_BodyLimit, limit=body_limit)
    if lean_lookups:
        get_route, head_route = _lookup_routes()
        app.add_middleware(LookupFastPath, store=opened, tokens=app.state.tokens, get_route=get_route,
                           head_route=head_route)
    app.add_middleware(_LatencyAndAccessLog, access_log=settings.api.access_log, outage=app.state.outage)
    if app.state.tokens.open:
        _drop_security(app)
    return app


def _webhooks(settings: Settings, store: Store) -> WebhookService | None:
    """The provider webhook receivers, with the rules loaded once (None when none is configured)."""
    if not settings.webhooks:
        return None
    return WebhookService(settings, store, load_classifier(settings.rules))


def _lookup_routes() -> tuple[APIRoute, APIRoute]:
    """The documented GET and HEAD routes of /v1/suppressions/{address}."""
    found: dict[str, APIRoute] = {}
    for route in suppressions.router.routes:
        if isinstance(route, APIRoute) and route.path_format == "/v1/suppressions/{address}":
            for method in (route.methods or set()) & {"GET", "HEAD"}:
                found[method] = route
    return found["GET"], found["HEAD"]


def _drop_security(app: FastAPI) -> None:
    """Without tokens nothing asks for one: the published schema says so (no security scheme)."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = original()
        schema.get("components", {}).pop("securitySchemes", None)
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                operation.pop("security", None)
                for code in ("401", "403"):
                    operation.get("responses", {}).pop(code, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
