"""Re-classify stored events after a rule change, and show or apply what would change.

    plan = reprocess(store, classifier)               # dry run: nothing is written
    plan = reprocess(store, classifier, apply=True)   # events and suppressions updated

Each (address, scope) is replayed from its stored events in time order through the current
classifier and ``decide.decide``, exactly as the daemon would have decided with today's rules:
manual removals still win, manual additions and imports still count, soft failures are counted
again. The replayed entry is compared with the stored one. Entries that an operator made
(source manual or import) are never changed by a replay. With ``apply`` each changed address is
replayed again inside its own write transaction (holding the address's lock, so that a daemon
recording at the same time is not overwritten), its events get their new verdicts and decisions,
the entry is added, updated or removed, and a "reprocess" event records the change.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Connection

from processor.classify import Classifier
from processor.decide import ActiveEntry, History, Source, decide, outranks
from processor.records import Action, Decision, Event, EventKind, OriginalMessage
from processor.store import models as m
from processor.store._db import as_utc, change_values, utcnow
from processor.store.daily import DailyTally
from processor.store.repo import Store
from processor.store.types import REPORT_KINDS, Entry, StoreKind

__all__ = ["Change", "Plan", "reprocess"]

log = structlog.get_logger(__name__)
_E = m.event
_S = m.suppression


@dataclass(frozen=True, slots=True)
class Target:
    """What an entry should be: labels and expiry (None: no entry)."""

    source: str
    reason: str
    bounce_type: str
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class Change:
    """One entry that a replay changes."""

    address: str
    scope: str
    action: str
    """suppress (new entry), unsuppress (entry removed) or update (labels or expiry)."""
    before: Entry | None
    after: Target | None

    def describe(self) -> str:
        def show(value: Entry | Target | None) -> str:
            if value is None:
                return "not suppressed"
            expiry = value.expires_at.isoformat() if value.expires_at else "permanent"
            return f"{value.source}/{value.bounce_type or '-'}/{value.reason or '-'} until {expiry}"

        return f"{self.action:<10} {self.address} [{self.scope}]: {show(self.before)} -> {show(self.after)}"


@dataclass(slots=True)
class Plan:
    events_seen: int = 0
    events_reclassified: int = 0
    errors: int = 0
    changes: list[Change] = field(default_factory=list)
    applied: bool = False


@dataclass(slots=True)
class _Replay:
    target: Target | None
    updates: list[dict[str, Any]]
    seen: int
    reclassified: int
    errors: int


def _event_of(row: Any) -> Event:
    return Event(
        kind=EventKind(row.kind),
        recipient=row.recipient,
        dsn_action=row.dsn_action,
        status=row.status,
        reply_code=row.reply_code,
        smtp_command=row.smtp_command,
        diagnostic=row.diagnostic,
        diagnostic_type=row.diagnostic_type,
        remote_mta=row.remote_mta,
        reporting_mta=row.reporting_mta,
        mta=row.mta,
        feedback_type=row.feedback_type,
        original=OriginalMessage(message_id=row.original_message_id, from_addr=row.original_from),
    )


def _replay(store: Store, classifier: Classifier, rows: Iterable[Any]) -> _Replay:
    """Replay one (address, scope)'s events, oldest first."""
    policy = store.policy
    entry: Target | None = None
    soft: list[datetime] = []
    removed_at: datetime | None = None
    allow_until: datetime | None = None
    result = _Replay(None, [], 0, 0, 0)
    address = scope = ""
    for row in rows:
        address, scope = row.address, row.scope
        if entry is not None and entry.expires_at is not None and entry.expires_at <= row.recorded_at:
            entry = None
        if row.kind == StoreKind.MANUAL_REMOVE:
            entry, removed_at, allow_until = None, row.received_at, row.expires_at
            continue
        if row.kind in (StoreKind.MANUAL_ADD, StoreKind.IMPORT):
            source = Source.MANUAL if row.kind == StoreKind.MANUAL_ADD else Source.IMPORT
            entry = Target(source, row.reason, row.bounce_type, row.expires_at)
            continue
        if row.kind not in REPORT_KINDS:
            continue
        result.seen += 1
        try:
            verdict = classifier.classify(_event_of(row))
        except Exception as exc:  # a broken rule must not stop the replay; keep the stored verdict
            log.warning("reprocess.classify_failed", event=row.id, error=str(exc))
            result.errors += 1
            continue
        active = None
        if entry is not None:
            active = ActiveEntry(entry.source, entry.reason, entry.bounce_type, entry.expires_at)
        history = History(address, scope, active, tuple(soft), removed_at, allow_until)
        decision: Decision = decide(verdict, history, policy, row.recorded_at, received_at=row.received_at)
        if decision.counted:
            soft.append(row.received_at)
        if decision.action is Action.SUPPRESS:
            labels = Target(decision.source or Source.BOUNCE, verdict.reason, str(verdict.bounce_type),
                            decision.expires_at)
            if active is None or outranks(labels.source, labels.bounce_type, active):
                entry = labels
            else:
                entry = Target(entry.source, entry.reason, entry.bounce_type, decision.expires_at)  # type: ignore[union-attr]
        new = {
            "reason": verdict.reason,
            "bounce_type": str(verdict.bounce_type),
            "rule_id": verdict.rule_id,
            "decision": str(decision.action),
            "counted": decision.counted,
            "expires_at": decision.expires_at,
            "explanation": decision.explanation,
        }
        if (row.reason, row.bounce_type, row.rule_id) != (new["reason"], new["bounce_type"], new["rule_id"]):
            result.reclassified += 1
        if any(getattr(row, key) != value for key, value in new.items()):
            result.updates.append({"event_id": row.id, **new})
    result.target = entry
    return result


