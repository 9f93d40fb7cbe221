"""The IMAP source against a real Dovecot: TLS verification, STARTTLS, PEEK, MOVE and its
fallback, dispositions, IDLE, timeouts, and what an error message may say."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from processor.classify import load_classifier
from processor.config import ConfigError, DatabaseSettings, MailboxSettings, Settings, load_settings
from processor.daemon.service import MailboxWorker, Pipeline, Runtime
from processor.sources.base import Disposal, SourceError
from processor.sources.imap import ImapSource, encode_folder, uid_set
from processor.store import Store, open_store
from tests.daemon.helpers import bounces, imap_box, write_config
from tests.servers import Dovecot, MailUser


def settings(dovecot: Dovecot, user: MailUser, **overrides: Any) -> MailboxSettings:
    return MailboxSettings(**imap_box(dovecot, user, **overrides))


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _open_close(mailbox: MailboxSettings) -> Any:
    source = ImapSource("t/INBOX", "INBOX", mailbox)
    try:
        return await source.open()
    finally:
        await source.close()


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    opened = open_store(Settings(database=DatabaseSettings(url=sqlite_url)))
    yield opened
    opened.close()


def drain(store: Store, source: ImapSource, mailbox: MailboxSettings) -> int:
    pipeline = Pipeline(store.settings, store, load_classifier(store.settings.rules))
    runtime = Runtime(ThreadPoolExecutor(2), asyncio.Event(), threading.Event())

    async def go() -> int:
        worker = MailboxWorker(source, mailbox, pipeline, store, runtime)
        try:
            return await worker.drain()
        finally:
            await source.close()

    return int(run(go()))


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
def test_tls_server_verified_against_the_configured_ca(dovecot: Dovecot, tls: str) -> None:
    """Implicit TLS and STARTTLS connect when the certificate verifies against ca_file."""
    user = dovecot.new_user()
    port = dovecot.imaps_port if tls == "implicit" else dovecot.imap_port
    state = run(_open_close(settings(dovecot, user, tls=tls, port=port)))
    assert state.uidvalidity and state.exists == 0


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
@pytest.mark.parametrize("ca", ["other", "system"])
def test_unverified_certificate_is_refused(dovecot: Dovecot, tls: str, ca: str) -> None:
    """A certificate that does not verify (an unrelated CA, or the system's CAs) is refused, as a
    configuration problem that names the host and the CA file."""
    user = dovecot.new_user()
    port = dovecot.imaps_port if tls == "implicit" else dovecot.imap_port
    ca_file = str(dovecot.tls.other_ca_cert) if ca == "other" else None
    with pytest.raises(SourceError) as caught:
        run(_open_close(settings(dovecot, user, tls=tls, port=port, ca_file=ca_file)))
    assert "is not trusted" in str(caught.value) and f"127.0.0.1:{port}" in str(caught.value)
    assert caught.value.transient is False


def test_tls_verify_false_accepts_any_certificate(dovecot: Dovecot) -> None:
    """tls_verify = false is the explicit opt-out: the same certificate is then accepted."""
    user = dovecot.new_user()
    mailbox = settings(dovecot, user, tls="implicit", port=dovecot.imaps_port,
                       ca_file=str(dovecot.tls.other_ca_cert), tls_verify=False)
    assert run(_open_close(mailbox)).uidvalidity


def test_plain_imap_only_on_loopback(dovecot: Dovecot, tmp_path: Path) -> None:
    """tls = "none" works on 127.0.0.1 and is a configuration error for any other host."""
    user = dovecot.new_user()
    assert run(_open_close(settings(dovecot, user, tls="none"))).uidvalidity
    config = write_config(tmp_path / "c.toml", {"mailboxes.remote": {
        "host": "imap.example.com", "tls": "none", "username": "u", "password": "p"}})
    with pytest.raises(ConfigError, match="allowed only on a loopback host"):
        load_settings(config)


def test_wrong_password_is_refused_and_not_repeated(dovecot: Dovecot) -> None:
    """A refused login is a configuration problem naming the user, never the password."""
    user = dovecot.new_user()
    with pytest.raises(SourceError) as caught:
        run(_open_close(settings(dovecot, user, password="Wr0ng-Pa55-zq81")))
    text = str(caught.value)
    assert user.name in text and "refused" in text and "Wr0ng-Pa55-zq81" not in text
    assert caught.value.transient is False


@contextlib.contextmanager
def silent_server(greeting: bytes) -> Iterator[int]:
    """A TCP server that sends a greeting, answers CAPABILITY, and then never answers anything."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    held: list[socket.socket] = []

    def talk(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            conn.sendall(greeting)
            buffer = b""
            while True:
                data = conn.recv(4096)
                if not data:
                    return
                buffer += data
                while b"\r\n" in buffer:
                    line, buffer = buffer.split(b"\r\n", 1)
                    tag, _, rest = line.partition(b" ")
                    if rest.upper() == b"CAPABILITY":
                        conn.sendall(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n")

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)
            if greeting:
                threading.Thread(target=talk, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield port
    finally:
        server.close()
        for conn in held:
            conn.close()


def test_command_timeout_drops_the_connection_without_leaking_the_password() -> None:
    """A server that greets and then stays silent makes LOGIN time out; the error says which
    command timed out and never contains the password."""
    greeting = b"* OK ready\r\n"
    with silent_server(greeting) as port:
        mailbox = MailboxSettings(host="127.0.0.1", port=port, tls="none", username="someone",
                                  password="T1me0ut-Secret-77", command_timeout_seconds=0.5)
        started = time.monotonic()
        with pytest.raises(SourceError) as caught:
            run(_open_close(mailbox))
    assert time.monotonic() - started < 5
    assert "LOGIN got no answer" in str(caught.value) and "T1me0ut-Secret-77" not in str(caught.value)


def test_connect_timeout_when_no_greeting_comes() -> None:
    """A server that accepts but never greets fails after connect_timeout_seconds."""
    with silent_server(b"") as port:
        mailbox = MailboxSettings(host="127.0.0.1", port=port, tls="none", username="u", password="p",
                                  connect_timeout_seconds=0.5)
        with pytest.raises(SourceError, match="no IMAP greeting"):
            run(_open_close(mailbox))


def test_fetch_marks_nothing_seen_and_move_creates_the_folders(dovecot: Dovecot) -> None:
    """BODY.PEEK[] leaves messages unread; disposal creates Processed and Quarantine and moves."""
    user = dovecot.new_user()
    uids = dovecot.append_many(user, bounces(3))
    mailbox = settings(dovecot, user)

    async def go() -> list[Any]:
        source = ImapSource("t/INBOX", "INBOX", mailbox)
        try:
            await source.open()
            fetched = await source.fetch(await source.candidates(0))
            flags = await asyncio.to_thread(dovecot.flags, user)
            assert all("\\Seen" not in f for f in flags.values())
            await source.dispose([uids[0], uids[1]], Disposal.PROCESSED)
            await source.dispose([uids[2]], Disposal.QUARANTINE)
            return fetched
        finally:
            await source.close()

    fetched = run(go())
    assert [m.uid for m in fetched] == uids and all(m.received_at for m in fetched)
    assert {"Processed", "Quarantine"} <= set(dovecot.mailboxes(user))
    assert not dovecot.uids(user) and len(dovecot.uids(user, "Processed")) == 2
    assert len(dovecot.uids(user, "Quarantine")) == 1


def test_idle_returns_when_mail_arrives(dovecot: Dovecot) -> None:
    """With IDLE, wait_for_mail returns True (new mail), not at its timeout, after an APPEND."""
    user = dovecot.new_user()
    mailbox = settings(dovecot, user)

    async def go() -> tuple[bool, float]:
        source = ImapSource("t/INBOX", "INBOX", mailbox)
        await source.open()
        assert source.can_push

        async def deliver() -> float:
            await asyncio.sleep(0.5)
            at = time.monotonic()
            await asyncio.to_thread(dovecot.append, user, bounces(1)[0])
            return at

        delivery = asyncio.ensure_future(deliver())
        arrived = await source.wait_for_mail(20, asyncio.Event())
        waited = time.monotonic() - await delivery
        assert await source.candidates(0) == [1]  # the connection is usable after DONE
        await source.close()
        return arrived, waited

    arrived, waited = run(go())
    assert arrived, "wait_for_mail ran out its 20 s instead of returning on the EXISTS"
    assert waited < 20


def test_mail_arriving_during_a_drain_ends_the_wait_at_once(dovecot: Dovecot) -> None:
    """A message APPENDed while the drain's own commands run (Dovecot reports its EXISTS with
    their answers, once) makes wait_for_mail return True at once, not after an IDLE that would
    last until the next poll; the next search finds the message."""
    user = dovecot.new_user()
    mailbox = settings(dovecot, user)
    dovecot.append(user, bounces(1, prefix="first")[0])

    async def go() -> tuple[bool, list[int]]:
        source = ImapSource("t/INBOX", "INBOX", mailbox)
        await source.open()
        assert await source.candidates(0) == [1]
        await asyncio.to_thread(dovecot.append, user, bounces(1, prefix="second")[0])
        assert [m.uid for m in await source.fetch([1])] == [1]  # the drain's FETCH, answered with EXISTS
        stop = asyncio.Event()
        waiting = asyncio.ensure_future(source.wait_for_mail(600, stop))
        done, _ = await asyncio.wait({waiting}, timeout=30)
        stop.set()
        arrived = await waiting
        assert waiting in done, "wait_for_mail idled although mail had arrived during the drain"
        found = await source.candidates(0)
        await source.close()
        return arrived, found

    arrived, found = run(go())
    assert arrived and found == [1, 2]


def test_without_move_and_idle_copy_delete_expunge_and_poll(plain_dovecot: Any, store: Store) -> None:
    """A server without MOVE gets COPY + \\Deleted + UID EXPUNGE, and without IDLE the source polls."""
    user = plain_dovecot.new_user()
    plain_dovecot.append_many(user, [*bounces(5), b"\r\n"])
    mailbox = settings(plain_dovecot, user, port=plain_dovecot.imap_port)
    source = ImapSource("nomove/INBOX", "INBOX", mailbox)

    async def capabilities() -> tuple[bool, bool]:
        await source.open()
        assert source.connection is not None
        result = (source.connection.has("MOVE"), source.can_push)
        await source.close()
        return result

    assert run(capabilities()) == (False, False)
    assert drain(store, source, mailbox) == 6
    assert plain_dovecot.uids(user) == []
    assert len(plain_dovecot.uids(user, "Processed")) == 5
    assert len(plain_dovecot.uids(user, "Quarantine")) == 1
    assert all("\\Deleted" not in f for f in plain_dovecot.flags(user, "Processed").values())


@pytest.mark.parametrize("processed", ["seen", "delete", "keep"])
def test_processed_dispositions(dovecot: Dovecot, store: Store, processed: str) -> None:
    """processed = seen flags, delete removes, keep leaves; a second pass reads nothing again."""
    user = dovecot.new_user()
    dovecot.append_many(user, bounces(4))
    mailbox = settings(dovecot, user, processed=processed)
    assert drain(store, ImapSource("d/INBOX", "INBOX", mailbox), mailbox) == 4
    flags = dovecot.flags(user)
    if processed == "seen":
        assert len(flags) == 4 and all("\\Seen" in f for f in flags.values())
    elif processed == "delete":
        assert flags == {}
    else:
        assert len(flags) == 4 and all("\\Seen" not in f for f in flags.values())
    assert drain(store, ImapSource("d/INBOX", "INBOX", mailbox), mailbox) == 0
    assert "Processed" not in dovecot.mailboxes(user)


def test_non_ascii_folder_names(dovecot: Dovecot) -> None:
    """Folder names go over the wire in modified UTF-7 (RFC 3501 5.1.3)."""
    assert encode_folder("~peter/mail/台北/日本語") == '"~peter/mail/&U,BTFw-/&ZeVnLIqe-"'
    assert encode_folder('A&B "x"') == '"A&-B \\"x\\""'
    user = dovecot.new_user()
    dovecot.append_many(user, bounces(1))
    mailbox = settings(dovecot, user, processed_folder="Erledigt/Größe")

    async def go() -> None:
        source = ImapSource("t/INBOX", "INBOX", mailbox)
        await source.open()
        await source.dispose([1], Disposal.PROCESSED)
        await source.close()

    run(go())
    assert "Erledigt/Gr&APYA3w-e" in dovecot.mailboxes(user)


def test_uid_set() -> None:
    """UID sets are compressed into ranges."""
    assert uid_set([1, 2, 3, 7, 9, 10]) == "1:3,7,9:10"
    assert uid_set([5]) == "5"


def test_idle_is_renewed(dovecot: Dovecot) -> None:
    """IDLE ends after idle_renew_seconds (DONE), and the next IDLE on the same connection works."""
    user = dovecot.new_user()
    mailbox = settings(dovecot, user, idle_renew_seconds=1.0)

    async def go() -> list[tuple[bool, float]]:
        source = ImapSource("t/INBOX", "INBOX", mailbox)
        await source.open()
        results = []
        for _ in range(2):
            started = time.monotonic()
            arrived = await source.wait_for_mail(60, asyncio.Event())
            results.append((arrived, time.monotonic() - started))
        await source.close()
        return results

    results = run(go())
    assert [arrived for arrived, _ in results] == [False, False]
    # each wait ended by the 1 s renewal, not by the 60 s wait: slowness only adds to the lower
    # bound, and the upper bound is far from both
    assert all(0.9 <= took < 30.0 for _, took in results)
