"""The pipeline's records."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from processor.records import NO_ORIGINAL, Event, EventKind, OriginalMessage


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
