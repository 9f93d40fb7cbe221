"""What several benches share: the replicated messages and a throwaway database.

A bench's worker may run this file from another checkout's virtualenv (``--baseline``), so the
project is imported inside the functions only: ``processor`` is then that checkout's.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Iterator
from itertools import count, islice
from pathlib import Path


def replicated(samples: Path) -> Iterator[bytes]:
    """The .eml files under ``samples``, over and over, each copy made unique: its recipients
    renamed (``local.cN@domain`` for the Nth round) and an ``X-Bench-Copy`` header added."""
    from processor.parse import ParseError, parse

    bases: list[tuple[bytes, list[bytes]]] = []
    for path in sorted(samples.rglob("*.eml")):
        data = path.read_bytes()
        try:
            recipients = sorted({e.recipient.encode() for e in parse(data) if e.recipient}, key=len, reverse=True)
        except ParseError:
            recipients = []
        bases.append((data, [r for r in recipients if r in data]))
    for n in count():
        data, recipients = bases[n % len(bases)]
        copy = n // len(bases)
        for recipient in recipients:
            local, _, domain = recipient.partition(b"@")
            data = data.replace(recipient, local + b".c%d@" % copy + domain)
        yield b"X-Bench-Copy: %d\r\n" % n + data


def replicate(number: int, samples: Path) -> list[bytes]:
    """The first ``number`` messages of ``replicated(samples)``."""
    return list(islice(replicated(samples), number))


@contextlib.contextmanager
def scratch_database(engine: str, prefix: str) -> Iterator[str]:
    """The URL of a new, empty database, dropped (PostgreSQL: on the server at 127.0.0.1:5432 or
    $BOUNCE_TEST_POSTGRES_URL) or deleted (SQLite: a file) afterwards."""
    if engine != "postgresql":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/bench.db"
        return
    import sqlalchemy as sa

    admin = os.environ.get("BOUNCE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    admin_engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin_engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin_engine.dispose()
