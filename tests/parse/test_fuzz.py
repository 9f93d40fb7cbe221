"""Bad input never crashes and never hangs: parse() returns a list of events or raises the
project's own ParseError, for arbitrary bytes, mutated real bounces and pathological messages."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from datetime import timedelta
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.parse import ParseError, parse
from processor.records import Event
from tests.conftest import SAMPLES

EXAMPLE_SECONDS = 5.0
"""Hard limit for one fuzzed input: far above normal (milliseconds), low enough to catch a hang."""
PATHOLOGICAL_SECONDS = 30.0
"""Hard limit for one of the explicit pathological messages (megabytes, thousands of parts)."""


class Hang(BaseException):
    """Raised inside parse() when it runs past its limit (a BaseException, so that no
    ``except Exception`` in the parser can swallow it)."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block with Hang after ``seconds`` of wall-clock time (SIGALRM)."""

    def _expired(signum: int, frame: object) -> None:
        raise Hang(f"parse() still running after {seconds}s")

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check(data: bytes, seconds: float = EXAMPLE_SECONDS) -> list[Event] | None:
    """parse(data) within the limit: a list of Events, or None when it raised ParseError.
    Anything else (another exception, a hang, a non-list) fails the test."""
    with time_limit(seconds):
        try:
            events = parse(data)
        except ParseError as exc:
            assert str(exc), "a ParseError must say what is wrong"
            return None
    assert isinstance(events, list), f"parse() returned {type(events).__name__}"
    assert all(isinstance(e, Event) for e in events)
    return events


@cache
def real_bounces() -> tuple[bytes, ...]:
    files = sorted(path for sub in ("generated", "handwritten", "mta") for path in (SAMPLES / sub).rglob("*.eml"))
    return tuple(p.read_bytes() for p in files)


@st.composite
def mutated_bounce(draw: st.DrawFn) -> bytes:
    """A real sample with a few random edits: flipped bytes, cuts, insertions, duplicated or
    dropped ranges, changed line endings, spliced halves of two samples."""
    samples = real_bounces()
    data = bytearray(draw(st.sampled_from(samples)))
    for _ in range(draw(st.integers(1, 6))):
        size = len(data)
        if size == 0:
            data += draw(st.binary(min_size=1, max_size=64))
            continue
        at = draw(st.integers(0, size - 1))
        end = draw(st.integers(at, min(size, at + 400)))
        edit = draw(
            st.sampled_from(["flip", "truncate", "insert", "delete", "duplicate", "endings", "splice", "boundary"])
        )
        if edit == "flip":
            data[at] = draw(st.integers(0, 255))
        elif edit == "truncate":
            del data[at:]
        elif edit == "insert":
            data[at:at] = draw(st.binary(max_size=200))
        elif edit == "delete":
            del data[at:end]
        elif edit == "duplicate":
            data[end:end] = data[at:end] * draw(st.integers(1, 50))
        elif edit == "endings":
            replacement = draw(st.sampled_from([b"\r", b"\r\n", b"\n\r", b"", b"\x00"]))
            data = bytearray(bytes(data).replace(b"\n", replacement))
        elif edit == "splice":
            other = draw(st.sampled_from(samples))
            data = data[:at] + other[draw(st.integers(0, len(other))) :]
        else:  # damage MIME structure: boundaries, content types
            data = bytearray(
                bytes(data)
                .replace(b"boundary=", draw(st.sampled_from([b"boundary=x", b"boundry=", b'boundary=""'])), 1)
                .replace(b"--", draw(st.sampled_from([b"-", b"--\r", b"---"])), draw(st.integers(1, 3)))
            )
    return bytes(data)


