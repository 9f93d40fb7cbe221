"""``suppress check`` answered at once: scripts call it per address, so the whole process counts.

The full path imports pydantic-settings, SQLAlchemy and SQLModel (over a second of a two-core
machine's time) to run one indexed SELECT. This path reads only the ``[database]`` values the
look-up needs (TOML file and ``BOUNCE_DATABASE__*`` environment, as ``processor.config`` does),
asks the database through its own driver, and prints the same lines. Whatever it is not sure of
(another URL form, a database without the table, ``BOUNCE_DATABASE`` as one JSON value, a driver
error) makes it step aside, and the full path answers, with its errors; the tests compare both
paths on SQLite and PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from processor.timestamps import raw_time

__all__ = ["quick_check"]

DEFAULTS: dict[str, Any] = {
    "url": "sqlite:///bounce-processor.db",
    "lowercase_local_part": True,
    "connect_timeout_s": 10,
    "statement_timeout_ms": 60_000,
    "busy_timeout_ms": 30_000,
}
"""processor.config.DatabaseSettings' defaults for the values used here (a test pins them equal)."""

COLUMNS = (
    "id, address, domain, scope, source, reason, bounce_type, first_seen, last_seen, expires_at, "
    "event_count, last_event_id, note"
)
_TRUE = frozenset({"1", "true", "yes", "on", "t", "y"})
_FALSE = frozenset({"0", "false", "no", "off", "f", "n"})


class _StepAside(Exception):
    """This path cannot answer; the full one will."""


def quick_check(args: argparse.Namespace) -> int | None:
    """The exit code of ``suppress check``, or None when the full path must answer."""
    try:
        database = _database_values(getattr(args, "config", None))
        url = args.database or database["url"]
        lower = database["lowercase_local_part"]
        from processor.addresses import AddressError, normalise_address

        try:
            normals = [normalise_address(address, lowercase_local=lower) for address in args.addresses]
        except AddressError:
            return None  # the full path prints the error as it always has
        if "\x00" in args.scope:
            return None
        lines, suppressed = _look_up(url, database, normals, args.scope, args.json)
    except _StepAside:
        return None
    print("\n".join(lines))
    return 1 if suppressed else 0


def _database_values(config: str | None) -> dict[str, Any]:
    values = dict(DEFAULTS)
    chosen = config if config is not None else os.environ.get("BOUNCE_PROCESSOR_CONFIG")
    if chosen:
        import tomllib

        try:
            with Path(chosen).open("rb") as fh:
                table = tomllib.load(fh).get("database", {})
        except (OSError, ValueError):
            raise _StepAside from None  # the full path reports the file's problem
        if not isinstance(table, dict):
            raise _StepAside
        values.update({key: table[key] for key in DEFAULTS if key in table})
    for name, value in os.environ.items():
        upper = name.upper()
        if upper == "BOUNCE_DATABASE":
            raise _StepAside
        if upper.startswith("BOUNCE_DATABASE__"):
            key = upper.removeprefix("BOUNCE_DATABASE__").lower()
            if key in DEFAULTS:
                values[key] = value
    return {key: _typed(key, value) for key, value in values.items()}


def _typed(key: str, value: Any) -> Any:
    default = DEFAULTS[key]
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise _StepAside
    if isinstance(default, int):
        if isinstance(value, bool):
            raise _StepAside
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise _StepAside from None
        if number < 0:
            raise _StepAside
        return number
    if not isinstance(value, str):
        raise _StepAside
    return value


