"""The API's request and response bodies (the OpenAPI schema is generated from these).

Hot paths build the same shapes as plain dicts (``entry_json``) and render them with orjson;
the models document them and validate what comes in.
"""

from __future__ import annotations

import re
import typing
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from processor.store import Entry, EventRecord, ImportReport, Stats

SCOPE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,254}$"
"""A scope: "global", a sending domain, or a list name."""

Scope = Annotated[str, Field(pattern=SCOPE_PATTERN, description='"global", a sending domain or a list name')]

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})", re.ASCII)


def _rfc3339(value: object) -> object:
    """Only RFC 3339 text (what the schema says): no Unix numbers, no time without a zone."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or _RFC3339.fullmatch(value) is None:
        raise ValueError("expected an RFC 3339 time with its zone, such as 2024-05-01T12:00:00Z")
    return value


EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def _in_range(value: datetime) -> datetime:
    """Times far outside the list's life would only overflow date arithmetic further on."""
    if not EARLIEST <= value <= LATEST:
        raise ValueError("expected a time between 1970 and 9000")
    return value


Rfc3339 = Annotated[datetime, BeforeValidator(_rfc3339), AfterValidator(_in_range)]
"""A time given in a request: RFC 3339 with a zone (``format: date-time``), 1970 to 9000."""


def _unicode_text(value: str) -> str:
    """JSON may escape a lone surrogate (``"\\ud800"``), which no database or JSON answer can hold."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"not valid Unicode text (a lone surrogate at character {exc.start})") from None
    return value


Text = Annotated[str, AfterValidator(_unicode_text)]
"""A string from a request body that is valid Unicode (no lone surrogates)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Suppression(BaseModel):
    """One suppression entry: why and since when the address is not to be mailed."""

    address: str
    """The normalised address."""
    scope: str
    source: str
    """bounce, complaint, unsubscribe, manual or import."""
    reason: str
    bounce_type: str
    since: datetime
    """When this suppression began (first_seen)."""
    last_seen: datetime
    expires_at: datetime | None
    """None: permanent."""
    event_count: int
    note: str


def entry_json(entry: Entry) -> dict[str, Any]:
    """A Suppression as a plain dict (orjson renders the datetimes as RFC 3339)."""
    return {
        "address": entry.address,
        "scope": entry.scope,
        "source": entry.source,
        "reason": entry.reason,
        "bounce_type": entry.bounce_type,
        "since": entry.first_seen,
        "last_seen": entry.last_seen,
        "expires_at": entry.expires_at,
        "event_count": entry.event_count,
        "note": entry.note,
    }


class CheckRequest(_Strict):
    addresses: list[Text] = Field(description="Addresses to check (api.batch_limit at most, 10,000 by default)")
    scope: Scope = "global"


class CheckResponse(BaseModel):
    checked: int
    suppressed: dict[str, Suppression]
    """Keyed by the address as given."""
    invalid: dict[str, str]
    """Address as given -> why it is not an address."""


class SuppressRequest(_Strict):
    reason: Text = Field(default="manual", min_length=1, max_length=200)
    note: Text = Field(default="", max_length=2000)
    expires_at: Rfc3339 | None = Field(default=None, description="When it stops; null: permanent")
    ttl_days: int | None = Field(default=None, ge=1, le=36_500, description="Alternative to expires_at")
    scope: Scope = "global"
    bounce_type: Text = Field(default="", max_length=40)


class RemoveResponse(BaseModel):
    address: str
    scope: str
    removed: bool
    """Whether an active entry was removed (the removal is recorded either way)."""
    entry: Suppression | None


class Page(BaseModel):
    entries: list[Suppression]
    next_cursor: str | None
    """Pass as ``cursor`` for the next page; null on the last page. Entries added while paging
    come after the cursor, so no entry is skipped or repeated."""


EVENT_FIELDS = (
    "id", "kind", "address", "recipient", "scope", "mailbox", "original_message_id", "status", "reply_code",
    "smtp_command", "diagnostic", "remote_mta", "reporting_mta", "mta", "feedback_type", "reason", "bounce_type",
    "rule_id", "decision", "counted", "expires_at", "explanation", "actor", "received_at", "recorded_at",
)
"""The fields of a stored event (``EventRecord``, declared once in processor.store.types) the API shows."""
_EVENT_TYPES = typing.get_type_hints(EventRecord)
# The response models below take their field types from the store's records: one declaration each.


class Event(BaseModel):
    """One stored event: a classified report, or a change made to the list (manual, import...)."""

    __annotations__ = {name: _EVENT_TYPES[name] for name in EVENT_FIELDS}


def event_json(event: EventRecord) -> dict[str, Any]:
    return {name: getattr(event, name) for name in EVENT_FIELDS}


class History(BaseModel):
    address: str
    events: list[Event]
    """Newest first."""
    next_before: int | None
    """Pass as ``before`` for older events; null when there are none."""


class StatsResponse(BaseModel):
    __annotations__ = typing.get_type_hints(Stats)


def stats_json(stats: Stats) -> dict[str, Any]:
    return {name: getattr(stats, name) for name in StatsResponse.model_fields}


class RejectedRow(BaseModel):
    line: int
    value: str
    error: str


class ImportResponse(BaseModel):
    read: int
    added: int
    already_suppressed: int
    duplicates: int
    rejected_count: int
    rejected: list[RejectedRow]
    """The first rejected rows, with their line numbers."""


def import_json(report: ImportReport) -> dict[str, Any]:
    return {
        "read": report.read,
        "added": report.added,
        "already_suppressed": report.already_suppressed,
        "duplicates": report.duplicates,
        "rejected_count": report.rejected_count,
        "rejected": [{"line": r.line, "value": r.value, "error": r.error} for r in report.rejected],
    }


class Health(BaseModel):
    status: str
