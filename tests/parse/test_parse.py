"""parse(): line endings, encodings, report kinds, and the completion of events."""

from __future__ import annotations

import base64

import pytest

from processor.classify import load_classifier
from processor.config import ParseSettings
from processor.parse import ParseError, Parser, parse
from processor.records import BounceType, EventKind

DSN = b"""From: MAILER-DAEMON@mx.example.org
To: sender@example.com
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="XX"

--XX
Content-Type: text/plain

This is the mail system at host mx.example.org.

<alice@example.net>: host mx.example.net[192.0.2.10] said: 550 5.1.1
    <alice@example.net>: Recipient address rejected: User unknown (in reply to
    RCPT TO command)

--XX
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org

Final-Recipient: rfc822; alice@example.net
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example.net
Diagnostic-Code: smtp; 550 5.1.1 <alice@example.net>: Recipient address
    rejected: User unknown

--XX
Content-Type: message/rfc822

From: sender@example.com
To: alice@example.net
Subject: Hello
Message-ID: <hello-1@example.com>
X-Campaign-ID: spring-42

Hello.
--XX--
"""


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_line_endings(newline: bytes) -> None:
    """LF, CRLF and CR-only messages parse to the same event."""
    [event] = parse(DSN.replace(b"\n", newline))
    assert (event.recipient, event.status, event.reply_code, event.smtp_command) == (
        "alice@example.net", "5.1.1", "550", "RCPT")
    assert event.remote_mta == "mx.example.net"
    assert event.reporting_mta == "mx.example.org"
    assert event.message_id == "<hello-1@example.com>"
    assert event.original.subject == "Hello"
    assert dict(event.original.correlation) == {"x-campaign-id": "spring-42"}


def test_base64_and_encoded_words() -> None:
    """A base64 ISO-8859-1 notice with an encoded-word subject is decoded."""
    notice = "Die Nachricht an <jörg@example.de> ist unzustellbar: 550 5.1.1 Benutzer unbekannt\n"
    body = base64.encodebytes(notice.encode("iso-8859-1"))
    message = (
        b"From: MAILER-DAEMON@mx.example.de\nSubject: =?ISO-8859-1?Q?Unzustellbar=3A_Gr=FC=DFe?=\n"
        b"Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: base64\n\n" + body
    )
    [event] = parse(message)
    assert event.recipient == "jörg@example.de"
    assert event.status == "5.1.1"


def test_quoted_printable_notice() -> None:
    """A quoted-printable notice whose address is split by a soft line break is joined first."""
    message = (
        b"From: postmaster@example.org\nSubject: Delivery failure\n"
        b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n"
        b"Delivery to the following recipient failed permanently:\n\n"
        b"   carol.longname@exam=\nple.net\n\n550 5.2.1 The account is disabled\n"
    )
    [event] = parse(message)
    assert event.recipient == "carol.longname@example.net"


@pytest.mark.parametrize(("action", "kind"), [
    ("delivered", EventKind.DELIVERED), ("relayed", EventKind.DELIVERED),
    ("expanded", EventKind.DELIVERED), ("delayed", EventKind.DELAY), ("failed", EventKind.FAILURE)])
def test_dsn_actions(action: str, kind: EventKind) -> None:
    """Delivered, relayed and expanded are successes; delayed is a delay, never a failure."""
    status = {"failed": "5.1.1", "delayed": "4.4.1"}.get(action, "2.0.0")
    message = DSN.replace(b"Action: failed", b"Action: " + action.encode()).replace(
        b"Status: 5.1.1", b"Status: " + status.encode())
    [event] = parse(message)
    assert event.kind is kind


def test_auto_reply_is_not_a_bounce() -> None:
    """An RFC 3834 auto-reply is reported as auto_reply, with who replied."""
    message = (
        b"From: Dana <dana@example.net>\nTo: sender@example.com\nSubject: Away until Monday\n"
        b"Auto-Submitted: auto-replied\n\nI am out of the office, back on Monday.\n"
    )
    [event] = parse(message)
    assert event.kind is EventKind.AUTO_REPLY
    assert event.recipient == "dana@example.net"


def test_verp_recovers_recipient() -> None:
    """A bounce that names no recipient gets it from the VERP address it was sent to."""
    message = (
        b"From: MAILER-DAEMON@mx.example.net\nTo: bounces+erin=example.net@sender.example\n"
        b"Subject: Mail delivery failed\n\nYour message could not be delivered.\n"
        b"Reason: 550 5.1.1 mailbox unavailable\n"
    )
    [event] = parse(message)
    assert event.recipient == "erin@example.net"
    assert event.status == "5.1.1"


