"""Streamed CSV/JSONL export and import: provider formats, bad rows with line numbers, round trips."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from processor.store import EntryFilter, ImportRow, Rejected, Store
from processor.store.transfer import TransferError, parse_time, read_rows, write_entries
from tests.store.helpers import message, verdict

NOW = datetime.now(UTC).replace(microsecond=0)


def rows(text: str | bytes, fmt: str = "csv") -> list[ImportRow | Rejected]:
    data = text.encode() if isinstance(text, str) else text
    return list(read_rows(io.BytesIO(data), fmt))  # type: ignore[arg-type]


# file content, format, the (line, error) of each rejected row: every other row is imported.
BAD_ROWS = [
    ("email,reason\nok@example.org,x\nbroken@,x\n", "csv",
     [(3, "invalid address 'broken@': empty domain after '@'")]),
    ("email,reason\n,no address\nok@example.org,x\n", "csv", [(2, "no address in this row")]),
    ("email,created\nok@example.org,2024-01-01\nlate@example.org,yesterday\n", "csv",
     [(3, "invalid created time: not a time: 'yesterday'")]),
    ("email,expires_at\nok@example.org,\nlate@example.org,someday\n", "csv",
     [(3, "invalid expires at time: not a time: 'someday'")]),
    ("email,last_seen\nok@example.org,2024-01-01\nx@example.org,never\n", "csv",
     [(3, "invalid last seen time: not a time: 'never'")]),
    ("email,expires_at\nold@example.org,2001-01-01T00:00:00Z\n", "csv",
     [(2, "already expired (2001-01-01T00:00:00+00:00)")]),
    ("email,source\nok@example.org,manual\nx@example.org,elsewhere\n", "csv",
     [(3, "unknown source 'elsewhere' (expected one of: bounce, complaint, unsubscribe, manual, import)")]),
    ("email\nAlice <alice@example.org>\nok@example.org\n", "csv",
     [(2, "invalid address 'Alice <alice@example.org>': not a valid email address (rejected by the address parser)")]),
    (b"email\nok@example.org\nbad\xff@example.org\nfine@example.org\n", "csv", [(3, "the line is not valid UTF-8")]),
    ('email,note\n"multi@example.org","line one\nline two"\nbad@,x\n', "csv",
     [(4, "invalid address 'bad@': empty domain after '@'")]),
    ('{"email": "ok@example.org"}\n{"email": \n"plain@example.org"\n[1, 2]\n{"reason": "x"}\n', "jsonl",
     [(2, "invalid JSON: Expecting value"), (4, "expected a JSON object or string"), (5, "no address in this row")]),
    ('{"email": "ok@example.org", "created": "soon"}\n', "jsonl", [(1, "invalid created time: not a time: 'soon'")]),
    ('{"email": "ok@example.org"}\n{"email": "n@example.org", "reason": "a\\u0000b"}\n', "jsonl",
     [(2, "a field contains a NUL character")]),
]


@pytest.mark.parametrize(("content", "fmt", "rejected"), BAD_ROWS)
def test_bad_import_rows_are_rejected_with_line_numbers(
    store: Store, content: str | bytes, fmt: str, rejected: list[tuple[int, str]]
) -> None:
    """Each bad row is reported with its line number and error; the good rows are imported."""
    seen: list[Rejected] = []
    report = store.import_rows(read_rows(io.BytesIO(content if isinstance(content, bytes) else content.encode()),
                                         fmt),  # type: ignore[arg-type]
                               on_rejected=seen.append, now=NOW)
    assert [(r.line, r.error) for r in report.rejected] == rejected
    assert seen == report.rejected
    assert report.rejected_count == len(rejected)
    assert report.added == report.read - len(rejected)


def test_missing_address_column_is_a_file_error() -> None:
    """A CSV without any address column is refused as a whole, naming the header."""
    with pytest.raises(TransferError, match=r"no address column in the CSV header .* 'name,reason'"):
        rows("name,reason\nx,y\n")


PROVIDERS = [
    ("email,created,reason,status\nA@Example.org,1700000000,550 5.1.1 unknown user,5.1.1\n",
     ("a@example.org", "550 5.1.1 unknown user", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC))),
    ("address,code,error,created_at\nb@example.org,550,mailbox unavailable,Tue, 14 Nov 2023 22:13:20 UTC\n",
     None),
    ('address,code,error,created_at\nb@example.org,550,mailbox unavailable,"Tue, 14 Nov 2023 22:13:20 UTC"\n',
     ("b@example.org", "mailbox unavailable", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC))),
    ("EmailAddress,Reason,LastUpdateTime\nc@example.org,BOUNCE,2023-11-14T22:13:20.123Z\n",
     ("c@example.org", "BOUNCE", datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC))),
    ("Email Address,Suppression Reason,Created\nd@example.org,unsubscribed,1700000000000\n",
     ("d@example.org", "unsubscribed", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC))),
    ("\ufeffe@example.org\n", ("e@example.org", "", None)),
]


@pytest.mark.parametrize(("content", "expected"), PROVIDERS)
def test_provider_csv_columns_are_understood(content: str, expected: tuple[str, str, datetime | None] | None) -> None:
    """SendGrid/Mailgun/SES-style headers, epoch or ISO or RFC 2822 times, and bare lists all read."""
    [row] = rows(content)
    if expected is None:
        assert isinstance(row, Rejected)
        return
    assert isinstance(row, ImportRow)
    assert (row.address.lower(), row.reason, row.created) == expected


def test_read_rows_streams() -> None:
    """Rows come out before the input is exhausted (no whole-file buffering): an endless input works."""

    def endless() -> Iterator[bytes]:
        yield b"email\n"
        n = 0
        while True:
            n += 1
            yield f"u{n}@example.org\n".encode()

    reader = read_rows(endless())
    first = [next(reader) for _ in range(3)]
    assert [r.address for r in first if isinstance(r, ImportRow)] == ["u1@example.org", "u2@example.org",
                                                                      "u3@example.org"]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_then_import_round_trip(store: Store, store_with: object, fmt: str, tmp_path: object) -> None:
    """What export writes, import reads back into an empty list unchanged (labels, times, scope)."""
    store.add("m@example.org", reason="asked", note="ticket, with comma", scope="list:news",
              expires_at=NOW + timedelta(days=5), now=NOW)
    store.add("jörg@bücher.example", reason="asked", now=NOW)
    out = io.StringIO()
    assert write_entries(store.iter_entries(), out, fmt) == 2  # type: ignore[arg-type]
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM suppression")
    report = store.import_rows(read_rows(io.BytesIO(out.getvalue().encode()), fmt),  # type: ignore[arg-type]
                               now=NOW)
    assert (report.added, report.rejected_count) == (2, 0)
    entries = {e.address: e for e in store.iter_entries(now=NOW)}
    m = entries["m@example.org"]
    assert (m.scope, m.source, m.reason, m.note, m.first_seen, m.expires_at) == (
        "list:news", "manual", "asked", "ticket, with comma", NOW, NOW + timedelta(days=5))
    assert entries["jörg@xn--bcher-kva.example"].expires_at is None


def test_import_keeps_active_entries_and_replaces_expired_ones(store: Store) -> None:
    """Importing an address already suppressed changes nothing; an expired one is suppressed again."""
    store.record_message(message(), [verdict("kept@example.org")], now=NOW)
    store.add("stale@example.org", expires_at=NOW + timedelta(hours=1), now=NOW)
    later = NOW + timedelta(days=1)
    report = store.import_rows(
        [ImportRow("kept@example.org", 2, "imported"), ImportRow("stale@example.org", 3, "imported"),
         ImportRow("STALE@example.org", 4, "imported twice"), ImportRow("new@example.org", 5)],
        now=later,
    )
    assert (report.read, report.added, report.already_suppressed, report.duplicates) == (4, 2, 1, 1)
    kept = store.is_suppressed("kept@example.org", now=later)
    assert kept is not None and (kept.source, kept.reason) == ("bounce", "userunknown")
    stale = store.is_suppressed("stale@example.org", now=later)
    assert stale is not None and (stale.source, stale.reason, stale.expires_at) == ("import", "imported", None)
    assert [e.kind for e in store.history("new@example.org")] == ["import"]
    assert store.list_entries(EntryFilter(source="import"), now=later).entries[0].address == "stale@example.org"


def test_parse_time_forms() -> None:
    """Times in exports: ISO with Z or offset, naive (UTC), epoch seconds and milliseconds, RFC 2822."""
    expected = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    for text in ("2024-01-02T03:04:05Z", "2024-01-02T04:04:05+01:00", "2024-01-02 03:04:05", "1704164645",
                 "1704164645000", "Tue, 02 Jan 2024 03:04:05 +0000"):
        assert parse_time(text) == expected, text
    with pytest.raises(ValueError, match="not a time"):
        parse_time("2024-13-45")

