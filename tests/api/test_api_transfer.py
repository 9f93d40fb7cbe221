"""Export and import over HTTP: CSV and JSON lines, streamed both ways."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator

from starlette.testclient import TestClient

from processor.store import ImportRow, Store
from processor.store.transfer import EXPORT_COLUMNS
from tests.api.conftest import ADMIN, READER, auth

EXPORT = "/v1/suppressions/export"
IMPORT = "/v1/suppressions/import"


def _fill(store: Store, count: int) -> None:
    store.import_rows(ImportRow(f"user{i}@d{i % 7}.example", line=i + 1, reason="bounced") for i in range(count))


def test_export_csv_streams_every_entry_once(client: TestClient, store: Store) -> None:
    """A CSV export has one header line and every entry once, across several internal batches."""
    _fill(store, 4500)
    with client.stream("GET", EXPORT, headers=auth(READER)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert response.headers["content-disposition"].startswith('attachment; filename="suppressions-')
        assert "content-length" not in response.headers
        text = "".join(response.iter_text())
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == list(EXPORT_COLUMNS)
    emails = [row[0] for row in rows[1:]]
    assert len(emails) == 4500 == len(set(emails))
    assert EXPORT_COLUMNS[0] not in emails


def test_export_jsonl_with_filters(client: TestClient, store: Store) -> None:
    """A JSON-lines export honours the listing's filters."""
    _fill(store, 70)
    response = client.get(EXPORT, params={"format": "jsonl", "domain": "d3.example"}, headers=auth(READER))
    assert response.headers["content-type"] == "application/x-ndjson"
    records = [json.loads(line) for line in response.text.splitlines()]
    assert len(records) == 10
    assert {r["email"].split("@")[1] for r in records} == {"d3.example"}
    assert records[0]["reason"] == "bounced"


def test_export_errors_come_before_the_stream(client: TestClient) -> None:
    """A bad filter answers a JSON error, not a cut-off download."""
    bad = client.get(EXPORT, params={"domain": "\u00e9" * 70}, headers=auth(READER))
    assert bad.status_code == 422
    assert bad.json()["error"] == "invalid_request"
    unknown = client.get(EXPORT, params={"fmt": "csv"}, headers=auth(READER))
    assert unknown.status_code == 400


def test_import_csv_reports_rejected_lines(client: TestClient, store: Store) -> None:
    """An import reads a provider's CSV, adds the good rows and reports each bad one by line."""
    body = ("Email Address,Reason,Created\n"
            "one@example.org,bounced,2024-01-02T03:04:05Z\n"
            "not-an-address,bounced,\n"
            "two@example.org,complaint,1700000000\n"
            "three@example.org,x,not a date\n"
            "one@example.org,again,\n")
    response = client.post(IMPORT, content=body.encode(), headers={**auth(ADMIN), "content-type": "text/csv"})
    assert response.status_code == 200
    report = response.json()
    assert (report["read"], report["added"], report["duplicates"], report["rejected_count"]) == (5, 2, 1, 2)
    assert [(r["line"], r["value"]) for r in report["rejected"]] == [(3, "not-an-address"), (5, "not a date")]
    assert "no '@'" in report["rejected"][0]["error"]
    entry = store.is_suppressed("one@example.org")
    assert entry is not None and entry.source == "import" and entry.first_seen.year == 2024
    assert store.history("two@example.org")[0].actor == "api:admin"


def test_import_jsonl_streamed_in_chunks(client: TestClient, store: Store) -> None:
    """A JSON-lines body sent in small chunks (lines split across them) imports every row."""
    lines = [json.dumps({"email": f"j{i}@example.org", "reason": "r"}) + "\n" for i in range(3000)]
    data = "".join(lines).encode()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(data), 1000):
            yield data[start : start + 1000]

    response = client.post(IMPORT, params={"format": "jsonl"}, content=chunks(), headers=auth(ADMIN))
    assert response.status_code == 200, response.text
    assert response.json()["added"] == 3000
    assert store.is_suppressed("j2999@example.org") is not None


def test_export_then_import_round_trips(client: TestClient, store: Store) -> None:
    """What export writes, import reads back: re-importing it changes nothing."""
    _fill(store, 50)
    exported = client.get(EXPORT, headers=auth(READER)).content
    again = client.post(IMPORT, content=exported, headers={**auth(ADMIN), "content-type": "text/csv"}).json()
    assert (again["read"], again["added"], again["already_suppressed"], again["rejected_count"]) == (50, 0, 50, 0)


def test_import_refuses_what_it_cannot_read(app_client: Callable[..., TestClient]) -> None:
    """Unknown media type 415, no address column 422, too large 413: each a JSON error."""
    small = app_client(max_import_bytes=100)
    headers = auth(ADMIN)
    media = small.post(IMPORT, content=b"a@b.org\n", headers={**headers, "content-type": "application/pdf"})
    assert media.status_code == 415
    header = small.post(IMPORT, content=b"name,when\nx,y\n", headers={**headers, "content-type": "text/csv"})
    assert header.status_code == 422 and "no address column" in header.json()["message"]
    csv_headers = {**headers, "content-type": "text/csv"}
    big = small.post(IMPORT, content=b"email\n" + b"a@example.org\n" * 20, headers=csv_headers)
    assert big.status_code == 413 and big.json()["error"] == "too_large"

    def chunked() -> Iterator[bytes]:
        yield b"email\n"
        for _ in range(20):
            yield b"a@example.org\n"

    streamed = small.post(IMPORT, content=chunked(), headers={**headers, "content-type": "text/csv"})
    assert streamed.status_code == 413 and "importing the same rows again is safe" in streamed.json()["message"]
