"""Table-driven: every hand-written sample in samples/mta/ against its row in samples/mta/expected.yaml,
through processor.parse.parse() alone (no classifier). A row names the detector that must claim the
sample and every recipient that must come out, with only the fields the sample determines."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from processor.parse import parse
from processor.parse.mta import ORDER, gateway
from processor.records import Event
from tests.conftest import SAMPLES

DIRECTORY = SAMPLES / "mta"
EXPECTED = DIRECTORY / "expected.yaml"
ROW_KEYS = {"file", "mta", "about", "events"}
EVENT_KEYS = {"recipient", "kind", "status", "reply_code", "smtp_command", "feedback_type", "message_id"}
NON_DETECTOR_PATHS = {"arf", "complaint", "autoreply", "verp"}
"""mta values set outside mta.ORDER: the ARF and look-alike complaint readers, the auto-reply
reader, and the VERP-only fallback."""


def _rows() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(EXPECTED.read_text(encoding="utf-8"))
    if not isinstance(loaded, list):
        raise TypeError(f"{EXPECTED}: expected a list of rows, got {type(loaded).__name__}")
    return loaded


ROWS = _rows()


def _value(event: Event, name: str) -> str:
    if name == "kind":
        return event.kind.value
    if name == "message_id":
        return event.message_id
    value = getattr(event, name)
    assert isinstance(value, str)
    return value


@pytest.mark.parametrize("row", ROWS, ids=[str(r.get("file")) for r in ROWS])
def test_mta_sample(row: dict[str, Any]) -> None:
    """The sample is claimed by its row's detector and yields exactly the row's recipients and values."""
    events = parse((SAMPLES / row["file"]).read_bytes())
    got = sorted(e.recipient for e in events)
    want = sorted(str(e["recipient"]) for e in row["events"])
    assert got == want, f"recipients {got}, expected {want}"
    by_recipient = {e.recipient: e for e in events}
    mismatches: list[str] = []
    for expected in row["events"]:
        event = by_recipient[expected["recipient"]]
        label = event.recipient or "(no recipient)"
        if event.mta != row["mta"]:
            mismatches.append(f"{label}: mta is {event.mta!r}, expected {row['mta']!r}")
        for name, value in expected.items():
            actual = _value(event, name)
            if actual != value:
                mismatches.append(f"{label}: {name} is {actual!r}, expected {value!r}")
    assert not mismatches, "\n".join(mismatches)


def test_rows_are_well_formed() -> None:
    """Each row names an existing sample once, a detector, and events with known string fields;
    every failure or delay pins its status."""
    seen: set[str] = set()
    for row in ROWS:
        assert set(row) <= ROW_KEYS and {"file", "mta", "events"} <= set(row), row
        assert row["file"] not in seen, f"{row['file']} has two rows"
        seen.add(row["file"])
        assert (SAMPLES / row["file"]).is_file(), f"{row['file']} does not exist"
        assert row["events"], f"{row['file']}: no events listed"
        for event in row["events"]:
            assert {"recipient", "kind"} <= set(event) <= EVENT_KEYS, f"{row['file']}: {sorted(event)}"
            assert all(isinstance(v, str) for v in event.values()), f"{row['file']}: non-string value in {event}"
            if event["kind"] in ("failure", "delay"):  # "" pins a report that gives no status at all
                assert "status" in event, f"{row['file']}: {event['recipient']}: a {event['kind']} pins its status"


def test_every_sample_has_a_row() -> None:
    """No .eml file in samples/mta/ goes unchecked."""
    listed = {row["file"] for row in ROWS}
    files = sorted(p.relative_to(SAMPLES).as_posix() for p in DIRECTORY.glob("*.eml"))
    assert files, "samples/mta holds no samples"
    assert [f for f in files if f not in listed] == []


def test_every_detector_is_pinned() -> None:
    """Every detector in mta.ORDER, and each non-detector path, is the expected claimant of some row."""
    # the gateway detector names its events after the product that wrote the report
    claimed = {"gateway" if row["mta"] in gateway.PRODUCTS else row["mta"] for row in ROWS}
    names = {detector.NAME for detector in ORDER} | NON_DETECTOR_PATHS
    assert sorted(names - claimed) == []
    assert sorted(claimed - names) == []
