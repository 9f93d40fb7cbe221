"""The store's records are the rows of its tables: one declaration each, pinned here."""

from __future__ import annotations

import dataclasses

from processor.store import Entry, EventRecord
from processor.store import models as m


def test_event_record_fields_are_the_event_columns() -> None:
    """EventRecord has one field per column of the event table, in table order."""
    assert [f.name for f in dataclasses.fields(EventRecord)] == [c.name for c in m.event.columns]


def test_entry_fields_are_the_suppression_columns() -> None:
    """Entry has one field per column of the suppression table, in table order."""
    assert [f.name for f in dataclasses.fields(Entry)] == [c.name for c in m.suppression.columns]
