"""The outbox of suppression-changed events: what the store writes (in the change's own
transaction) and what the delivery job reads and updates. Functions take a ``Connection``; the
Store's facade owns the transactions.

A change (added, removed, expired) becomes one ``outbox_delivery`` row per endpoint that hears of
it, holding the exact body to send: every retry sends the same bytes under the same
``webhook-id`` (``bp_<row id>``), so a receiver can drop a repeat. Deliveries of one address to
one endpoint go out in row order: a row is due only when no earlier row of the same endpoint and
address is still pending.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from processor.config import OutboxEndpoint, OutboxSettings
from processor.store.models import outbox_attempt as _A
from processor.store.models import outbox_delivery as _D

__all__ = ["Change", "Due", "Outbox", "listmonk_type", "webhook_id"]

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
_COLUMNS = ("endpoint", "address", "change", "body", "status", "attempts", "next_attempt_at", "created_at",
            "delivered_at", "last_error")
MAX_ERROR = 500


@dataclass(frozen=True, slots=True)
class Change:
    """One change of the suppression list, as announced."""

    change: str
    """added, removed or expired."""
    address: str
    scope: str
    source: str
    reason: str
    bounce_type: str
    at: datetime
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Due:
    """A delivery claimed for one try."""

    id: int
    endpoint: str
    address: str
    body: bytes
    attempts: int


def webhook_id(delivery_id: int) -> str:
    """The Standard Webhooks ``webhook-id`` of a delivery: stable across its retries."""
    return f"bp_{delivery_id}"


def listmonk_type(change: Change) -> str:
    """listmonk's bounce type: complaint, hard, or soft (everything else)."""
    if change.source == "complaint" or change.bounce_type == "complaint":
        return "complaint"
    return "hard" if change.bounce_type == "hard" or change.source in ("manual", "import") else "soft"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def render(endpoint: OutboxEndpoint, change: Change) -> bytes | None:
    """The body announcing ``change`` to ``endpoint`` (None: this endpoint does not hear of it)."""
    if change.change not in endpoint.changes:
        return None
    if endpoint.format == "listmonk":
        if change.change != "added":
            return None  # listmonk's bounce webhook records bounces; it has no "unsuppressed"
        return orjson.dumps({
            "email": change.address, "source": "bounce-processor", "type": listmonk_type(change),
            "meta": {"reason": change.reason, "bounce_type": change.bounce_type, "source": change.source,
                     "scope": change.scope},
            "created_at": _iso(change.at),
        })
    return orjson.dumps({
        "type": f"suppression.{change.change}", "timestamp": _iso(change.at),
        "data": {"address": change.address, "scope": change.scope, "source": change.source, "reason": change.reason,
                 "bounce_type": change.bounce_type, "expires_at": _iso(change.expires_at)},
    })


