"""Signed return paths end to end: a real Postfix bounces a message sent with a signed return
path, its DSN lands in the Dovecot bounce mailbox, and ``bounce-processor run --once`` (with
``require_signed_return_path``) verifies it and suppresses; forged DSNs naming other addresses
are recorded and do not suppress."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from processor.config import DatabaseSettings, Settings
from processor.store import open_store
from processor.verp import make_return_path, verify_return_path
from tests.conftest import PROJECT
from tests.servers import Dovecot, MailUser, Postfix, make_message

SECRET = "end-to-end secret, long enough"


def _forged_dsn(bounce_to: str, victim: str, domain: str) -> bytes:
    """A DSN anybody could write: it names ``victim`` as the failed recipient."""
    return (
        f"From: MAILER-DAEMON@mx.attacker.example\r\n"
        f"To: {bounce_to}\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <forged-{os.urandom(4).hex()}@mx.attacker.example>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n'
        "\r\n"
        "--b1\r\n"
        "Content-Type: text/plain\r\n\r\n"
        f"I'm sorry to have to inform you that your message could not be delivered to {victim}.\r\n"
        "--b1\r\n"
        "Content-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.attacker.example\r\n"
        "\r\n"
        f"Final-Recipient: rfc822; {victim}\r\n"
        "Action: failed\r\n"
        "Status: 5.1.1\r\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{victim}>: Recipient address rejected: User unknown\r\n"
        "--b1\r\n"
        "Content-Type: text/rfc822-headers\r\n\r\n"
        f"From: news@{domain}\r\n"
        f"To: {victim}\r\n"
        "Subject: Our news\r\n"
        "--b1--\r\n"
    ).encode()


def _config(path: Path, db_url: str, dovecot: Dovecot, mailbox: MailUser, domain: str) -> Path:
    path.write_text(
        "[database]\n"
        f"url = {json.dumps(db_url)}\n\n"
        "[verp]\n"
        f"secrets = [{json.dumps(SECRET)}]\n"
        f"sender_domain = {json.dumps(domain)}\n\n"
        "[mailboxes.bounces]\n"
        'source = "imap"\n'
        'kind = "bounce"\n'
        'host = "127.0.0.1"\n'
        f"port = {dovecot.imap_port}\n"
        'tls = "starttls"\n'
        f"ca_file = {json.dumps(str(dovecot.ca_file))}\n"
        f"username = {json.dumps(mailbox.name)}\n"
        f"password = {json.dumps(mailbox.password)}\n"
        "require_signed_return_path = true\n"
    )
    return path


def test_signed_bounce_suppresses_forged_ones_do_not(
    postfix: Postfix, dovecot: Dovecot, bounce_mailbox: MailUser, tmp_path: Path
) -> None:
    """A genuine Postfix DSN to a signed return path suppresses its recipient; a forged DSN
    sent to the plain bounce address, and one sent to a valid signed path of another recipient,
    are recorded with decision "ignore" and suppress nobody."""
    domain = bounce_mailbox.name.partition("@")[2]
    unknown = f"nobody-{os.urandom(4).hex()}@mail.example.com"  # Dovecot has no such user
    signed = make_return_path(unknown, secret=SECRET, sender_domain=domain, tag="e2e")
    assert verify_return_path(signed, secrets=[SECRET]).recipient == unknown

    refused = postfix.submit(signed, unknown, make_message(mail_from=f"news@{domain}", to=unknown))
    assert refused == {}
    postfix.wait_queue_empty()
    genuine = dovecot.wait_for_messages(bounce_mailbox, 1)
    assert b"Content-Type: message/delivery-status" in genuine[0][1]
    assert signed.encode().lower() in genuine[0][1].lower()  # the DSN went to the signed path

    victim_plain = f"victim-{os.urandom(3).hex()}@example.org"
    victim_replayed = f"other-{os.urandom(3).hex()}@example.org"
    dovecot.append(bounce_mailbox, _forged_dsn(bounce_mailbox.name, victim_plain, domain))
    dovecot.append(bounce_mailbox, _forged_dsn(signed, victim_replayed, domain))

    db_url = f"sqlite:///{tmp_path / 'store.db'}"
    config = _config(tmp_path / "daemon.toml", db_url, dovecot, bounce_mailbox, domain)
    proc = subprocess.run(
        [sys.executable, "-m", "processor", "--config", str(config), "--log-format", "json", "run", "--once"],
        cwd=PROJECT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert SECRET not in proc.stdout + proc.stderr

    store = open_store(Settings(database=DatabaseSettings(url=db_url)))
    try:
        entry = store.is_suppressed(unknown)
        assert entry is not None and entry.bounce_type == "hard" and entry.source == "bounce"
        for victim in (victim_plain, victim_replayed):
            assert store.is_suppressed(victim) is None
            assert [(e.kind, e.decision) for e in store.history(victim)] == [("failure", "ignore")]
        assert [e.decision for e in store.history(unknown)] == ["suppress"]
    finally:
        store.close()
    processed = [json.loads(line) for line in (proc.stdout + proc.stderr).splitlines()
                 if line.startswith("{") and '"message.processed"' in line]
    held = {tuple(e["recipients"]): e.get("held", []) for e in processed}
    assert held == {
        (unknown,): [],
        (victim_plain,): [f"{victim_plain}: return path not verified: {bounce_mailbox.name}: not a signed return path"],
        (victim_replayed,): [f"{victim_replayed}: return path not verified: {signed} is signed for {unknown}, "
                             f"not {victim_replayed}"],
    }
    assert dovecot.messages(bounce_mailbox) == []  # all three filed away
    assert len(dovecot.messages(bounce_mailbox, "Processed")) == 3
