"""RFC 3464 / RFC 6533 delivery-status fields."""

from __future__ import annotations

import pytest

from processor.parse.dsn import is_rewritten, parse_delivery_status

REPORT = """Reporting-MTA: dns; mx.example.org
Arrival-Date: Mon, 2 Nov 2026 10:00:00 +0000

Final-Recipient: rfc822; alice@example.net
Original-Recipient: rfc822;Alice@Example.NET
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example.net [192.0.2.10]
Diagnostic-Code: smtp; 550 5.1.1 <alice@example.net>: Recipient address
    rejected: User unknown in local
    recipient table
Last-Attempt-Date: Mon, 2 Nov 2026 10:00:05 +0000

Final-Recipient: rfc822; bob@example.net
Action: delayed
Status: 4.4.1
Diagnostic-Code: X-Postfix; connect to mx.example.net[192.0.2.10]:25: Connection timed out
"""


def test_per_message_and_per_recipient_fields() -> None:
    """Every recipient block comes out with its fields; folded Diagnostic-Code lines are joined."""
    report = parse_delivery_status(REPORT)
    assert report.reporting_mta == "mx.example.org"
    assert report.arrival_date == "Mon, 2 Nov 2026 10:00:00 +0000"
    first, second = report.recipients
    assert first.final_recipient == "alice@example.net"
    assert first.original_recipient == "Alice@Example.NET"
    assert (first.action, first.status, first.remote_mta) == ("failed", "5.1.1", "mx.example.net")
    assert first.diagnostic_type == "smtp"
    assert first.diagnostic == (
        "550 5.1.1 <alice@example.net>: Recipient address rejected: User unknown in local recipient table"
    )
    assert first.last_attempt == "Mon, 2 Nov 2026 10:00:05 +0000"
    assert (second.recipient, second.action, second.status) == ("bob@example.net", "delayed", "4.4.1")


def test_blocks_without_blank_lines_are_split() -> None:
    """A reporter that forgets the blank line between recipients still yields one block each."""
    text = (
        "Reporting-MTA: dns; mx.example.org\n\n"
        "Original-Recipient: rfc822;a@example.net\nFinal-Recipient: rfc822;a@example.net\n"
        "Action: failed\nStatus: 5.0.0\n"
        "Original-Recipient: rfc822;b@example.net\nFinal-Recipient: rfc822;b@example.net\n"
        "Action: failed\nStatus: 5.1.1\n"
    )
    report = parse_delivery_status(text)
    assert [(r.final_recipient, r.original_recipient, r.status) for r in report.recipients] == [
        ("a@example.net", "a@example.net", "5.0.0"),
        ("b@example.net", "b@example.net", "5.1.1"),
    ]


def test_utf8_address_type() -> None:
    """RFC 6533 utf-8 addresses with \\x{...} escapes are decoded."""
    report = parse_delivery_status("Final-Recipient: utf-8; j\\x{00FC}rgen@example.de\nAction: failed\nStatus: 5.1.1\n")
    assert report.recipients[0].final_recipient == "jürgen@example.de"


@pytest.mark.parametrize(
    ("final", "original", "rewritten"),
    [
        ("carla@ims-ms-daemon", "carla@example.org", True),
        ("u123@sims-ms-daemon", "carla@example.org", True),
        ("olaf.berg@store3.mail.example.org", "olaf@example.org", True),
        ("mary.major@example.net", "mary@example.net", True),
        ("carla@mailhub", "carla@example.org", True),
        ("kim@mailhub", "carla@example.org", True),
        ("carla@example.com", "carla@example.org", False),
        ("list-member@other.example", "list@example.org", False),
        ("Carla@Example.org", "carla@example.org", False),
        ("IMCEAEX-_O=EXAMPLE_CN=RECIPIENTS_CN=wilma@exch.example.net", "wilma@example.org", True),
    ],
)
def test_rewritten_final_recipient(final: str, original: str, rewritten: bool) -> None:
    """A Final-Recipient inside the Original-Recipient's domain or at an internal host is the
    site's rewrite (the original is reported); one at another domain is a forward (kept)."""
    assert is_rewritten(final, original) is rewritten
    block = parse_delivery_status(f"Original-Recipient: rfc822;{original}\nFinal-Recipient: rfc822;{final}\n"
                                  "Action: failed\nStatus: 5.1.1\n").recipients[0]
    assert block.recipient == (original if rewritten else final)


def _one(final: str, original: str) -> str:
    text = f"Reporting-MTA: dns; mx.example.org\n\nFinal-Recipient: rfc822;{final}\n"
    if original:
        text += f"Original-Recipient: rfc822;{original}\n"
    return parse_delivery_status(text + "Action: failed\nStatus: 5.1.1\n").recipients[0].recipient


def test_internal_rewrite_of_the_recipient_gives_the_address_the_sender_used() -> None:
    """A Final-Recipient at a host without a domain, or at a mailbox host inside the original's
    domain, is the receiver's rewrite: the Original-Recipient is reported."""
    assert _one("ann@sims-ms-daemon", "ann@example.org") == "ann@example.org"
    assert _one("ann.b@mailhub0", "ann@example.org") == "ann@example.org"
    assert _one("ann@store3.mail.example.org", "ann@example.org") == "ann@example.org"


def test_a_forwarded_recipient_stays_the_final_one() -> None:
    """A Final-Recipient at another real domain (a forward) is kept; so is one without an original."""
    assert _one("ann@elsewhere.example", "ann@example.org") == "ann@elsewhere.example"
    assert _one("ann@sims-ms-daemon", "") == "ann@sims-ms-daemon"
