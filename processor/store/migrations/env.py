"""Alembic environment: runs on the connection ``processor.store.engine.upgrade`` hands over
(already inside a locked transaction), or on ``sqlalchemy.url`` for Alembic's own command line."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from processor.store.models import METADATA

config = context.config


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=METADATA,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


given = config.attributes.get("connection")
if given is not None:
    _run(given)
else:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set sqlalchemy.url, or use `bounce-processor db upgrade`")
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        _run(connection)
        connection.commit()
