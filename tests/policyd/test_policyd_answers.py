"""The policy protocol's parser and the answers/scopes made from the settings (no server)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from processor.config import PolicydSettings
from processor.policyd import DUNNO, Answerer, ProtocolError, parse_request


def test_parse_request_keeps_every_attribute() -> None:
    """Attributes become a dict; '=' inside a value, empty values and unknown names survive."""
    raw = b"request=smtpd_access_policy\nrecipient=a=b@example.org\nsender=\nfuture_attribute=x"
    assert parse_request(raw) == {
        "request": "smtpd_access_policy",
        "recipient": "a=b@example.org",
        "sender": "",
        "future_attribute": "x",
    }


def test_parse_request_accepts_utf8_addresses() -> None:
    """An SMTPUTF8 recipient (raw UTF-8) is a valid request."""
    raw = "request=smtpd_access_policy\nrecipient=jörg@bücher.example".encode()
    assert parse_request(raw)["recipient"] == "jörg@bücher.example"


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"request=smtpd_access_policy\nno equals sign", "line is not name=value: 'no equals sign'"),
        (b"request=smtpd_access_policy\n=value", "line is not name=value: '=value'"),
        (b"recipient=a@example.org", "request has no request= attribute"),
        (b"request=junk\nrecipient=a@example.org", "unknown request type 'junk' (expected smtpd_access_policy)"),
        (b"request=smtpd_access_policy\nrecipient=\xff\xfe@example.org", "request is not UTF-8 (byte 38: "),
    ],
)
def test_malformed_requests_are_named(raw: bytes, error: str) -> None:
    """Each kind of malformed request raises ProtocolError saying what is wrong."""
    with pytest.raises(ProtocolError) as caught:
        parse_request(raw)
    assert str(caught.value).startswith(error)


def test_reject_text_names_the_reason() -> None:
    """The default answer is REJECT with the configured 5.x.x text and the entry's reason."""
    hit = Answerer(PolicydSettings()).hit("global", "bounce", "userunknown", "hard", False)
    assert (hit.verdict, hit.answer) == ("REJECT", b"action=REJECT 5.1.1 recipient suppressed: userunknown\n\n")


def test_actions_by_bounce_type_then_source_then_default() -> None:
    """The bounce-type map wins over the source map, which wins over the default."""
    answerer = Answerer(PolicydSettings(
        default_action="reject",
        action_by_bounce_type={"soft": "defer"},
        action_by_source={"unsubscribe": "dunno", "bounce": "reject"},
        defer_text="4.2.2 try later: {reason} ({bounce_type}, {source}, {scope})",
    ))
    soft = answerer.hit("sender.example", "bounce", "mailboxfull", "soft", True)
    assert soft.answer == b"action=DEFER 4.2.2 try later: mailboxfull (soft, bounce, sender.example)\n\n"
    assert answerer.hit("global", "unsubscribe", "opt-out", "complaint", False).answer == DUNNO
    assert answerer.hit("global", "manual", "asked", "", False).verdict == "REJECT"


def test_reason_text_is_made_safe() -> None:
    """A reason with control characters or great length cannot break the protocol line."""
    answerer = Answerer(PolicydSettings())
    hit = answerer.hit("global", "import", "bad\nline\r\x00" + "x" * 500, "", False)
    text = hit.answer.decode()
    assert text.count("\n") == 2 and text.endswith("\n\n") and "\r" not in text and "\x00" not in text
    assert len(text) < 200 and text.rstrip("\n").endswith("...")
    assert b"suppressed: import" in answerer.hit("global", "import", "", "", False).answer


def test_hits_are_shared() -> None:
    """Entries with the same labels share one Hit (the answer is made once)."""
    answerer = Answerer(PolicydSettings())
    assert answerer.hit("global", "bounce", "r", "hard", False) is answerer.hit("global", "bounce", "r", "hard", False)


def test_store_error_answers() -> None:
    """Fail open answers DUNNO; fail closed answers DEFER with the configured 4.x.x text."""
    assert Answerer(PolicydSettings(on_store_error="dunno")).store_error_answer == DUNNO
    closed = Answerer(PolicydSettings(on_store_error="defer", store_error_text="4.3.0 list down"))
    assert (closed.store_error_verdict, closed.store_error_answer) == ("DEFER", b"action=DEFER 4.3.0 list down\n\n")


def test_scopes_by_client_then_sender_domain() -> None:
    """The most specific client network wins, then the sender domain map, then the domain itself."""
    answerer = Answerer(PolicydSettings(
        scope_by_client={"10.0.0.0/8": "corporate", "10.1.0.0/16": "marketing", "2001:db8::/32": "v6"},
        scope_by_sender_domain={"News.Example": "newsletters"},
        sender_domain_scope=True,
    ))
    assert answerer.scope_for("10.1.2.3", "a@news.example") == "marketing"
    assert answerer.scope_for("10.9.9.9", "a@news.example") == "corporate"
    assert answerer.scope_for("2001:db8::5", "") == "v6"
    assert answerer.scope_for("192.0.2.1", "a@news.example") == "newsletters"
    assert answerer.scope_for("192.0.2.1", "a@Shop.Example") == "shop.example"
    assert answerer.scope_for("192.0.2.1", "") == "global"
    assert answerer.scope_for("unknown", "a@news.example") == "newsletters"


def test_scope_is_global_without_rules() -> None:
    """With no scope settings every request checks the global scope only."""
    assert Answerer(PolicydSettings()).scope_for("10.0.0.1", "a@shop.example") == "global"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"reject_text": "4.1.1 not permanent"}, "reject_text must start with an enhanced status code 5.X.Y"),
        ({"defer_text": "5.1.1 not temporary"}, "defer_text must start with an enhanced status code 4.X.Y"),
        ({"reject_text": "5.1.1 {recipient}"}, "reject_text uses unknown field(s) ['recipient']"),
        ({"reject_text": "5.1.1 two\nlines"}, "reject_text must be one line of printable text"),
        ({"listen": "tcp:127.0.0.1:1"}, "expected inet:HOST:PORT or unix:/path/to/socket"),
        ({"scope_by_client": {"10.0.0.0/33": "x"}}, "not an IP address or network: '10.0.0.0/33'"),
        ({"default_action": "bounce"}, "Input should be 'reject', 'defer' or 'dunno'"),
        ({"on_store_error": "reject"}, "Input should be 'dunno' or 'defer'"),
    ],
)
def test_bad_settings_are_refused(settings: dict[str, object], message: str) -> None:
    """Invalid [policyd] values are refused with a message naming the problem."""
    with pytest.raises(ValidationError) as caught:
        PolicydSettings(**settings)  # type: ignore[arg-type]
    assert message in str(caught.value)
