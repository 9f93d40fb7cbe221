"""The real-server fixtures themselves: Dovecot over IMAP and IMAPS, Postfix bouncing into
Dovecot, the policy-service hook, the SMTP sink, and the sample generator."""

from __future__ import annotations

import email
import email.policy
import imaplib
import smtplib
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests import servers
from tests.conftest import require
from tests.servers import Dovecot, MailUser, Postfix, SmtpSink, make_message


def _parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _dsn_blocks(message: EmailMessage) -> list[dict[str, str]]:
    """The per-recipient blocks of a DSN's message/delivery-status part, read with the stdlib."""
    for part in message.walk():
        if part.get_content_type() in ("message/delivery-status", "message/global-delivery-status"):
            payload = part.get_payload()
            assert isinstance(payload, list)
            blocks = [{k.lower(): str(v) for k, v in block.items()} for block in payload if not isinstance(block, str)]
            return blocks[1:]  # the first block is per-message
    raise AssertionError("no delivery-status part")


def test_dovecot_plain_login_offers_idle_move_uidplus(dovecot: Dovecot) -> None:
    """A user logs in over plain IMAP and the server offers IDLE, MOVE and UIDPLUS."""
    user = dovecot.new_user()
    with dovecot.session(user) as imap:
        typ, data = imap.capability()
    assert typ == "OK"
    capabilities = set(data[0].decode().upper().split())
    assert {"IDLE", "MOVE", "UIDPLUS"} <= capabilities


def test_dovecot_rejects_a_wrong_password(dovecot: Dovecot) -> None:
    """The passwd-file passdb refuses a wrong password."""
    user = dovecot.new_user()
    with pytest.raises(imaplib.IMAP4.error):
        dovecot.connect(MailUser(user.name, "not-the-password"))


def test_dovecot_tls_verified_against_generated_ca(dovecot: Dovecot) -> None:
    """Implicit TLS works with the generated CA and is refused by a client trusting another CA."""
    user = dovecot.new_user()
    with dovecot.session(user, tls=True) as imap:
        assert imap.state == "AUTH"
        assert isinstance(imap.sock, ssl.SSLSocket)
        assert imap.sock.version() in ("TLSv1.2", "TLSv1.3")
    with pytest.raises(ssl.SSLCertVerificationError):
        dovecot.connect(user, tls=True, cafile=dovecot.tls.other_ca_cert)


def test_dovecot_starttls_on_the_plain_port(dovecot: Dovecot) -> None:
    """The plain port offers STARTTLS, verified against the generated CA."""
    user = dovecot.new_user()
    client = imaplib.IMAP4(servers.LOOPBACK, dovecot.imap_port, timeout=15)
    try:
        assert "STARTTLS" in client.capabilities
        client.starttls(ssl.create_default_context(cafile=str(dovecot.ca_file)))
        client.login(user.name, user.password)
        assert isinstance(client.sock, ssl.SSLSocket)
    finally:
        client.logout()


def test_append_then_fetch_returns_the_same_bytes(dovecot: Dovecot) -> None:
    """A message APPENDed comes back byte for byte, under the UID that APPENDUID named."""
    user = dovecot.new_user()
    first = make_message(mail_from="a@example.org", to=user.name, subject="one")
    second = make_message(mail_from="b@example.org", to=user.name, subject="two", size=5000)
    uids = dovecot.append_many(user, [first, second])
    assert dovecot.messages(user) == [(uids[0], first), (uids[1], second)]
    assert uids[1] > uids[0]


def test_dovecot_cpu_seconds_counts_the_work_of_its_sessions(dovecot: Dovecot) -> None:
    """The CPU meter the daemon bench reads: what serving IMAP sessions cost shows in it, including
    the processes that ended with their session (reaped by the master)."""
    user = dovecot.new_user()
    dovecot.append_many(user, [make_message(mail_from="a@example.org", to=user.name, size=20_000)] * 200)
    before = dovecot.cpu_seconds()
    for _ in range(5):  # each session: a login, an imap process, 200 messages fetched, then it ends
        assert len(dovecot.messages(user)) == 200
    after = dovecot.cpu_seconds()
    assert after - before >= 0.01, (before, after)


def test_folders_and_flags(dovecot: Dovecot) -> None:
    """Folders can be created, appended to and listed; fetching does not set \\Seen."""
    user = dovecot.new_user()
    dovecot.create_mailbox(user, "Processed")
    dovecot.create_mailbox(user, "Processed")  # exists already: no error
    uid = dovecot.append(user, make_message(mail_from="a@example.org", to=user.name), "Processed")
    assert dovecot.mailboxes(user) == ["INBOX", "Processed"]
    assert [u for u, _ in dovecot.messages(user, "Processed")] == [uid]
    assert "\\Seen" not in dovecot.flags(user, "Processed")[uid]
    assert dovecot.maildir(user).is_dir()


