"""The suppression store: ledger, events, suppressions and mailbox state in SQL.

    from processor.store import open_store
    store = open_store(settings)          # engine from settings.database, migrations applied
    store.record_message(ref, verdicts)   # the daemon: one transaction per message
    store.is_suppressed("a@example.org")  # the API and senders

``processor.store.repo`` documents every call; ``processor.store.engine`` the engines (SQLite by
default, PostgreSQL through a URL) and the migrations; ``processor.store.transfer`` the streamed
CSV/JSONL export and import.
"""

from __future__ import annotations

from processor.config import Settings
from processor.store.engine import (
    StoreError,
    at_head,
    create_store_engine,
    current_revision,
    downgrade,
    head_revision,
    upgrade,
)
from processor.store.repo import Store
from processor.store.types import (
    BatchCheck,
    Entry,
    EntryFilter,
    EventRecord,
    ImportReport,
    ImportRow,
    MailboxPosition,
    MessageRef,
    Page,
    QueryError,
    RecordResult,
    Rejected,
    Stats,
    StoreKind,
)

__all__ = [
    "BatchCheck",
    "Entry",
    "EntryFilter",
    "EventRecord",
    "ImportReport",
    "ImportRow",
    "MailboxPosition",
    "MessageRef",
    "Page",
    "QueryError",
    "RecordResult",
    "Rejected",
    "Stats",
    "Store",
    "StoreError",
    "StoreKind",
    "create_store_engine",
    "current_revision",
    "downgrade",
    "head_revision",
    "open_store",
    "upgrade",
]


def open_store(settings: Settings | None = None, *, url: str | None = None, migrate: bool | None = None) -> Store:
    """The store for ``settings.database`` (or ``url``). Migrations are applied first when
    ``migrate`` (default: ``DatabaseSettings.migrate_on_start``); otherwise a database whose schema
    is not at this code's revision raises StoreError naming ``bounce-processor db upgrade``."""
    settings = settings or Settings()
    engine = create_store_engine(settings.database, url=url)
    try:
        if at_head(engine):  # one plain query: Alembic is imported only when it has work to do
            pass
        elif migrate if migrate is not None else settings.database.migrate_on_start:
            upgrade(engine)
        else:
            found, wanted = current_revision(engine), head_revision()
            if found != wanted:
                raise StoreError(
                    f"the database schema is at revision {found or 'none'}, this code needs {wanted}: "
                    "run `bounce-processor db upgrade`"
                )
    except BaseException:
        engine.dispose()
        raise
    return Store(engine, settings)
