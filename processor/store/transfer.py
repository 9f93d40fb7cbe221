"""Streamed export and import of suppression lists, as CSV or JSON lines.

    for item in read_rows(binary_stream, "csv"):   # ImportRow, or Rejected(line, value, error)
        ...
    write_entries(store.iter_entries(filters), text_stream, "jsonl")

Neither side holds the file in memory: rows are read and written one at a time.

Import accepts our own export and the columns of common providers' suppression exports: the
address from ``email``, ``email address``, ``address``, ``recipient`` (or a file that is just
one address per line, without a header); the reason from ``reason``, ``error``,
``suppression reason``; the time from ``created``, ``created_at``, ``date``, ``timestamp``,
``last update time``, ``first_seen`` (ISO 8601, RFC 2822 or Unix seconds/milliseconds); and, from
our own export, ``last_seen`` and ``event_count``, so that export -> import -> export gives the
same file (an export is a backup). Header
names are matched ignoring case, spaces and punctuation. A row that cannot be imported is a
``Rejected`` naming its line number and the problem; the rows after it are still read.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import IO, Any, Literal

from processor.decide import GLOBAL_SCOPE, Source
from processor.store.types import Entry, ImportRow, Rejected

__all__ = ["EXPORT_COLUMNS", "Format", "TransferError", "format_for", "parse_time", "read_rows", "write_entries"]

Format = Literal["csv", "jsonl"]

EXPORT_COLUMNS = (
    "email", "scope", "source", "reason", "bounce_type", "created", "last_seen", "expires_at",
    "event_count", "note",
)

_ALIASES: dict[str, tuple[str, ...]] = {
    "address": ("email", "emailaddress", "address", "recipient", "emailaddr", "mail"),
    "reason": ("reason", "error", "suppressionreason", "bouncereason"),
    "created": ("created", "createdat", "date", "timestamp", "lastupdatetime", "firstseen", "addedat"),
    "scope": ("scope",),
    "source": ("source",),
    "bounce_type": ("bouncetype", "type"),
    "expires_at": ("expiresat", "expires"),
    "note": ("note", "notes", "comment"),
    "last_seen": ("lastseen",),
    "event_count": ("eventcount",),
}
_FIELD_OF = {alias: name for name, aliases in _ALIASES.items() for alias in aliases}
_KEY = re.compile(r"[^a-z0-9]")
_EPOCH = re.compile(r"\d{1,13}(\.\d+)?", re.ASCII)


MAX_EVENT_COUNT = 2**31 - 1
"""The event_count column is a 32-bit integer."""


class TransferError(ValueError):
    """The file as a whole cannot be imported (no address column, unknown format)."""


def format_for(path: str, given: str | None) -> Format:
    """The format named, else the one the file name's extension says (default CSV)."""
    if given:
        if given not in ("csv", "jsonl"):
            raise TransferError(f"unknown format {given!r} (expected csv or jsonl)")
        return "csv" if given == "csv" else "jsonl"
    lowered = path.lower()
    return "jsonl" if lowered.endswith((".jsonl", ".ndjson", ".json")) else "csv"


