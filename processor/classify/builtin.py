"""A minimal built-in mapping used until the YAML rule engine is in place."""

from __future__ import annotations

from processor.records import BounceType, Event, EventKind, Verdict

_BY_STATUS = {
    "5.1.1": ("userunknown", BounceType.HARD),
    "5.1.2": ("hostunknown", BounceType.HARD),
    "5.1.6": ("hasmoved", BounceType.HARD),
    "5.2.2": ("mailboxfull", BounceType.SOFT),
    "4.2.2": ("mailboxfull", BounceType.SOFT),
    "5.3.4": ("mesgtoobig", BounceType.SOFT),
    "5.2.1": ("suspend", BounceType.SOFT),
}


class BuiltinClassifier:
    def classify(self, event: Event) -> Verdict:
        if event.kind is EventKind.COMPLAINT:
            return Verdict(event, "feedback", BounceType.COMPLAINT, "builtin")
        if event.kind is EventKind.AUTO_REPLY:
            return Verdict(event, "vacation", BounceType.AUTO_REPLY, "builtin")
        if event.kind is EventKind.DELIVERED:
            return Verdict(event, "delivered", BounceType.DELIVERED, "builtin")
        reason, kind = _BY_STATUS.get(event.status, ("undefined", BounceType.UNDETERMINED))
        if kind is BounceType.UNDETERMINED:
            kind = BounceType.SOFT if event.status.startswith("4") or event.kind is EventKind.DELAY else BounceType.UNDETERMINED
        return Verdict(event, reason, kind, "builtin")
