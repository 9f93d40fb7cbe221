"""Raw SQL helpers shared by the store's modules on the driver's cursor (no SQLAlchemy, no store
imports: ``daily`` and ``kept`` use them as well as ``_db``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MAX_PARAMETERS = 30_000
"""Parameters in one statement (PostgreSQL's protocol allows 65,535)."""


def insert_rows(cursor: Any, pg: bool, head: str, rows: Sequence[Sequence[Any]], tail: str = "") -> None:
    """``head`` (``INSERT INTO t (a, b)``) VALUES each row, then ``tail`` (e.g. an ON CONFLICT
    clause), on the driver's cursor: a multi-row INSERT per chunk on PostgreSQL (one statement
    and one round trip, where executemany sends a statement per row), executemany on SQLite (in
    process, where a long statement only costs parsing)."""
    if not rows:
        return
    width = len(rows[0])
    mark = "%s" if pg else "?"
    one = f"({', '.join([mark] * width)})"
    if not pg:
        cursor.executemany(f"{head} VALUES {one} {tail}", rows)
        return
    step = max(1, MAX_PARAMETERS // width)
    for start in range(0, len(rows), step):
        chunk = rows[start : start + step]
        cursor.execute(f"{head} VALUES {', '.join([one] * len(chunk))} {tail}",
                       [value for row in chunk for value in row])
