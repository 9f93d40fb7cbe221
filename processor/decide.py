"""What to do about one verdict, given the address's history (the policy step). Pure: no I/O, no clock.

    decision = decide(verdict, history, settings.policy, now, received_at=when_the_bounce_arrived)

The store gathers the ``History`` of (address, scope) inside the transaction that records the
event, calls ``decide`` and applies the ``Decision``; ``reprocess`` replays stored events through
the same function. The rules, in order:

1. A rule's explicit ``Verdict.action`` wins over the bounce type (``ignore``, ``count``,
   ``suppress``); ``Verdict.ttl`` replaces the configured time-to-live.
2. Delays (``EventKind.DELAY`` or DSN action "delayed") never count as failures (only an
   explicit ``suppress`` rule suppresses on a delay).
3. complaint: suppress at once, global scope, permanent by default (``complaint_ttl_days``);
   ARF opt-out/unsubscribe feedback types suppress too (source "unsubscribe"); feedback types
   that are not the recipient's complaint (not-spam, auth-failure, dmarc, virus) are recorded only.
4. hard: suppress at once, permanent unless ``hard_ttl_days``.
5. soft: counted; suppressed when ``soft_threshold`` counted failures (this one included) fall
   within ``soft_window_days`` of each other, for ``soft_ttl_days``.
6. auto_reply, delivered, undetermined: recorded, never suppress.
7. A manual removal wins: an event received at or before the removal is ignored, and so is a
   bounce (not a complaint) within ``allow_window_days`` after it; soft failures before the
   removal no longer count.
8. An active entry is never weakened: a new suppression never shortens its expiry.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from processor.config import PolicySettings
from processor.records import Action, BounceType, Decision, EventKind, Verdict

__all__ = [
    "GLOBAL_SCOPE",
    "ActiveEntry",
    "History",
    "Source",
    "decide",
    "outranks",
    "scope_for",
]

GLOBAL_SCOPE = "global"


class Source:
    """Where a suppression entry comes from (the ``source`` column)."""

    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    MANUAL = "manual"
    IMPORT = "import"
    ALL = (BOUNCE, COMPLAINT, UNSUBSCRIBE, MANUAL, IMPORT)


@dataclass(frozen=True, slots=True)
class ActiveEntry:
    """The address's suppression entry in the scope, if it is active (not expired) now."""

    source: str
    reason: str
    bounce_type: str
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class History:
    """What the store knows about (address, scope) when a verdict arrives."""

    address: str
    scope: str = GLOBAL_SCOPE
    entry: ActiveEntry | None = None
    soft_failures: tuple[datetime, ...] = ()
    """Received times of the soft failures already counted in this scope near the new event."""
    removed_at: datetime | None = None
    """Time of the latest manual removal in this scope."""
    allow_until: datetime | None = None
    """End of that removal's allow window (None: ``allow_window_days`` after the removal)."""


_RANK = {Source.COMPLAINT: 50, Source.UNSUBSCRIBE: 40, Source.MANUAL: 30, Source.IMPORT: 30}


def _rank(source: str, bounce_type: str) -> int:
    if source in _RANK:
        return _RANK[source]
    return 20 if bounce_type == BounceType.HARD else 10


def outranks(source: str, bounce_type: str, entry: ActiveEntry) -> bool:
    """Whether a new suppression may replace the entry's source, reason and type (complaint >
    unsubscribe > manual/import > hard > soft): a soft bounce never relabels a complaint."""
    return _rank(source, bounce_type) >= _rank(entry.source, entry.bounce_type)


def _is_complaint(verdict: Verdict) -> bool:
    return verdict.bounce_type is BounceType.COMPLAINT or verdict.event.kind is EventKind.COMPLAINT


def scope_for(verdict: Verdict, settings: PolicySettings) -> str:
    """The scope a verdict's suppression applies to (complaints are always global)."""
    if settings.bounce_scope == "sender_domain" and not _is_complaint(verdict):
        sender = verdict.event.original.from_addr.strip().strip("<>")
        domain = sender.rpartition("@")[2].strip().lower()
        if domain:
            return domain
    return GLOBAL_SCOPE


def _days(value: int | None) -> timedelta | None:
    return None if value is None else timedelta(days=value)


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    """The later of two expiries, None (permanent) being the latest."""
    if a is None or b is None:
        return None
    return max(a, b)