def _compare(address: str, scope: str, current: Entry | None, target: Target | None, now: datetime) -> Change | None:
    if current is not None and not current.active(now):
        current = None
    if target is not None and target.expires_at is not None and target.expires_at <= now:
        target = None
    if current is not None and current.source in (Source.MANUAL, Source.IMPORT):
        return None
    if current is None and target is None:
        return None
    if current is None:
        return Change(address, scope, "suppress", None, target)
    if target is None:
        return Change(address, scope, "unsuppress", current, None)
    same = (current.source, current.reason, current.bounce_type, current.expires_at) == (
        target.source, target.reason, target.bounce_type, target.expires_at)
    return None if same else Change(address, scope, "update", current, target)


def _group_rows(conn: Connection, address: str | None, since: datetime | None) -> Iterator[Any]:
    query = sa.select(_E).where(_E.c.address != "")
    if address is not None:
        query = query.where(_E.c.address == address)
    if since is not None:
        recent = sa.select(_E.c.address).where(_E.c.received_at >= since).where(_E.c.kind.in_(REPORT_KINDS))
        query = query.where(_E.c.address.in_(recent.scalar_subquery()))
    query = query.order_by(_E.c.address, _E.c.scope, _E.c.received_at, _E.c.id)
    yield from conn.execution_options(stream_results=True, yield_per=2000).execute(query)


def _current(conn: Connection, address: str, scope: str) -> Entry | None:
    row = conn.execute(
        sa.select(*[_S.c[name] for name in Entry.__dataclass_fields__])
        .where(_S.c.address == address)
        .where(_S.c.scope == scope)
    ).first()
    return Entry(*row) if row is not None else None


def reprocess(
    store: Store,
    classifier: Classifier,
    *,
    apply: bool = False,
    address: str | None = None,
    since: datetime | None = None,
    now: datetime | None = None,
    actor: str = "reprocess",
    note: str = "",
) -> Plan:
    """Replay stored events through ``classifier`` (see the module docstring). ``address``
    limits the replay to one address; ``since`` to addresses with reports received since then."""
    at_now = as_utc(now) or utcnow()
    normal = store.normalise(address) if address is not None else None
    plan = Plan(applied=apply)
    pending: list[tuple[str, str]] = []
    with store.engine.connect() as conn:
        rows = _group_rows(conn, normal, as_utc(since))
        for (addr, scope), group in itertools.groupby(rows, key=lambda r: (r.address, r.scope)):
            replay = _replay(store, classifier, group)
            plan.events_seen += replay.seen
            plan.events_reclassified += replay.reclassified
            plan.errors += replay.errors
            change = _compare(addr, scope, _current(conn, addr, scope), replay.target, at_now)
            if change is not None:
                plan.changes.append(change)
            if apply and (change is not None or replay.updates):
                pending.append((addr, scope))
    if apply:
        for addr, scope in pending:
            _apply_one(store, classifier, addr, scope, at_now, actor=actor, note=note)
    log.info("reprocess.done", events=plan.events_seen, reclassified=plan.events_reclassified,
             changes=len(plan.changes), applied=apply)
    return plan


def _apply_one(
    store: Store, classifier: Classifier, address: str, scope: str, now: datetime, *, actor: str, note: str
) -> None:
    def work(conn: Connection) -> None:
        store.database.lock(conn, [address])
        rows = conn.execute(
            sa.select(_E)
            .where(_E.c.address == address)
            .where(_E.c.scope == scope)
            .order_by(_E.c.received_at, _E.c.id)
        ).all()
        replay = _replay(store, classifier, rows)
        if replay.updates:
            conn.execute(
                sa.update(_E).where(_E.c.id == sa.bindparam("event_id")),
                replay.updates,
            )
            tally = DailyTally()
            tally.reclassified(rows, replay.updates)
            tally.flush_on(conn, store.database.pg)
        current = _current(conn, address, scope)
        change = _compare(address, scope, current, replay.target, now)
        if change is None:
            return
        target = change.after
        event_id = conn.execute(
            sa.insert(_E)
            .values(**change_values(
                StoreKind.REPROCESS, "remove" if target is None else "suppress", address, scope=scope, now=now,
                reason=target.reason if target else "", bounce_type=target.bounce_type if target else "",
                expires_at=target.expires_at if target else None,
                explanation=f"{change.describe()}: {note}" if note else change.describe(), actor=actor))
            .returning(_E.c.id)
        ).scalar_one()
        if target is None:
            assert current is not None
            conn.execute(sa.delete(_S).where(_S.c.id == current.id))
            return
        labels = {"source": target.source, "reason": target.reason, "bounce_type": target.bounce_type,
                  "expires_at": target.expires_at, "last_seen": now, "last_event_id": event_id}
        if current is not None:
            conn.execute(sa.update(_S).where(_S.c.id == current.id).values(**labels))
        else:
            conn.execute(sa.delete(_S).where(_S.c.address == address).where(_S.c.scope == scope))
            conn.execute(sa.insert(_S).values(address=address, domain=address.rpartition("@")[2], scope=scope,
                                              first_seen=now, event_count=1, note="", **labels))

    store.database.write(work)