def parse_time(value: str) -> datetime:
    """A time from an export: ISO 8601, RFC 2822, or Unix seconds or milliseconds (UTC if no zone)."""
    text = value.strip()
    if not text:
        raise ValueError("empty time")
    if (len(text) <= 13 and text.isascii() and text.isdigit()) or _EPOCH.fullmatch(text):
        number = float(text)
        if number > 1e11:
            number /= 1000
        return datetime.fromtimestamp(number, UTC)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        try:
            parsed = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            raise ValueError(f"not a time: {text[:60]!r}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _decoded_lines(stream: Iterable[bytes], bad: set[int]) -> Iterator[str]:
    """Lines as text; a line that is not UTF-8 is replaced and its number remembered."""
    for number, line in enumerate(stream, start=1):
        data = line[3:] if number == 1 and line.startswith(b"\xef\xbb\xbf") else line
        try:
            yield data.decode("utf-8")
        except UnicodeDecodeError:
            bad.add(number)
            yield data.decode("utf-8", errors="replace")


_TIME_FIELDS = ("created", "expires_at", "last_seen")


def _row(fields: dict[str, str], line: int) -> ImportRow | Rejected:
    get = fields.get
    address = get("address", "").strip()
    if not address:
        return Rejected(line, "", "no address in this row")
    times: list[datetime | None] = []
    for name in _TIME_FIELDS:
        value = get(name, "").strip()
        try:
            times.append(parse_time(value) if value else None)
        except ValueError as exc:
            return Rejected(line, value, f"invalid {name.replace('_', ' ')} time: {exc}")
    created, expires, last_seen = times
    event_count = 1
    value = get("event_count", "").strip()
    if value:
        if not (value.isascii() and value.isdigit() and 1 <= int(value) <= MAX_EVENT_COUNT):
            return Rejected(line, value, f"invalid event count {value[:40]!r} (expected a whole number from 1)")
        event_count = int(value)
    source = get("source", "").strip().lower() or Source.IMPORT
    if source not in Source.ALL:
        return Rejected(line, source, f"unknown source {source!r} (expected one of: {', '.join(Source.ALL)})")
    return ImportRow(address, line, get("reason", "").strip(), created, get("scope", "").strip() or GLOBAL_SCOPE,
                     source, get("bounce_type", "").strip().lower(), expires, get("note", "").strip(),
                     last_seen, event_count)


def read_rows(stream: Iterable[bytes], fmt: Format = "csv") -> Iterator[ImportRow | Rejected]:
    """The rows of a binary stream (any iterable of byte lines), one at a time (see the module docstring)."""
    if fmt == "jsonl":
        yield from _read_jsonl(stream)
    else:
        yield from _read_csv(stream)


def _read_csv(stream: Iterable[bytes]) -> Iterator[ImportRow | Rejected]:
    bad: set[int] = set()
    reader = csv.reader(_decoded_lines(stream, bad))
    columns: list[str | None] | None = None
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Rejected(reader.line_num, "", f"unreadable CSV: {exc}")
            continue
        line = reader.line_num
        if columns is None:
            keys = [_KEY.sub("", cell.lower()) for cell in cells]
            mapped = [_FIELD_OF.get(key) for key in keys]
            if "address" in mapped:
                columns = mapped
                continue
            if len(cells) == 1 and "@" in cells[0]:
                columns = ["address"]
            else:
                raise TransferError(
                    "no address column in the CSV header (expected one of: email, email address, address, "
                    f"recipient); header was {','.join(cells)[:120]!r}"
                )
        if not any(cell.strip() for cell in cells):
            continue
        if line in bad:
            yield Rejected(line, "", "the line is not valid UTF-8")
            continue
        fields = {name: cell for name, cell in zip(columns, cells, strict=False) if name is not None}
        yield _row(fields, line)


def _read_jsonl(stream: Iterable[bytes]) -> Iterator[ImportRow | Rejected]:
    bad: set[int] = set()
    for number, text in enumerate(_decoded_lines(stream, bad), start=1):
        if not text.strip():
            continue
        if number in bad:
            yield Rejected(number, "", "the line is not valid UTF-8")
            continue
        try:
            value: Any = json.loads(text)
        except json.JSONDecodeError as exc:
            yield Rejected(number, text.strip()[:80], f"invalid JSON: {exc.msg}")
            continue
        if isinstance(value, str):
            value = {"email": value}
        if not isinstance(value, dict):
            yield Rejected(number, text.strip()[:80], "expected a JSON object or string")
            continue
        fields: dict[str, str] = {}
        for key, item in value.items():
            name = _FIELD_OF.get(_KEY.sub("", str(key).lower()))
            if name is not None and item is not None:
                fields[name] = item if isinstance(item, str) else str(item)
        broken = _surrogate_field(fields)
        if broken is not None:
            yield Rejected(number, _escaped(fields[broken])[:80],
                           f"{broken} is not valid Unicode text (it holds a lone surrogate escape)")
            continue
        yield _row(fields, number)


def _surrogate_field(fields: dict[str, str]) -> str | None:
    """The first field holding a lone surrogate (JSON can escape one; no database can store it)."""
    for name, text in fields.items():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return name
    return None


def _escaped(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _record(entry: Entry) -> dict[str, Any]:
    return {
        "email": entry.address,
        "scope": entry.scope,
        "source": entry.source,
        "reason": entry.reason,
        "bounce_type": entry.bounce_type,
        "created": entry.first_seen.isoformat(),
        "last_seen": entry.last_seen.isoformat(),
        "expires_at": entry.expires_at.isoformat() if entry.expires_at else "",
        "event_count": entry.event_count,
        "note": entry.note,
    }


def write_entries(entries: Iterable[Entry], stream: IO[str], fmt: Format = "csv") -> int:
    """Write entries one at a time; returns how many."""
    count = 0
    if fmt == "jsonl":
        for entry in entries:
            record = _record(entry)
            if not record["expires_at"]:
                record["expires_at"] = None
            stream.write(json.dumps(record, ensure_ascii=False))
            stream.write("\n")
            count += 1
        return count
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for entry in entries:
        record = _record(entry)
        writer.writerow([record[name] for name in EXPORT_COLUMNS])
        count += 1
    return count