def _threshold_reached(
    times: Iterable[datetime], current: datetime, threshold: int, window: timedelta
) -> bool:
    """Whether ``threshold`` failures, ``current`` among them, fit in a span shorter than window."""
    if threshold <= 1:
        return True
    near = sorted([t for t in times if abs(t - current) < window] + [current])
    for start in range(len(near) - threshold + 1):
        group = near[start : start + threshold]
        if group[0] <= current <= group[-1] and group[-1] - group[0] < window:
            return True
    return False


def decide(
    verdict: Verdict,
    history: History,
    settings: PolicySettings,
    now: datetime,
    *,
    received_at: datetime | None = None,
) -> Decision:
    """What to do about ``verdict`` for ``history.address`` (see the module docstring).

    ``now`` is when the decision is taken (expiries count from it); ``received_at`` is when the
    report arrived (it orders the event against manual removals and soft failures; default now).
    """
    event = verdict.event
    at = received_at or now
    complaint = _is_complaint(verdict)
    feedback = event.feedback_type.strip().lower()
    delay = event.kind is EventKind.DELAY or event.dsn_action.strip().lower() == "delayed"
    rule = verdict.rule_id or "-"

    def result(action: Action, why: str, counted: bool = False) -> Decision:
        return Decision(
            verdict=verdict,
            address=history.address,
            action=action,
            scope=history.scope,
            explanation=why,
            counted=counted,
        )

    # 1-6: the action the verdict asks for, before history.
    source = Source.BOUNCE
    if verdict.action is not None:
        action, why = verdict.action, f"rule {rule} says {verdict.action}"
    elif complaint:
        if feedback in settings.ignored_feedback_types:
            return result(Action.IGNORE, f"feedback type {feedback} is not a complaint")
        action, why = Action.SUPPRESS, "complaint"
    elif delay:
        return result(Action.IGNORE, "delays never count")
    elif verdict.bounce_type is BounceType.HARD:
        action, why = Action.SUPPRESS, "hard bounce"
    elif verdict.bounce_type is BounceType.SOFT:
        action, why = Action.COUNT, "soft bounce"
    else:
        return result(Action.IGNORE, f"{verdict.bounce_type} never suppresses")

    if action is Action.IGNORE:
        return result(Action.IGNORE, why)
    if complaint:
        source = Source.UNSUBSCRIBE if feedback in settings.unsubscribe_feedback_types else Source.COMPLAINT
        if feedback in settings.unsubscribe_feedback_types:
            why = f"unsubscribe ({feedback})"
    if delay and action is Action.COUNT:
        return result(Action.IGNORE, "delays never count")

    # 7: a manual removal wins.
    removed = history.removed_at
    if removed is not None:
        if at <= removed:
            return result(Action.IGNORE, f"received before the manual removal at {removed.isoformat()}")
        allow_end = history.allow_until
        if allow_end is None:
            allow_end = removed + timedelta(days=settings.allow_window_days)
        if not complaint and at < allow_end:
            return result(
                Action.IGNORE, f"within the allow window after a manual removal (until {allow_end.isoformat()})"
            )

    counted = False
    if action is Action.COUNT:
        counted = True
        window = timedelta(days=settings.soft_window_days)
        times = [t for t in history.soft_failures if removed is None or t > removed]
        if not _threshold_reached(times, at, settings.soft_threshold, window):
            return result(
                Action.COUNT,
                f"{why}: counted, below {settings.soft_threshold} within {settings.soft_window_days} days",
                counted=True,
            )
        why = f"{settings.soft_threshold} soft failures within {settings.soft_window_days} days"
        ttl = verdict.ttl if verdict.ttl is not None else _days(settings.soft_ttl_days)
    elif complaint:
        ttl = verdict.ttl if verdict.ttl is not None else _days(settings.complaint_ttl_days)
    elif verdict.bounce_type is BounceType.SOFT:
        ttl = verdict.ttl if verdict.ttl is not None else _days(settings.soft_ttl_days)
    else:
        ttl = verdict.ttl if verdict.ttl is not None else _days(settings.hard_ttl_days)

    expires_at = None if ttl is None else now + ttl
    # 8: never weaken an active entry.
    if history.entry is not None:
        expires_at = _later(history.entry.expires_at, expires_at)
    return Decision(
        verdict=verdict,
        address=history.address,
        action=Action.SUPPRESS,
        scope=GLOBAL_SCOPE if complaint else history.scope,
        expires_at=expires_at,
        explanation=why,
        source=source,
        counted=counted,
    )
