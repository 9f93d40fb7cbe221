"""Each record crossing a boundary is declared once, or pinned equal to its one definition here."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing

from processor import client
from processor.api import schemas
from processor.store import Entry, EventRecord, Stats


def test_client_suppression_fields_equal_the_api_schema() -> None:
    """The client's Suppression has exactly the API's Suppression fields, in order, same types."""
    client_hints = typing.get_type_hints(client.Suppression)
    assert [f.name for f in dataclasses.fields(client.Suppression)] == list(schemas.Suppression.model_fields)
    for name, info in schemas.Suppression.model_fields.items():
        assert client_hints[name] == info.annotation, name


def test_entry_json_renders_every_schema_field() -> None:
    """The hot path's plain dict has the keys of the documented Suppression model."""
    fields = {f.name: None for f in dataclasses.fields(Entry)}
    assert list(schemas.entry_json(Entry(**fields))) == list(schemas.Suppression.model_fields)  # type: ignore[arg-type]


def test_api_event_is_a_view_of_the_stored_event() -> None:
    """Every field of the API's Event is a field of the store's EventRecord, with the same type."""
    record_hints = typing.get_type_hints(EventRecord)
    for name, info in schemas.Event.model_fields.items():
        assert name in record_hints, name
        assert record_hints[name] == info.annotation, name


def test_stats_response_mirrors_the_store_stats() -> None:
    """The API's stats body has exactly the store's Stats fields."""
    assert [f.name for f in dataclasses.fields(Stats)] == list(schemas.StatsResponse.model_fields)


def test_client_imports_neither_pydantic_nor_fastapi() -> None:
    """Senders install the client without the server's web stack."""
    code = ("import sys, processor.client; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'fastapi', 'starlette')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