def test_dovecot_stop_and_start_on_the_same_port(dovecot: Dovecot) -> None:
    """Stopped, Dovecot refuses connections; started again, it serves the same mail on the same port."""
    user = dovecot.new_user()
    uid = dovecot.append(user, make_message(mail_from="a@example.org", to=user.name))
    port = dovecot.imap_port
    dovecot.stop()
    assert not dovecot.running
    with pytest.raises(OSError):
        socket.create_connection((servers.LOOPBACK, port), timeout=2).close()
    dovecot.start()
    assert dovecot.imap_port == port
    assert dovecot.uids(user) == [uid]


def test_postfix_bounce_for_unknown_user_lands_in_dovecot(
    postfix: Postfix, dovecot: Dovecot, bounce_mailbox: MailUser
) -> None:
    """Mail to a user Dovecot does not know yields Postfix's genuine DSN in the sender's mailbox,
    while the known recipient of the same message gets it delivered."""
    known = dovecot.new_user("alice")
    message = make_message(mail_from=bounce_mailbox.name, to="x@mail.example.com", message_id="<fx-1@sender.example>")
    refused = postfix.submit(bounce_mailbox.name, ["nobody-fx@mail.example.com", known.name], message)
    assert refused == {}
    (_, dsn_bytes), *rest = dovecot.wait_for_messages(bounce_mailbox)
    assert rest == []
    dsn = _parse(dsn_bytes)
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    assert str(dsn["From"]).startswith("Mail Delivery System <MAILER-DAEMON@")
    (block,) = _dsn_blocks(dsn)
    assert block["final-recipient"] == "rfc822; nobody-fx@mail.example.com"
    assert block["action"] == "failed"
    assert block["status"] == "5.1.1"
    assert b"<fx-1@sender.example>" in dsn_bytes
    ((_, delivered),) = dovecot.wait_for_messages(known)
    assert b"<fx-1@sender.example>" in delivered


def test_postfix_bounce_to_a_verp_return_path(postfix: Postfix, dovecot: Dovecot, bounce_mailbox: MailUser) -> None:
    """A DSN addressed to bounces+TAG@domain lands in the INBOX of bounces@domain, addressed
    to the VERP form (the To: and Delivered-To: keep the tag)."""
    local, _, domain = bounce_mailbox.name.partition("@")
    verp = f"{local}+carol=example.org@{domain}"
    message = make_message(mail_from=verp, to="carol-missing@mail.example.com")
    assert postfix.submit(verp, "carol-missing@mail.example.com", message) == {}
    (_, dsn_bytes), *_ = dovecot.wait_for_messages(bounce_mailbox)
    dsn = _parse(dsn_bytes)
    assert str(dsn["To"]) == verp
    assert str(dsn["Delivered-To"]) == verp
    (block,) = _dsn_blocks(dsn)
    assert block["final-recipient"] == "rfc822; carol-missing@mail.example.com"


def test_postfix_local_domain_bounces_unknown_user(
    postfix: Postfix, dovecot: Dovecot, bounce_mailbox: MailUser
) -> None:
    """local(8) bounces an address of the local test domain with its own 'unknown user' text."""
    message = make_message(mail_from=bounce_mailbox.name, to="ghost@local.example.net")
    assert postfix.submit(bounce_mailbox.name, "ghost@local.example.net", message) == {}
    (_, dsn_bytes), *_ = dovecot.wait_for_messages(bounce_mailbox)
    (block,) = _dsn_blocks(_parse(dsn_bytes))
    assert block["status"] == "5.1.1"
    assert 'unknown user: "ghost"' in block["diagnostic-code"]


class _PolicyHandler(socketserver.StreamRequestHandler):
    """A Postfix policy server (SMTPD_POLICY_README) that rejects one recipient."""

    def handle(self) -> None:
        attributes: dict[str, str] = {}
        for raw in self.rfile:
            line = raw.decode().rstrip("\n")
            if line:
                name, _, value = line.partition("=")
                attributes[name] = value
                continue
            server = self.server
            assert isinstance(server, _PolicyServer)
            server.requests.append(attributes)
            if attributes.get("recipient") == "blocked@mail.example.com":
                action = "REJECT 5.7.1 test policy: recipient is suppressed"
            else:
                action = "DUNNO"
            self.wfile.write(f"action={action}\n\n".encode())
            attributes = {}


class _PolicyServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    requests: list[dict[str, str]]


