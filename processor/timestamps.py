"""Times as the database drivers return them, made aware UTC. A module of its own (no SQLAlchemy)
so that the fast ``suppress check`` path and the store share it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def raw_time(value: Any) -> datetime | None:
    """A time as a driver returns it (SQLite: text; PostgreSQL: naive UTC) as aware UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        return datetime.fromisoformat(value + "+00:00")
    result: datetime = value.replace(tzinfo=UTC) if value.tzinfo is None else value
    return result
