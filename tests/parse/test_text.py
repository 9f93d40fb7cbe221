"""Text helpers: status codes, reply codes, SMTP commands and addresses in free text."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.parse.text import (
    _COMMANDS,
    _CONTINUED_REPLY,
    REPLY,
    STATUS,
    command_named,
    find_command,
    find_reply_code,
    find_status,
    squash_reply,
    strip_address,
)


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("550 5.1.1 <bob@example.org>... User unknown", "5.1.1"),
        ("smtp; 550 #5.1.0 Address rejected", "5.1.0"),
        ("452 4.2.2 Mailbox full", "4.2.2"),
        ("host 192.5.1.1 said: 554 rejected", ""),
        ("version 5.1.10 of the software", "5.1.10"),
        ("Status: 5.01.001", "5.1.1"),
        ("no code here", ""),
    ],
)
def test_find_status(text: str, status: str) -> None:
    """The first RFC 3463 code is found, and IP addresses are not mistaken for one."""
    assert find_status(text) == status


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ("550 5.1.1 User unknown", "550"),
        ("host mx.example.org[192.0.2.1] said: 452 4.3.2 Try later", "452"),
        ("<<< 554 Transaction failed", "554"),
        ("Connection timed out after 300 seconds", ""),
        ("#550 5.1.1 RESOLVER.ADR.RecipNotFound", "550"),
    ],
)
def test_find_reply_code(text: str, reply: str) -> None:
    """A reply code is taken where an SMTP server's answer starts, not from any number."""
    assert find_reply_code(text) == reply


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("said: 550 5.1.1 unknown (in reply to RCPT TO command)", "RCPT"),
        ("said: 554 5.7.1 rejected (in reply to end of DATA command)", "DATA"),
        ("SMTP error from remote mail server after MAIL FROM:<a@example.org>:", "MAIL"),
        ("SMTP error from remote mail server after initial connection:", "CONN"),
        (">>> RCPT To:<bob@example.org>\n<<< 550 unknown", "RCPT"),
        ("Remote host said: 550 5.1.1 User Unknown [RCPT_TO]", "RCPT"),
        ("LMTP error after BDAT 646 LAST: 552 5.2.2 <a@example.org> Quota exceeded", "DATA"),
        ("SMTP error from remote mail server after pipelined BDAT 1024: 554 rejected", "DATA"),
        ("mailbox full", ""),
    ],
)
def test_find_command(text: str, command: str) -> None:
    """The SMTP command a failure happened at is read from the usual phrasings."""
    assert find_command(text) == command


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("rfc822; <bob@example.org>", "bob@example.org"),
        ('"Bob Example" <bob@example.org>', "bob@example.org"),
        ("RFC822; <@relay.example.net:bob@example.org>", "bob@example.org"),
        ("mailto:bob@example.org", "bob@example.org"),
        ("<bob@example.org>:", "bob@example.org"),
        ("utf-8; bob@example.org", "bob@example.org"),
        ("smtp=bob@example.org", "bob@example.org"),
        ("SMTP:bob@example.org", "bob@example.org"),
        ("<SMTP:bob@example.org>", "bob@example.org"),
        ("RFC822;bob@example.org", "bob@example.org"),
        ("smtp-relay@example.org", "smtp-relay@example.org"),
        ("IMCEASMTP-bob+40example+2Eorg@gw.example.net", "bob@example.org"),
        ("<IMCEASMTP-bob+2Bnews+40example+2Eorg@gw.example.net>", "bob+news@example.org"),
        ("smtp=bob", "smtp=bob"),
    ],
)
def test_strip_address(value: str, address: str) -> None:
    """Address-type prefixes (rfc822;, mailto:, Exchange's smtp=), display names, angle brackets and
    source routes are removed."""
    assert strip_address(value) == address


