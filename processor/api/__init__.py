"""The HTTP API for senders and operators (FastAPI, served by uvicorn).

    from processor.api import create_app, serve
    app = create_app(settings, store)          # an ASGI app (tests, other servers)
    await serve(settings, store, stop_event)   # until stop is set (the caller owns store and signals)
    await api_service(settings, stop_event)    # the daemon's service hook: opens its own store

Routes live in ``processor.api.routes`` (one module per resource); authentication in
``processor.api.auth``; errors in ``processor.api.errors``.
"""

from __future__ import annotations

from processor.api.app import create_app
from processor.api.server import ApiStartError, api_service, serve

__all__ = ["ApiStartError", "api_service", "create_app", "serve"]
