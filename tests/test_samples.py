"""Table-driven: every row of samples/expected.yaml against what the parser and the default
classifier make of that sample. A row lists only the fields its sample determines; each listed
field must match exactly."""

from __future__ import annotations

import re
from dataclasses import fields
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from processor.classify import Classifier, load_classifier
from processor.parse import parse
from processor.records import Event, OriginalMessage, Verdict
from tests.conftest import SAMPLES

EXPECTED = SAMPLES / "expected.yaml"
VERDICT_FIELDS = {"reason", "bounce_type", "rule_id"}
EVENT_FIELDS = {f.name for f in fields(Event)} - {"original"}
ORIGINAL_FIELDS = {f.name for f in fields(OriginalMessage)} | {"message_id"}
OWN_DIRECTORIES = ("generated", "handwritten")
"""Sample directories this table must cover completely (others may add rows for theirs)."""


def _rows() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(EXPECTED.read_text(encoding="utf-8"))
    if not isinstance(loaded, list):
        raise TypeError(f"{EXPECTED}: expected a list of rows, got {type(loaded).__name__}")
    return loaded


ROWS = _rows()

PENDING = SAMPLES / "generated" / "PENDING.md"


def _pending_rows() -> list[dict[str, Any]]:
    """The rows of samples/generated/PENDING.md's YAML block: the correct answers for genuine
    samples that the parser gets wrong today (none when the file is absent)."""
    if not PENDING.is_file():
        return []
    block = re.search(r"^```yaml\n(.*?)^```", PENDING.read_text(encoding="utf-8"), re.MULTILINE | re.DOTALL)
    if block is None:
        raise ValueError(f"{PENDING}: no ```yaml block")
    loaded = yaml.safe_load(block.group(1)) or []
    if not isinstance(loaded, list):
        raise TypeError(f"{PENDING}: expected a list of rows, got {type(loaded).__name__}")
    return loaded


PENDING_ROWS = _pending_rows()


@cache
def _classifier() -> Classifier:
    return load_classifier()


def _value(event: Event, verdict: Verdict, name: str) -> str:
    if name in VERDICT_FIELDS:
        return str(getattr(verdict, name))
    if name in EVENT_FIELDS:
        return str(getattr(event, name))
    if name == "message_id":
        return event.original.message_id
    if name in ORIGINAL_FIELDS:
        return str(getattr(event.original, name))
    raise KeyError(f"unknown field {name!r} in {EXPECTED.name}")


def _pairs(expected: list[dict[str, Any]], actual: list[Event]) -> list[tuple[dict[str, Any], Event]]:
    """Expected events matched to actual ones: by recipient and kind when those are unique in the
    row, else by position."""
    keys = [(str(e.get("recipient", "")).lower(), str(e.get("kind", ""))) for e in expected]
    if len(set(keys)) == len(keys) and all(e.get("kind") for e in expected):
        by_key = {(a.recipient.lower(), str(a.kind)): a for a in actual}
        pairs = []
        for row, key in zip(expected, keys, strict=True):
            found = by_key.get(key)
            assert found is not None, (
                f"no {key[1]} event for {key[0]!r}; the parser reported {[(a.recipient, str(a.kind)) for a in actual]}"
            )
            pairs.append((row, found))
        return pairs
    return list(zip(expected, actual, strict=True))


@pytest.mark.parametrize("row", ROWS, ids=[str(r.get("file")) for r in ROWS])
def test_sample(row: dict[str, Any]) -> None:
    """The sample's events carry exactly the values its row in samples/expected.yaml lists."""
    path = SAMPLES / row["file"]
    expected = row["events"]
    events = parse(path.read_bytes())
    assert len(events) == len(expected), (
        f"{len(events)} events, expected {len(expected)}: {[(e.recipient, str(e.kind), e.status) for e in events]}"
    )
    mismatches = []
    for want, event in _pairs(expected, events):
        verdict = _classifier().classify(event)
        for name, value in want.items():
            got = _value(event, verdict, name)
            if got != str(value):
                mismatches.append(f"{event.recipient or '(no recipient)'}: {name} is {got!r}, expected {value!r}")
    assert not mismatches, "\n".join(mismatches)


