"""``bounce-processor db upgrade|current``: the database schema (Alembic migrations)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from processor.commands import CommandError, settings_from

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("db", help="database schema: apply migrations, show the revision",
                       description="Manage the database schema (Alembic migrations).")
    actions = p.add_subparsers(dest="db_action", metavar="ACTION")
    actions.required = True
    up = actions.add_parser("upgrade", help="apply pending migrations (safe to run at any time)")
    up.add_argument("--revision", default="head", help="target revision (default: head)")
    up.add_argument("--database", metavar="URL", help="database URL (default: from the configuration)")
    up.set_defaults(handler=run_upgrade)
    cur = actions.add_parser("current", help="show the database's revision and this code's")
    cur.add_argument("--database", metavar="URL", help="database URL (default: from the configuration)")
    cur.set_defaults(handler=run_current)


def _engine(args: argparse.Namespace) -> Engine:
    from processor.store import StoreError, create_store_engine

    settings = settings_from(args)
    try:
        return create_store_engine(settings.database, url=args.database)
    except StoreError as exc:
        raise CommandError(str(exc)) from None


def run_upgrade(args: argparse.Namespace) -> int:
    from processor.store import StoreError, upgrade

    engine = _engine(args)
    try:
        before, after = upgrade(engine, args.revision)
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    finally:
        engine.dispose()
    if before == after:
        print(f"database is at revision {after} (nothing to do)")
    else:
        print(f"database upgraded from {before or 'empty'} to {after}")
    return 0


def run_current(args: argparse.Namespace) -> int:
    from processor.store import StoreError, current_revision, head_revision

    engine = _engine(args)
    try:
        found = current_revision(engine)
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    finally:
        engine.dispose()
    head = head_revision()
    state = "up to date" if found == head else "needs `bounce-processor db upgrade`"
    print(f"database revision {found or 'none'}, code revision {head}: {state}")
    return 0 if found == head else 1