class Outbox:
    """The configured endpoints (bodies rendered per endpoint) and the outbox queries."""

    def __init__(self, settings: OutboxSettings) -> None:
        self.settings = settings
        self.endpoints = dict(settings.endpoints)

    @property
    def enabled(self) -> bool:
        return bool(self.endpoints)

    def rows(self, changes: Sequence[Change]) -> list[dict[str, Any]]:
        """The outbox_delivery rows announcing ``changes`` (none when no endpoint is configured)."""
        rows = []
        for change in changes:
            for name, endpoint in self.endpoints.items():
                body = render(endpoint, change)
                if body is not None:
                    rows.append({"endpoint": name, "address": change.address, "change": change.change,
                                 "body": body.decode(), "status": PENDING, "attempts": 0,
                                 "next_attempt_at": change.at, "created_at": change.at, "delivered_at": None,
                                 "last_error": ""})
        return rows

    def enqueue_raw(self, cursor: Any, changes: Sequence[Change], *, placeholder: str,
                    ts: Callable[[datetime], Any]) -> int:
        """``enqueue`` on a DBAPI cursor (the pipeline's raw write path); ``placeholder`` is the
        driver's parameter mark (? or %s), ``ts`` turns a time into what the driver stores."""
        rows = self.rows(changes)
        if rows:
            marks = ", ".join([placeholder] * len(_COLUMNS))
            cursor.executemany(
                f"INSERT INTO outbox_delivery ({', '.join(_COLUMNS)}) VALUES ({marks})",
                [tuple(ts(r[c]) if isinstance(r[c], datetime) else r[c] for c in _COLUMNS) for r in rows],
            )
        return len(rows)

    def enqueue(self, conn: Connection, changes: Sequence[Change]) -> int:
        """Write the deliveries of ``changes`` on ``conn`` (inside the caller's transaction)."""
        rows = self.rows(changes)
        if rows:
            conn.execute(sa.insert(_D), rows)
        return len(rows)

    # ------------------------------------------------------------------ the delivery job

    def claim(self, conn: Connection, now: datetime, lease: timedelta, limit: int) -> list[Due]:
        """Due deliveries, the first pending one of each (endpoint, address), leased until
        ``now + lease`` (a process that dies holding them leaves them to be tried again then)."""
        earlier = _D.alias("earlier")
        blocked = (sa.select(earlier.c.id)
                   .where(earlier.c.endpoint == _D.c.endpoint, earlier.c.address == _D.c.address,
                          earlier.c.status == PENDING, earlier.c.id < _D.c.id)
                   .exists())
        query = (sa.select(_D.c.id, _D.c.endpoint, _D.c.address, _D.c.body, _D.c.attempts)
                 .where(_D.c.status == PENDING, _D.c.next_attempt_at <= now, ~blocked,
                        _D.c.endpoint.in_(list(self.endpoints)))
                 .order_by(_D.c.id).limit(limit))
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True, of=_D)
        found = conn.execute(query).all()
        if found:
            conn.execute(sa.update(_D).where(_D.c.id.in_([r.id for r in found])).values(next_attempt_at=now + lease))
        return [Due(r.id, r.endpoint, r.address, r.body.encode(), r.attempts) for r in found]

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        """Seconds before the next try after ``failures`` failed ones (+-20 % jitter); a
        Retry-After is honoured within [delay, 2 x delay]."""
        delays = self.settings.retry_delays_seconds or [60.0]
        base = delays[min(failures, len(delays)) - 1] if failures > 0 else delays[0]
        if retry_after is not None:
            return min(max(retry_after, base), 2 * base)
        return base * random.uniform(0.8, 1.2)

    def record(self, conn: Connection, due: Due, *, now: datetime, status_code: int | None, duration_ms: int,
               error: str, retry_after: float | None = None) -> str:
        """Record one try; returns the delivery's new status (delivered, pending or dead)."""
        conn.execute(sa.insert(_A).values(delivery_id=due.id, attempted_at=now, status_code=status_code,
                                          duration_ms=duration_ms, error=error[:MAX_ERROR]))
        attempts = due.attempts + 1
        if status_code is not None and 200 <= status_code < 300:
            conn.execute(sa.update(_D).where(_D.c.id == due.id)
                         .values(status=DELIVERED, attempts=attempts, delivered_at=now, last_error=""))
            return DELIVERED
        endpoint = self.endpoints.get(due.endpoint)
        gone = status_code == 410 or endpoint is None
        if gone or (endpoint is not None and attempts >= endpoint.max_attempts):
            conn.execute(sa.update(_D).where(_D.c.id == due.id)
                         .values(status=DEAD, attempts=attempts, last_error=error[:MAX_ERROR]))
            return DEAD
        wait = timedelta(seconds=self.delay(attempts, retry_after))
        conn.execute(sa.update(_D).where(_D.c.id == due.id)
                     .values(attempts=attempts, next_attempt_at=now + wait, last_error=error[:MAX_ERROR]))
        return PENDING

    @staticmethod
    def counts(conn: Connection) -> dict[tuple[str, str], int]:
        """Deliveries by (endpoint, status)."""
        rows = conn.execute(sa.select(_D.c.endpoint, _D.c.status, sa.func.count())
                            .group_by(_D.c.endpoint, _D.c.status)).all()
        return {(r[0], r[1]): int(r[2]) for r in rows}
