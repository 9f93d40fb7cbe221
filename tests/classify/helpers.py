"""Helpers for the rule tests."""

from __future__ import annotations

from processor.records import Event, EventKind


def make_event(kind: str = "failure", **fields: str) -> Event:
    """An event as the parser would give it; unspecified fields are empty."""
    return Event(kind=EventKind(kind), **fields)  # type: ignore[arg-type]