def test_squash_reply_drops_continuation_prefixes() -> None:
    """A multi-line SMTP reply becomes one line with its code once."""
    text = "550-5.7.26 Unauthenticated email\n550-5.7.26 is not accepted\n550 5.7.26 see help - gsmtp"
    assert squash_reply(text) == "550-5.7.26 Unauthenticated email is not accepted see help - gsmtp"


# The plain forms of the code patterns, each starting with its look-behind: the patterns in
# processor.parse.text move the look-behind after the first digit (so the regex engine can skip
# to the next 2, 4 or 5), and must find exactly what these find.
_PLAIN_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d]|\.\d)")
_PLAIN_REPLY = re.compile(r"(?<![\d.\-/:,])([245][0-7]\d)(?=[ ,;]|$|-[245]\.\d|-[^\d])")
_PLAIN_CONTINUED_REPLY = re.compile(r"(?:(?<=\s)|^)([245]\d\d)[\- ](?:[245]\.\d{1,3}\.\d{1,3}\s+)?")
_CODE_TEXT = st.lists(
    st.sampled_from([
        "2", "4", "5", "0", "7", "9", ".", "-", "/", ":", ",", ";", " ", "\t", "\n", "#", "x",
        "5.1.1", "4.2.2", "2.0.0", "550", "451", "250", "550-", "550 ", "5.7.1 ", ".1", "999",
    ]),
    max_size=12,
).map("".join)


def _found(pattern: re.Pattern[str], text: str, start: int) -> list[tuple[tuple[int, int], tuple[str | Any, ...]]]:
    return [(m.span(), m.groups()) for m in pattern.finditer(text, start)]


@settings(max_examples=3000, deadline=None)
@given(_CODE_TEXT, st.integers(min_value=0, max_value=5))
def test_code_patterns_find_what_their_plain_forms_find(text: str, start: int) -> None:
    """STATUS, REPLY and the continued-reply pattern match where, and what, their plain
    look-behind-first forms match, also when the search starts inside the text."""
    start = min(start, len(text))
    assert _found(STATUS, text, start) == _found(_PLAIN_STATUS, text, start)
    assert _found(REPLY, text, start) == _found(_PLAIN_REPLY, text, start)
    assert _found(_CONTINUED_REPLY, text, start) == _found(_PLAIN_CONTINUED_REPLY, text, start)
    assert _CONTINUED_REPLY.sub("", text) == _PLAIN_CONTINUED_REPLY.sub("", text)


def _plain_find_command(text: str) -> str:
    """find_command without its word pre-check: every pattern tried, in order."""
    text = " ".join(text.split())
    for pattern, command in _COMMANDS:
        m = pattern.search(text)
        if m:
            return command or command_named(m.group(1))
    return ""


_COMMAND_PIECES = [
    "in reply to", "In Reply To", "after", "while sending", "on", "at", "the", "pipelined", "end of", "RCPT",
    "rcpt", "TO", "MAIL", "FROM", "DATA", "data block", "message body", "BDAT", "EHLO", "HELO", "LHLO", "STARTTLS",
    "AUTH", ">>>", "[RCPT_TO]", "[MAIL_FROM]", "[BODY]", "[DATA]", "SMTP:", "SMTP error from remote", "mail server",
    "mailer", "server", "for", "sending data block", "initial connection", "greeting", "banner", "connect",
    "refused to talk to me", "while receiving the initial server greeting", "did not like our",
    "connect to", "mx.example:", "Connection timed out", "Connection refused", "Deferred:", "with", "by",
    "did not accept our requests to connect", "in", "timed out while sending", "end of data", ".",
    "(end of message)", "TEXT", "\u212a", "\u017f", "\u0130", "\u0131", "RCPT TO", "MAIL FROM", " ", "\n", "x",
    "r\u0130", "\u017fMTP:",
]


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(_COMMAND_PIECES), max_size=10).map(" ".join))
def test_find_command_word_check_never_hides_a_match(text: str) -> None:
    """A pattern skipped because none of its words is in the text could not have matched: the
    answer is the one trying every pattern in order gives."""
    assert find_command.__wrapped__(text) == _plain_find_command(text)