def test_pending_samples_still_fail() -> None:
    """Each row of PENDING.md still fails; one that passes must move to expected.yaml."""
    passing = []
    for row in PENDING_ROWS:
        try:
            test_sample(row)
        except AssertionError:
            continue
        passing.append(row["file"])
    assert passing == [], f"these rows pass now; move them to samples/expected.yaml: {passing}"


def test_pending_rows_are_well_formed() -> None:
    """Every PENDING.md row names an existing sample that has no row in expected.yaml, once."""
    listed = {row["file"] for row in ROWS}
    seen: set[str] = set()
    known = VERDICT_FIELDS | EVENT_FIELDS | ORIGINAL_FIELDS
    for row in PENDING_ROWS:
        assert set(row) == {"file", "events"}, row
        assert row["file"] not in seen, f"{row['file']} is listed twice"
        assert row["file"] not in listed, f"{row['file']} has a row in expected.yaml too"
        seen.add(row["file"])
        assert (SAMPLES / row["file"]).is_file(), f"{row['file']} does not exist"
        for event in row["events"]:
            assert set(event) <= known, f"{row['file']}: unknown fields {set(event) - known}"
            assert "kind" in event, f"{row['file']}: every event names its kind"


def test_rows_are_well_formed() -> None:
    """Every row names an existing sample once, lists events, and uses only known field names;
    every failure pins its bounce type and reason."""
    seen: set[str] = set()
    known = VERDICT_FIELDS | EVENT_FIELDS | ORIGINAL_FIELDS
    for row in ROWS:
        assert set(row) == {"file", "events"}, row
        assert row["file"] not in seen, f"{row['file']} has two rows"
        seen.add(row["file"])
        assert (SAMPLES / row["file"]).is_file(), f"{row['file']} does not exist"
        assert isinstance(row["events"], list), row
        for event in row["events"]:
            assert set(event) <= known, f"{row['file']}: unknown fields {set(event) - known}"
            assert "kind" in event, f"{row['file']}: every event names its kind"
            if event["kind"] == "failure":
                pinned = {"bounce_type", "reason"}
                assert pinned <= set(event), f"{row['file']}: a failure pins {sorted(pinned - set(event))}"


@pytest.mark.parametrize("directory", OWN_DIRECTORIES)
def test_every_sample_has_a_row(directory: str) -> None:
    """No sample in generated/ or handwritten/ goes unchecked: each has a row in expected.yaml
    (or, if the parser gets it wrong today, in generated/PENDING.md)."""
    listed = {row["file"] for row in ROWS + PENDING_ROWS}
    files = sorted(p.relative_to(SAMPLES).as_posix() for p in (SAMPLES / directory).rglob("*.eml"))
    assert files, f"samples/{directory} holds no samples"
    missing = [f for f in files if f not in listed]
    assert not missing, f"samples without a row in {EXPECTED.name}: {missing}"


def test_samples_come_from_example_domains() -> None:
    """The project's own samples name only reserved example domains (no real addresses)."""
    allowed = re.compile(
        r"(?:^|\.)(?:example|invalid|example\.(?:com|net|org))$|^(?:localhost|127\.0\.0\.1)$", re.IGNORECASE
    )
    address = re.compile(rb"[\w.+=-]+@([a-z0-9-]+(?:\.[a-z0-9-]+)+)", re.IGNORECASE)
    bad: dict[str, set[str]] = {}
    for directory in OWN_DIRECTORIES:
        for path in (SAMPLES / directory).rglob("*.eml"):
            text = re.sub(rb"=\r?\n", b"", path.read_bytes())  # undo quoted-printable soft breaks
            for match in address.finditer(text):
                domain = match.group(1).decode().lower().rstrip(".")
                if not allowed.search(domain):
                    bad.setdefault(str(Path(path).relative_to(SAMPLES)), set()).add(domain)
    assert not bad, bad