def test_arf_redacted_recipient_still_reported() -> None:
    """A complaint whose reporter redacted the address still yields one complaint event."""
    message = (
        b'From: fbl@isp.example\nSubject: Abuse report\nMIME-Version: 1.0\n'
        b'Content-Type: multipart/report; report-type=feedback-report; boundary="B"\n\n'
        b"--B\nContent-Type: text/plain\n\nA complaint.\n"
        b"--B\nContent-Type: message/feedback-report\n\nFeedback-Type: abuse\nUser-Agent: FBL/1.0\n"
        b"Version: 1\nSource-IP: 192.0.2.7\nArrival-Date: Mon, 2 Nov 2026 10:00:00 +0000\n"
        b"--B\nContent-Type: text/rfc822-headers\n\nFrom: sender@example.com\nTo: redacted\n"
        b"Message-ID: <m1@example.com>\n--B--\n"
    )
    [event] = parse(message)
    assert (event.kind, event.recipient, event.feedback_type, event.source_ip) == (
        EventKind.COMPLAINT, "", "abuse", "192.0.2.7")
    assert event.message_id == "<m1@example.com>"


def test_non_bounce_reports_nothing() -> None:
    """An ordinary message is not a bounce."""
    assert parse(b"From: a@example.org\nTo: b@example.net\nSubject: lunch?\n\nNoon at the usual place.\n") == []


@pytest.mark.parametrize("junk", [b"", b"   \n\n", "not bytes"])
def test_unreadable_input_raises_parse_error(junk: object) -> None:
    """Empty or non-bytes input raises the project's ParseError."""
    with pytest.raises(ParseError):
        parse(junk)  # type: ignore[arg-type]


def test_size_limit_truncates() -> None:
    """Only max_message_bytes are parsed; the report at the start still comes out."""
    big = DSN.replace(b"Hello.\n", b"Hello.\n" + b"x" * 200_000 + b"\n")
    parser = Parser(ParseSettings(max_message_bytes=4096))
    [event] = parser.parse(big)
    assert event.recipient == "alice@example.net"


GATEWAY_DSN = b"""From: MAILER-DAEMON@gw.example.org
To: sender@example.com
Subject: Returned mail
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="GW"

--GW
The message to <ann> could not be stored:
mailbox is full
--GW
Content-Type: message/delivery-status

Reporting-MTA: dns; gw.example.org

Final-Recipient: rfc822; ann@example.net
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <ann@example.net>... User unknown
--GW--
"""


def test_part_without_headers_or_blank_line_keeps_its_text() -> None:
    """A part whose first line is not a header field has no headers (and its writer left out the
    empty line): its text is the notice. A one-recipient report carries that notice on its event."""
    [event] = parse(GATEWAY_DSN)
    assert event.notice == "The message to <ann> could not be stored: mailbox is full"
    assert event.status == "5.1.1"


def test_part_with_empty_header_block_keeps_its_text() -> None:
    """A part that starts with the empty line has no headers; a "Name: value" line in its body
    is text, and the next part's headers are not taken for its own."""
    from processor.parse.mime import read_message

    message = (
        b"From: a@example.org\nContent-Type: multipart/mixed; boundary=XX\n\n--XX\n"
        b"\nNote: the body of a part without headers\n--XX\nContent-Type: text/html\n\n<p>x</p>\n--XX--\n"
    )
    root = read_message(message)
    first, second = root.children
    assert first.text == "Note: the body of a part without headers"
    assert len(first.headers) == 0
    assert first.content_type == "text/plain"
    assert second.content_type == "text/html"


def test_notice_only_for_one_recipient_reports() -> None:
    """With several recipients the prose cannot be attributed to one of them: no notice."""
    several = GATEWAY_DSN.replace(
        b"--GW--",
        b"\nFinal-Recipient: rfc822; bob@example.net\nAction: failed\nStatus: 5.1.1\n--GW--",
    )
    events = parse(several)
    assert [e.recipient for e in events] == ["ann@example.net", "bob@example.net"]
    assert all(e.notice == "" for e in events)


def _text_notice(subject: str, body: str, sender: str = "MAILER-DAEMON@mx.example.org") -> bytes:
    return (
        f"From: {sender}\nTo: bounces@sender.example\nSubject: {subject}\n"
        f"Content-Type: text/plain; charset=us-ascii\n\n{body}"
    ).encode()


