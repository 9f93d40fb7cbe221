"""The web console for operators, served by the API under /ui/ (see processor.console.routes).

    install_console(app)     # create_app does this when settings.api.console is on
"""

from __future__ import annotations

import secrets

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from processor.console.routes import STATIC_DIR, Console

__all__ = ["Console", "install_console"]


def install_console(app: FastAPI) -> Console:
    """Add the console's routes and static files to an app made by ``create_app``."""
    settings = app.state.settings
    configured = settings.api.console_secret
    secret = configured.get_secret_value().encode() if configured is not None else secrets.token_bytes(32)
    console = Console(settings, app.state.store, app.state.tokens, secret)
    app.state.console = console
    table = [
        ("/ui", console.overview, ["GET"]),
        ("/ui/", console.overview, ["GET"]),
        ("/ui/login", console.login_form, ["GET"]),
        ("/ui/login", console.login, ["POST"]),
        ("/ui/logout", console.logout, ["POST"]),
        ("/ui/search", console.search, ["GET"]),
        ("/ui/address", console.address, ["GET"]),
        ("/ui/address/remove", console.remove, ["POST"]),
        ("/ui/address/add", console.add, ["POST"]),
        ("/ui/review", console.review, ["GET"]),
        ("/ui/review/reprocess", console.reprocess, ["POST"]),
        ("/ui/mailboxes", console.mailboxes, ["GET"]),
        ("/ui/report", console.report, ["GET"]),
        ("/ui/quarantine/raw", console.quarantined_raw, ["GET"]),
        ("/ui/quarantine/reprocess", console.quarantine_reprocess, ["POST"]),
    ]
    for path, handler, methods in table:
        app.add_route(path, handler, methods=methods, include_in_schema=False)
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="console-static")
    return console