FUZZ = settings(
    max_examples=250,
    deadline=timedelta(seconds=EXAMPLE_SECONDS),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FUZZ
@given(st.binary(max_size=4096))
def test_arbitrary_bytes(data: bytes) -> None:
    """Arbitrary bytes give a list of events or a ParseError, nothing else."""
    check(data)


@FUZZ
@given(
    st.lists(
        st.one_of(
            st.sampled_from(
                [
                    b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n",
                    b"Content-Type: message/delivery-status\n",
                    b"Content-Type: message/rfc822\n",
                    b'Content-Type: multipart/mixed; boundary="b"\n',
                    b"Content-Transfer-Encoding: base64\n",
                    b"Content-Transfer-Encoding: quoted-printable\n",
                    b"Final-Recipient: rfc822; a@example.org\n",
                    b"Status: 5.1.1\n",
                    b"Action: failed\n",
                    b"Diagnostic-Code: smtp; 550 5.1.1 no\n",
                    b"Feedback-Type: abuse\n",
                    b"Auto-Submitted: auto-replied\n",
                    b"Subject: =?utf-8?b?w7w=?= =?iso-2022-jp?B?GyRC?=\n",
                    b"--b\n",
                    b"--b--\n",
                    b"\n",
                    b"\r\n",
                    b" folded continuation\n",
                ]
            ),
            st.binary(max_size=40),
        ),
        max_size=60,
    )
)
def test_structured_junk(chunks: list[bytes]) -> None:
    """Random sequences of report-like lines and bytes give a list of events or a ParseError."""
    check(b"".join(chunks))


@FUZZ
@given(mutated_bounce())
def test_mutated_real_bounces(data: bytes) -> None:
    """Real bounces from samples/, randomly damaged, give a list of events or a ParseError."""
    check(data)


def test_empty_input_is_a_parse_error() -> None:
    """Empty and blank input raise ParseError."""
    for data in (b"", b"\n", b"\r\n\r\n", b"   \t  "):
        with pytest.raises(ParseError):
            parse(data)


def test_not_bytes_is_a_parse_error() -> None:
    """A str instead of bytes raises ParseError, not a TypeError from deep inside."""
    with pytest.raises(ParseError):
        parse("From: a@example.org\n\nhello")  # type: ignore[arg-type]


def test_binary_junk() -> None:
    """Binary junk (every byte value, NULs, a PNG signature) is handled."""
    junk = bytes(range(256)) * 400
    for data in (junk, b"\x00" * 100_000, b"\x89PNG\r\n\x1a\n" + junk, b"\xff\xfe" + junk[::-1]):
        check(data)


def test_truncated_bounces() -> None:
    """Every real bounce cut at a dozen points is handled."""
    for data in real_bounces():
        for cut in range(1, len(data), max(1, len(data) // 12)):
            check(data[:cut])


def _dsn_with_parts(count: int) -> bytes:
    head = (
        b"From: MAILER-DAEMON@mx.example.net\nTo: bounces@sender.example\nSubject: Undelivered\n"
        b'MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n'
    )
    part = b"--b\nContent-Type: text/plain\n\nrecipient lost@example.org: 550 5.1.1 unknown\n"
    status = (
        b"--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n\n"
        b"Final-Recipient: rfc822; lost@example.org\nAction: failed\nStatus: 5.1.1\n"
    )
    return head + part * count + status + b"--b--\n"


def test_thousands_of_parts() -> None:
    """A report with 5,000 MIME parts is parsed within the limit and still finds its recipient."""
    events = check(_dsn_with_parts(5000), PATHOLOGICAL_SECONDS)
    assert events is not None
    assert [e.recipient for e in events] == ["lost@example.org"]


def test_deeply_nested_multiparts() -> None:
    """Multiparts nested 5,000 deep are handled (no RecursionError escapes)."""
    depth = 5000
    data = b"From: a@example.org\nSubject: nest\nMIME-Version: 1.0\n"
    for level in range(depth):
        data += f'Content-Type: multipart/mixed; boundary="n{level}"\n\n--n{level}\n'.encode()
    data += b"Content-Type: text/plain\n\nbottom\n"
    for level in reversed(range(depth)):
        data += f"--n{level}--\n".encode()
    check(data, PATHOLOGICAL_SECONDS)


def test_deeply_nested_messages() -> None:
    """message/rfc822 parts nested 3,000 deep are handled."""
    depth = 3000
    data = b""
    for _ in range(depth):
        data += b"From: a@example.org\nMIME-Version: 1.0\nContent-Type: message/rfc822\n\n"
    data += b"From: b@example.org\nSubject: bottom\n\nbody\n"
    check(data, PATHOLOGICAL_SECONDS)


def test_megabyte_header_line() -> None:
    """A header line of several megabytes (and a body line as long) is handled."""
    long_line = b"x" * (3 * 1024 * 1024)
    data = (
        b"From: MAILER-DAEMON@mx.example.net\nSubject: " + long_line + b"\n"
        b"X-Long: " + long_line + b"\n\n" + long_line + b"\n"
    )
    check(data, PATHOLOGICAL_SECONDS)
    with_dsn = _dsn_with_parts(1).replace(b"Subject: Undelivered", b"Subject: " + long_line)
    check(with_dsn, PATHOLOGICAL_SECONDS)


def test_thousands_of_headers_and_recipients() -> None:
    """50,000 header lines are handled; a DSN with 10,000 more recipient blocks after its own one
    yields one failure event per recipient (10,001), each with its address and status."""
    headers = b"".join(b"X-H%d: v\n" % i for i in range(50_000))
    check(b"From: a@example.org\n" + headers + b"\nbody\n", PATHOLOGICAL_SECONDS)
    blocks = b"".join(
        b"Final-Recipient: rfc822; r%d@example.org\nAction: failed\nStatus: 5.1.1\n\n" % i for i in range(10_000)
    )
    dsn = _dsn_with_parts(0).replace(b"Status: 5.1.1\n", b"Status: 5.1.1\n\n" + blocks)
    events = check(dsn, PATHOLOGICAL_SECONDS)
    assert events is not None
    expected = ["lost@example.org", *(f"r{i}@example.org" for i in range(10_000))]
    assert sorted(e.recipient for e in events) == sorted(expected)
    assert {(e.kind, e.status) for e in events} == {("failure", "5.1.1")}