@pytest.fixture
def policy_server() -> Iterator[_PolicyServer]:
    server = _PolicyServer((servers.LOOPBACK, 0), _PolicyHandler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_postfix_policy_service_hook(postfix: Postfix, dovecot: Dovecot, policy_server: _PolicyServer) -> None:
    """With policy_service(), smtpd asks the policy server at RCPT TO and refuses with its text;
    afterwards the restriction is gone again."""
    allowed = dovecot.new_user("allowed")
    message = make_message(mail_from="sender@example.org", to=allowed.name)
    port = policy_server.server_address[1]
    with postfix.policy_service(port):
        refused = postfix.submit("sender@example.org", ["blocked@mail.example.com", allowed.name], message)
    assert refused == {
        "blocked@mail.example.com": (
            554,
            b"5.7.1 <blocked@mail.example.com>: Recipient address rejected: test policy: recipient is suppressed",
        )
    }
    assert {r["recipient"] for r in policy_server.requests} == {"blocked@mail.example.com", allowed.name}
    assert all(r["request"] == "smtpd_access_policy" for r in policy_server.requests)
    dovecot.wait_for_messages(allowed)
    seen = len(policy_server.requests)
    assert postfix.submit("sender@example.org", allowed.name, message) == {}
    assert len(policy_server.requests) == seen


def test_smtp_sink_scripted_replies(smtp_sink: SmtpSink) -> None:
    """The sink refuses scripted recipients at RCPT or DATA and stores what it accepts."""
    smtp_sink.reply("no@remote.example", "rcpt", 550, "5.1.1 no such user")
    smtp_sink.reply("spam@remote.example", "data", 554, "5.7.1 spam")
    message = make_message(mail_from="a@example.org", to="yes@remote.example")
    with smtplib.SMTP(servers.LOOPBACK, smtp_sink.port) as client:
        refused = client.sendmail("a@example.org", ["no@remote.example", "yes@remote.example"], message)
        assert refused == {"no@remote.example": (550, b"5.1.1 no such user")}
        with pytest.raises(smtplib.SMTPDataError) as failed:
            client.sendmail("a@example.org", ["spam@remote.example"], message)
        assert failed.value.smtp_code == 554
    (envelope,) = smtp_sink.wait_for(1)
    assert envelope.rcpt_to == ("yes@remote.example",)
    assert envelope.data.replace(b"\r\n", b"\n") == message.replace(b"\r\n", b"\n")


@pytest.mark.slow
def test_sample_generator_produces_every_scenario(tmp_path: Path) -> None:
    """tests/generate_samples.py still gets a bounce out of Postfix, Exim, OpenSMTPD, Sendmail, dma and
    Courier per scenario, none of Postfix's, Exim's and Courier's left out (a missing Courier skips
    the test with the reason, or fails it in CI); each MTA learns that nowhere.invalid does not
    exist from its own lab DNS server (servers.NxdomainDns), never from the machine's resolver."""
    from tests import generate_samples

    for missing in (
        servers.dovecot_missing(),
        servers.postfix_missing(),
        servers.exim_missing(),
        servers.courier_missing(),
    ):
        require(not missing, missing)
    scenarios = generate_samples.selected()
    names = {s.name for s in scenarios}
    always = (generate_samples.POSTFIX + generate_samples.EXIM + generate_samples.DOVECOT_LMTP
              + generate_samples.POSTFIX_MORE + generate_samples.EXIM_MORE + generate_samples.COURIER)
    assert [s.name for s in always if s.name not in names] == []
    generated = generate_samples.generate(tmp_path)
    written = generated.files
    assert set(written) == names
    unknown_domain = {s.name.split("-", 1)[0] for s in scenarios if s.name.endswith("-unknown-domain")}
    assert {"postfix", "exim", "courier"} <= unknown_domain
    for mta in sorted(unknown_domain):
        assert "nowhere.invalid" in generated.asked[mta], f"{mta} asked its lab DNS server {generated.asked[mta]}"
    for scenario in scenarios:
        files = written[scenario.name]
        assert len(files) == scenario.expect
        for path in files:
            data = path.read_bytes()
            assert scenario.message_id.encode() in data
            message = _parse(data)
            if scenario.name.startswith("dma-"):
                # dma: a plain-text notice, no delivery-status part
                assert message.get_content_type() == "text/plain"
                continue
            if scenario.name.startswith("opensmtpd-"):
                # OpenSMTPD: a multipart/mixed around its delivery-status part, no Auto-Submitted
                assert message.get_content_type() == "multipart/mixed"
            elif scenario.name.startswith("courier-"):
                # Courier: a multipart/report without Auto-Submitted
                assert message.get_content_type() == "multipart/report"
                assert message["Auto-Submitted"] is None
                assert "running the Courier mail server" in data.decode("utf-8", "replace")
            else:
                assert message.get_content_type() == "multipart/report"
                assert message["Auto-Submitted"] is not None
            statuses = {"message/delivery-status", "message/global-delivery-status"}
            assert any(part.get_content_type() in statuses for part in message.walk())


def test_nxdomain_dns_makes_every_name_unknown_without_leaving_the_machine() -> None:
    """A resolver pointed at servers.NxdomainDns (in a private namespace) finds no name, and asked it."""
    import os
    import shutil
    import subprocess

    require(os.geteuid() == 0 and shutil.which("unshare") is not None, "needs root and unshare")
    dns = servers.NxdomainDns(servers.private_dir("bp-test-dns-"))
    dns.start()
    try:
        probe = subprocess.run(
            servers.with_resolv_conf(dns.resolv_conf, ["getent", "ahosts", "mx.remote.example"]),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        dns.stop()
    assert probe.returncode == 2, probe.stdout + probe.stderr  # getent: key not found
    assert dns.queries >= 1
    assert set(dns.names) == {"mx.remote.example"}
