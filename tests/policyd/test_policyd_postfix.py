"""End to end with a real Postfix on loopback: check_policy_service asks our service at RCPT TO."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.policyd.helpers import wait_until
from tests.servers import Dovecot, Postfix, free_port, make_message


def test_suppressed_refused_at_rcpt_allowed_delivered(
    postfix: Postfix, dovecot: Dovecot, sqlite_url: str, store_at: Any, policyd_process: Any
) -> None:
    """Postfix refuses the suppressed recipient at RCPT TO with our text and accepts (and
    delivers) the other one of the same message."""
    suppressed, allowed = dovecot.new_user("gone"), dovecot.new_user("here")
    store_at(sqlite_url).add(suppressed.name, reason="userunknown", bounce_type="hard", source="bounce")
    process = policyd_process(sqlite_url)
    port = int(process.listen.rsplit(":", 1)[1])
    message = make_message(mail_from="news@sender.example", to=f"{suppressed.name}, {allowed.name}")
    with postfix.policy_service(port):
        refused = postfix.submit("news@sender.example", [suppressed.name, allowed.name], message)
    assert list(refused) == [suppressed.name]
    code, text = refused[suppressed.name]
    assert code == 554
    assert text.decode() == (f"5.1.1 <{suppressed.name}>: Recipient address rejected: "
                             "recipient suppressed: userunknown")
    delivered = dovecot.wait_for_messages(allowed, 1)
    assert len(delivered) == 1 and b"Subject: Test message" in delivered[0][1]
    assert dovecot.messages(suppressed) == []
    assert wait_until(lambda: any(e["event"] == "policyd.answer" for e in process.events()))
    answers = [e for e in process.events() if e["event"] == "policyd.answer"]
    assert [(e["recipient"], e["answer"], e["client"]) for e in answers] == [
        (suppressed.name.lower(), "REJECT", "127.0.0.1")]


def test_defer_answer_is_a_450(
    postfix: Postfix, dovecot: Dovecot, sqlite_url: str, store_at: Any, policyd_process: Any
) -> None:
    """A DEFER answer (soft entries configured to defer) reaches the client as 450 with our text."""
    full = dovecot.new_user("full")
    store_at(sqlite_url).add(full.name, reason="mailboxfull", bounce_type="soft", source="bounce")
    process = policyd_process(sqlite_url, action_by_bounce_type={"soft": "defer"})
    port = int(process.listen.rsplit(":", 1)[1])
    with postfix.policy_service(port):
        refused = postfix.submit("news@sender.example", full.name,
                                 make_message(mail_from="news@sender.example", to=full.name))
    assert refused == {full.name: (450, f"4.2.1 <{full.name}>: Recipient address rejected: recipient "
                                        "temporarily suppressed: mailboxfull".encode())}


@pytest.mark.parametrize("on_error", ["dunno", "defer"])
def test_unreachable_store_fails_open_or_closed_through_postfix(
    postfix: Postfix, dovecot: Dovecot, policyd_process: Any, on_error: str
) -> None:
    """With the database unreachable, fail open lets the mail through and fail closed makes
    Postfix answer 450 with our text."""
    user = dovecot.new_user("any")
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
    process = policyd_process(url, on_store_error=on_error)
    port = int(process.listen.rsplit(":", 1)[1])
    with postfix.policy_service(port):
        refused = postfix.submit("news@sender.example", user.name,
                                 make_message(mail_from="news@sender.example", to=user.name))
    if on_error == "dunno":
        assert refused == {}
        assert len(dovecot.wait_for_messages(user, 1)) == 1
    else:
        assert refused == {user.name: (450, f"4.3.0 <{user.name}>: Recipient address rejected: "
                                            "suppression list temporarily unavailable".encode())}
    assert wait_until(lambda: any(e["event"] == "policyd.store_unavailable" for e in process.events()))


def test_unix_socket_with_postfix(
    postfix: Postfix, dovecot: Dovecot, sqlite_url: str, store_at: Any, policyd_process: Any
) -> None:
    """check_policy_service unix:PATH reaches the service over its UNIX socket (smtpd runs as
    the unprivileged postfix user: the socket's group, postfix, with mode 0660 lets it connect)."""
    suppressed, allowed = dovecot.new_user("gone"), dovecot.new_user("here")
    store_at(sqlite_url).add(suppressed.name, reason="complaint", bounce_type="complaint", source="complaint")
    directory = Path(tempfile.mkdtemp(prefix="bp-pd-", dir="/tmp"))
    directory.chmod(0o755)
    try:
        path = directory / "policy.sock"
        policyd_process(sqlite_url, listen=f"unix:{path}", socket_group="postfix")
        with postfix.configured(smtpd_recipient_restrictions=f"check_policy_service unix:{path}"):
            refused = postfix.submit("news@sender.example", [suppressed.name, allowed.name],
                                     make_message(mail_from="news@sender.example", to=allowed.name))
        assert refused == {suppressed.name: (554, f"5.1.1 <{suppressed.name}>: Recipient address rejected: "
                                                  "recipient suppressed: complaint".encode())}
        assert len(dovecot.wait_for_messages(allowed, 1)) == 1
    finally:
        shutil.rmtree(directory, ignore_errors=True)
