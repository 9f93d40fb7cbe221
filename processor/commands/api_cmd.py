"""``bounce-processor api``: serve the HTTP API alone (``bounce-processor run`` serves it too).

    bounce-processor api [--host H] [--port P]
    bounce-processor api new-token NAME [--scope read] [--scope write] [--scope ui]

``new-token`` prints a fresh token once, and the ``[[api.tokens]]`` entry (its hash) for the
configuration; the token itself is stored nowhere.
"""

from __future__ import annotations

import argparse
from typing import Any

from processor.commands import CommandError, settings_from


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("api", help="serve the suppression API (HTTP)",
                       description="Serve the suppression API over HTTP until SIGINT or SIGTERM.")
    p.add_argument("--host", help="listen address (default: api.host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (default: api.port, 8025)")
    p.add_argument("--database", metavar="URL", help="database URL (default: from the configuration)")
    p.set_defaults(handler=run_api)
    actions = p.add_subparsers(dest="api_action", metavar="ACTION")
    t = actions.add_parser("new-token", help="make a token and print its configuration entry")
    t.add_argument("name", help="who the token is for (logged with its requests, recorded as the actor)")
    t.add_argument("--scope", action="append", choices=["read", "write", "ui"], dest="scopes",
                   help="read, write and/or ui (the web console) (repeat; default: read)")
    t.set_defaults(handler=run_new_token)


def run_new_token(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from processor.api.auth import hash_token, new_token
    from processor.config import ApiToken

    scopes = sorted(set(args.scopes or ["read"]))
    token = new_token()
    try:
        entry = ApiToken(name=args.name, hash=hash_token(token), scopes=scopes)
    except ValidationError:
        raise CommandError(f"invalid token name {args.name!r}: use letters, digits and . _ @ : + -") from None
    quoted = ", ".join(f'"{s}"' for s in entry.scopes)
    print(f"token (give it to {entry.name}; it is shown only this once): {token}")
    print()
    print("[[api.tokens]]")
    print(f'name = "{entry.name}"')
    print(f'hash = "{entry.hash}"')
    print(f"scopes = [{quoted}]")
    return 0


def run_api(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from processor.api.server import ApiStartError, serve
    from processor.store import StoreError, open_store

    settings: Any = settings_from(args)
    if args.host is not None:
        settings.api.host = args.host
    if args.port is not None:
        if not 0 <= args.port <= 65535:
            raise CommandError(f"invalid port {args.port}")
        settings.api.port = args.port
    if args.database:
        settings.database.url = args.database

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        store = open_store(settings)
        try:
            await serve(settings, store, stop)
        finally:
            store.close()

    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(main())
    except (ApiStartError, StoreError) as exc:
        raise CommandError(str(exc)) from None
    return 0


def _loop_factory() -> Any:
    """uvloop's event loop where it is installed (a faster server), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