def test_bounce_mentioning_an_allow_list_is_no_challenge() -> None:
    """A server's refusal with a status code stays a failure even when it says to click a link
    and be added to an allow list (only a code-less request to prove or confirm is a challenge)."""
    body = (
        "Your message to olga@example.net could not be delivered.\n"
        "550 5.7.1 Sender not on the recipient's allow list; click the link in our help pages to\n"
        "request approval.\n"
    )
    events = parse(_text_notice("Undeliverable: Offer", body))
    assert [(e.recipient, e.kind) for e in events] == [("olga@example.net", EventKind.FAILURE)]


def test_notice_that_gave_up_is_no_delay() -> None:
    """A text notice that says the server gave up is a failure, even if it mentions retrying."""
    body = (
        "Your message to pavel@example.net could not be delivered.\n"
        "We kept trying for 5 days and gave up; the server said: 421 4.4.2 connection dropped.\n"
        "We will not retry.\n"
    )
    events = parse(_text_notice("Warning: delivery failed", body))
    assert [(e.recipient, e.kind) for e in events] == [("pavel@example.net", EventKind.FAILURE)]


def test_text_notice_saying_it_retries_is_a_delay() -> None:
    """A text notice that says delivery will be retried is a delay event, which never suppresses."""
    body = "Your message to rosa@example.net has been delayed.\nThe server will retry for 3 more days.\n"
    events = parse(_text_notice("Delivery delayed", body))
    assert [(e.recipient, e.kind, e.dsn_action) for e in events] == [
        ("rosa@example.net", EventKind.DELAY, "delayed")
    ]


def test_text_notice_of_a_delivery_is_no_failure() -> None:
    """A text-only success notice ("your message to <address> was delivered") reports no failure."""
    body = "Your message to tara@example.net, sent on Monday, was delivered to the mailbox.\n"
    assert parse(_text_notice("Delivery Status Notification (Success)", body)) == []


def test_one_recipient_notice_takes_the_whole_reply_line() -> None:
    """For a lone recipient, the line holding a whole reply (code and status) is its diagnostic,
    not an earlier line that only cites a status code in passing."""
    body = (
        "Your message to uwe@example.net couldn't be delivered.\n"
        "See our help page on error 5.4.1 for what to do.\n\n"
        "Remote reply: 550 5.1.1 mailbox unknown\n"
    )
    (event,) = parse(_text_notice("Undeliverable: Offer", body))
    assert (event.recipient, event.status, event.reply_code) == ("uwe@example.net", "5.1.1", "550")


LIST_BOUNCE = b"""From: Mail Delivery System <MAILER-DAEMON@relay.example.org>
To: news-bounces@lists.example.org
Subject: Undeliverable mail
List-Unsubscribe: <mailto:leave-news@lists.example.org>

Your message could not be delivered to the following recipients:

zoe@example.net: 550 mailbox unavailable

leave-news@lists.example.org unsubscribes, news-admin@lists.example.org answers: the mailbox failed.
"""


def test_mailing_list_addresses_are_never_recipients() -> None:
    """A plain-text bounce of a list post reports the subscriber, not the list's own addresses
    (List-* headers, -request, -admin, owner-)."""
    assert [e.recipient for e in parse(LIST_BOUNCE)] == ["zoe@example.net"]


CHALLENGE = b"""From: Dana Example <dana@example.net>
To: sender@example.com
Subject: Re: Our newsletter

Hello, I protect my inbox from spam. To have your message delivered,
please click the link below to confirm that you are a human:

https://verify.example.net/c/123
"""


def test_challenge_response_is_an_auto_reply_not_a_bounce() -> None:
    """A challenge-response system asking the sender to prove they are human is an auto-reply."""
    events = parse(CHALLENGE)
    assert [(e.kind, e.recipient) for e in events] == [(EventKind.AUTO_REPLY, "dana@example.net")]


HEADED_NOTICE = b"""From: Mail Delivery Subsystem <mailer-daemon@relay.example.org>
To: sender@example.com
Subject: Delivery Status Notification (Failure)

** Address not found **

Your message wasn't delivered to gus@example.net because the address couldn't be found.

The response from the remote server was:
550 5.1.1 The account you wrote to does not exist here
"""


def test_gmail_headed_notice_without_dsn_is_read() -> None:
    """Gmail's "** Heading **" text notice, kept without its DSN or its Google sender, still gives
    the recipient, the remote reply and the kind ("Delivery incomplete" is a delay)."""
    (event,) = parse(HEADED_NOTICE)
    assert (event.kind, event.recipient, event.status) == (EventKind.FAILURE, "gus@example.net", "5.1.1")
    assert event.diagnostic == "550 5.1.1 The account you wrote to does not exist here"
    delayed = HEADED_NOTICE.replace(b"Address not found", b"Delivery incomplete")
    assert [e.kind for e in parse(delayed)] == [EventKind.DELAY]