def _look_up(
    url: str, database: dict[str, Any], normals: list[str], scope: str, as_json: bool
) -> tuple[list[str], bool]:
    now = datetime.now(UTC).replace(tzinfo=None)
    if url.startswith("sqlite:///") and "?" not in url and len(url) > len("sqlite:///"):
        rows = _sqlite_rows(url.removeprefix("sqlite:///"), database, normals, scope, now)
    elif url.startswith(("postgresql+psycopg://", "postgresql://")):
        rows = _postgres_rows(url, database, normals, scope, now)
    else:
        raise _StepAside
    lines: list[str] = []
    suppressed = False
    for normal in normals:
        found = sorted(rows.get(normal, []), key=lambda row: row[3] != "global")
        entry = _entry(found[0]) if found else None
        suppressed = suppressed or entry is not None
        if as_json:
            record: dict[str, Any] = {"address": normal, "suppressed": entry is not None}
            if entry is not None:
                record.update(_record(entry))
            lines.append(json.dumps(record, ensure_ascii=False))
        elif entry is not None:
            lines.append(f"suppressed  {_line(entry)}")
        else:
            lines.append(f"not suppressed  {normal}")
    return lines, suppressed


def _where(mark: str, count: int, scope: str) -> str:
    scoped = "scope = 'global'" if scope == "global" else f"scope IN ('global', {mark})"
    marks = ", ".join([mark] * count)
    return f"address IN ({marks}) AND {scoped} AND (expires_at IS NULL OR expires_at > {mark})"


def _sqlite_rows(
    path: str, database: dict[str, Any], normals: list[str], scope: str, now: datetime
) -> dict[str, list[Any]]:
    import sqlite3

    if path == ":memory:" or not Path(path).is_file():
        raise _StepAside  # the full path creates and migrates a new database
    params: list[Any] = [*normals, *([] if scope == "global" else [scope]), now.isoformat(" ", "microseconds")]
    sql = f"SELECT {COLUMNS} FROM suppression WHERE {_where('?', len(normals), scope)}"
    try:
        connection = sqlite3.connect(
            f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, timeout=database["busy_timeout_ms"] / 1000
        )
        try:
            found = connection.execute(sql, params).fetchall()
        finally:
            connection.close()
    except sqlite3.Error:
        raise _StepAside from None
    return _by_address(found)


def _postgres_rows(
    url: str, database: dict[str, Any], normals: list[str], scope: str, now: datetime
) -> dict[str, list[Any]]:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - a dependency of the project
        raise _StepAside from None
    conninfo = "postgresql://" + url.split("://", 1)[1]
    params: list[Any] = [*normals, *([] if scope == "global" else [scope]), now]
    sql = f"SELECT {COLUMNS} FROM suppression WHERE {_where('%s', len(normals), scope)}"
    options = f"-c statement_timeout={database['statement_timeout_ms']}" if database["statement_timeout_ms"] else ""
    try:
        with psycopg.connect(
            conninfo, autocommit=True, connect_timeout=database["connect_timeout_s"], options=options
        ) as connection:
            found = connection.execute(sql, params).fetchall()
    except (psycopg.Error, ValueError):
        raise _StepAside from None
    return _by_address(found)


def _by_address(rows: list[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for row in rows:
        out.setdefault(row[1], []).append(row)
    return out


def _entry(row: Any) -> dict[str, Any]:
    names = [name.strip() for name in COLUMNS.split(",")]
    entry = dict(zip(names, row, strict=True))
    for name in ("first_seen", "last_seen", "expires_at"):
        entry[name] = raw_time(entry[name])
    return entry


def _line(entry: dict[str, Any]) -> str:
    """As suppress_cmd._line prints a store Entry."""
    expiry = entry["expires_at"].isoformat(timespec="seconds") if entry["expires_at"] else "permanent"
    bits = [entry["address"], entry["scope"], entry["source"], entry["bounce_type"] or "-", entry["reason"] or "-",
            entry["first_seen"].isoformat(timespec="seconds"), expiry]
    if entry["note"]:
        bits.append(entry["note"])
    return "  ".join(bits)


def _record(entry: dict[str, Any]) -> dict[str, Any]:
    """As processor.store.transfer._record writes a store Entry."""
    return {
        "email": entry["address"],
        "scope": entry["scope"],
        "source": entry["source"],
        "reason": entry["reason"],
        "bounce_type": entry["bounce_type"],
        "created": entry["first_seen"].isoformat(),
        "last_seen": entry["last_seen"].isoformat(),
        "expires_at": entry["expires_at"].isoformat() if entry["expires_at"] else "",
        "event_count": entry["event_count"],
        "note": entry["note"],
    }
