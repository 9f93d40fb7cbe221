"""The pipeline's records."""

from __future__ import annotations

import dataclasses
import pickle
from datetime import timedelta

import pytest

from processor.records import NO_ORIGINAL, Action, BounceType, Event, EventKind, OriginalMessage, Verdict


def test_an_event_without_an_original_has_the_empty_one() -> None:
    """The default original is an OriginalMessage with every field empty, shared and frozen."""
    first, second = Event(EventKind.FAILURE, "a@example.org"), Event(EventKind.DELAY)
    assert first.original == OriginalMessage() and first.original is second.original is NO_ORIGINAL
    assert first.message_id == "" and first.original.correlation == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.original.subject = "changed"  # type: ignore[misc]
    given = OriginalMessage(message_id="<m@example.org>")
    assert Event(EventKind.FAILURE, original=given).message_id == "<m@example.org>"
    assert OriginalMessage() == NO_ORIGINAL  # nothing changed the shared one
    assert pickle.loads(pickle.dumps(first)) == first


def test_records_come_back_from_a_pickle_whole() -> None:
    """What the daemon's parse workers send back (events in verdicts, pickled as their field
    values): every field, set to a value of its own, comes back equal and of its type, at every
    protocol; the empty original is not multiplied."""
    original = OriginalMessage(*(f"<{f.name}@example.org>" for f in dataclasses.fields(OriginalMessage)
                                 if f.name != "correlation"), correlation=(("x-campaign", "c1"),))
    texts = {f.name: f"{f.name} text" for f in dataclasses.fields(Event) if f.type == "str"}
    event = Event(EventKind.COMPLAINT, **texts, original=original)
    verdict = Verdict(event, "spam", BounceType.COMPLAINT, "rule-7", Action.SUPPRESS, timedelta(days=3))
    bare = Verdict(Event(EventKind.DELAY, "b@example.org"), "", BounceType.SOFT)
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        back, back_bare = pickle.loads(pickle.dumps([verdict, bare], protocol))
        assert back == verdict and back_bare == bare
        assert type(back) is Verdict and type(back.event) is Event and type(back.event.original) is OriginalMessage
        assert back.event.kind is EventKind.COMPLAINT and back.bounce_type is BounceType.COMPLAINT
        assert back.action is Action.SUPPRESS and back.ttl == timedelta(days=3)
        assert [getattr(back.event, name) for name in texts] == list(texts.values())
        assert back_bare.event.original is NO_ORIGINAL and back_bare.action is None and back_bare.ttl is None