RENDERED_NOTICE = b"""From: Microsoft Outlook <postmaster@tenant.example.org>
To: sender@example.com
Subject: Undeliverable: hello

Your message to hal@example.net couldn't be delivered.
hal wasn't found at example.net.

Action Required
How to fix it: check the address and send the message again.
"""


def test_rendered_notice_without_codes_names_its_recipient() -> None:
    """A notice rendered from HTML, with no DSN and no code near the address, is still read when it
    says the message couldn't be delivered or the address wasn't found."""
    assert [(e.kind, e.recipient) for e in parse(RENDERED_NOTICE)] == [(EventKind.FAILURE, "hal@example.net")]


ODD_ARF = b"""From: feedback@isp.example
To: fbl@example.com
Subject: complaint report
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; boundary="B"

--B
Content-Type: text/plain

A user of ours marked your message as spam.

--B
Content-Type: message/feedback_report

Feedback-Type: abuse
User-Agent: ISP-FBL/1.0
Version: 1
Original-Rcpt-To: <ivy@example.net>

--B
Content-Type: text/rfc822-headers

From: news@example.com
To: ivy@example.net
Subject: news

--B--
"""


def test_complaint_with_an_oddly_labelled_report_part_is_a_complaint() -> None:
    """ARF fields in a part not labelled message/feedback-report still make a complaint (not an
    auto-reply), with its feedback type and recipient."""
    assert [(e.kind, e.recipient, e.feedback_type) for e in parse(ODD_ARF)] == [
        (EventKind.COMPLAINT, "ivy@example.net", "abuse")
    ]


HUMAN_REPLY = b"""From: Eva Example <eva@example.net>
To: sender@example.com
Subject: Re: your offer was rejected?

Hi, no, your offer was not rejected by team@example.org, it arrived fine. Call me.
"""


def test_a_persons_reply_about_a_rejection_is_not_a_bounce() -> None:
    """A reply from a person whose subject and text mention a rejection reports nothing."""
    assert parse(HUMAN_REPLY) == []


INTERNAL_RCPT = b"""From: MAILER-DAEMON@mail.example.net
To: sender@example.com
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="YY"

--YY
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.example.net

Final-Recipient: rfc822; jo@sims-ms-daemon
Action: failed
Status: 5.2.0

--YY
Content-Type: text/rfc822-headers

From: sender@example.com
To: Jo <jo.smith@example.net>
Subject: hello

--YY--
"""


def test_recipient_rewritten_to_an_internal_host_is_the_returned_messages_to() -> None:
    """Without Original-Recipient, a Final-Recipient at an internal host (no domain) gives way to
    the returned message's only To: address, the address the sender used."""
    assert [e.recipient for e in parse(INTERNAL_RCPT)] == ["jo.smith@example.net"]


@pytest.mark.parametrize(
    "body",
    [
        b"User mailbox exceeds allowed size: ann@example.net\n",
        b"Delivery failed 3 attempts\nRCPT To:<ann@example.net>\n",
    ],
)
def test_short_plain_notices_name_their_recipient(body: bytes) -> None:
    """Small servers' short notices ("Undeliverable Mail", the error on the line before or with
    the address) are read: the address next to the error is the recipient."""
    message = (
        b"From: Postmaster <postmaster@mail.example.net>\nTo: sender@example.com\n"
        b"Subject: Undeliverable Mail\n\n" + body + b"\nOriginal message follows.\n"
    )
    assert [(e.kind, e.recipient) for e in parse(message)] == [(EventKind.FAILURE, "ann@example.net")]


def test_double_spaced_inline_headers_give_the_original_message_id() -> None:
    """A text bounce whose pasted original headers are double-spaced (each CRLF line given one more
    line end, as dma does) still yields the original's Message-ID; the headers end at the wider gap."""
    report = (
        b"From: MAILER-DAEMON@relay.example.org\r\n"
        b"To: sender@example.com\r\n"
        b"Subject: Mail delivery failed\r\n"
        b"\r\n"
        b"This is the DragonFly Mail Agent v0.13 at relay.example.org.\r\n"
        b"\r\n"
        b"There was an error delivering your mail to <alice@example.net>.\r\n"
        b"\r\n"
        b"mx.example.net [192.0.2.10] did not like our RCPT TO:\r\n"
        b"550 5.1.1 <alice@example.net>: no such user here\r\n"
        b"\r\n"
        b"Message headers follow.\r\n"
        b"\r\n"
        b"Received: from sender (uid 1000)\r\n"
        b"\tby relay.example.org (DragonFly Mail Agent v0.13)\r\n"
        b"From: sender@example.com\r\r\n"
        b"To: alice@example.net\r\r\n"
        b"Subject: Hello\r\r\n"
        b"Message-ID: <hello-2@example.com>\r\r\n"
        b"\r\r\n"
        b"Body-Looking: line\r\n"
    )
    [event] = parse(report)
    assert event.recipient == "alice@example.net"
    assert event.original.message_id == "<hello-2@example.com>"
    assert event.original.subject == "Hello"
    assert event.original.correlation == ()


SENDMAIL_PIPELINED = b"""From: Mail Delivery Subsystem <MAILER-DAEMON@relay.example.org>
To: sender@example.com
Subject: Returned mail: see transcript for details

   ----- The following addresses had permanent fatal errors -----
<alice@example.net>

   ----- Transcript of session follows -----
... while talking to mx.example.net.:
>>> DATA
<<< 550 Message refused under rule 17 <alice@example.net>
550 5.1.1 <alice@example.net>... User unknown
<<< 554 5.5.1 Error: no valid recipients

   ----- Original message follows -----

From: sender@example.com
To: alice@example.net
Message-ID: <hello-3@example.com>

Hello.
"""


def test_sendmail_canned_user_unknown_gives_way_to_the_remote_reply() -> None:
    """In a pipelined Sendmail transcript the reply naming the address answered RCPT TO, and
    Sendmail's canned "550 5.1.1 <addr>... User unknown" after it is not read as the cause."""
    [event] = parse(SENDMAIL_PIPELINED)
    assert event.smtp_command == "RCPT"
    assert event.diagnostic == "550 Message refused under rule 17 <alice@example.net>"
    assert load_classifier().classify(event).bounce_type is not BounceType.HARD


def _with_returned(body: str, to: str) -> bytes:
    return (
        "From: MAILER-DAEMON@mx.example.org\nTo: bounces@sender.example\nSubject: Returned mail\n"
        'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b"\n\n'
        f"--b\nContent-Type: text/plain\n\n{body}\n--b\nContent-Type: message/rfc822\n\n"
        f"From: news@sender.example\nTo: {to}\nSubject: Hello\n\nHi\n--b--\n"
    ).encode()


def test_notice_naming_no_address_reports_the_returned_recipient() -> None:
    """A notice that says the message failed but names only a display name reports the returned
    message's recipient with that name (not the other recipients, not the sender)."""
    body = "Your message to Ann Body could not be delivered.\nThe mailbox does not exist.\n"
    data = _with_returned(body, "Ann Body <ann.body@example.net>, Bob Other <bob@example.net>")
    assert [(e.recipient, str(e.kind)) for e in parse(data)] == [("ann.body@example.net", "failure")]
    assert parse(_with_returned("Thank you, your message was delivered.\n", "ann.body@example.net")) == []


def test_address_split_by_a_line_wrap_is_rejoined() -> None:
    """An address that the notice's line wrap cut in two is reported whole (from the returned
    message's recipients), not as the piece before or after the break."""
    body = "Unable to deliver to recipient <long.name@mail.exam\n  ple.org>: 550 5.1.1 unknown user\n"
    events = parse(_with_returned(body, "long.name@mail.example.org"))
    assert [(e.recipient, e.status) for e in events] == [("long.name@mail.example.org", "5.1.1")]


def test_one_reason_after_a_list_applies_to_each_address() -> None:
    body = (
        "Your message was not delivered to the following recipients:\n\n"
        "  ada@example.com\n  ben@example.com\n\nReason: 550 no such user here\n"
    )
    events = parse(_text_notice("Undeliverable", body))
    assert [(e.recipient, e.reply_code) for e in events] == [("ada@example.com", "550"), ("ben@example.com", "550")]


def test_conditional_give_up_sentence_keeps_a_warning_a_delay() -> None:
    """'will be returned if it cannot be delivered within N days' is what may happen: a warning."""
    body = (
        "Your message to cleo@example.com has not been delivered yet: 451 4.4.1 no answer from host.\n"
        "It will be returned to you if it cannot be delivered within 4 days.\n"
    )
    (event,) = parse(_text_notice("Warning: delivery delayed", body))
    assert (event.recipient, str(event.kind)) == ("cleo@example.com", "delay")
