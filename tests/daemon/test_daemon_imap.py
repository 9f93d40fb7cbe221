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


# --- the FETCH response reader, fed directly ---------------------------------------------------------

_FETCHED = [(7, b"Subject: (unbalanced\r\n\r\nbody with ) and (( in it\r\n"),
            (8, b"Subject: plain\r\n\r\n" + b"x" * 40_000 + b"\r\n"),
            (12, b"Subject: last\r\n\r\n)\r\n")]


def _fetch_response(tag: bytes) -> bytes:
    """A UID FETCH answer: three messages, an unsolicited flag change between them, and parentheses
    in the bodies (literals: they must not count)."""
    out = b""
    for n, (uid, body) in enumerate(_FETCHED, 1):
        out += (b'* %d FETCH (UID %d INTERNALDATE "17-Jul-2026 02:44:25 +0000" BODY[] {%d}\r\n'
                % (n, uid, len(body)) + body + b")\r\n")
        if n == 1:
            out += b"* 5 FETCH (FLAGS (\\Seen))\r\n"
    return out + tag + b" OK UID FETCH done\r\n"


class _Wire(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.sent = b""

    def write(self, data: Any) -> None:
        self.sent += bytes(data)


async def _fetch_fed(pieces: Any, *, timeout: float = 5.0, fetch_class: Any = None) -> Any:
    """Runs a UID FETCH through the source's protocol, the server's answer fed by ``pieces``
    (called with a function that feeds bytes); returns the response."""
    import aioimaplib

    from processor.sources import imap

    protocol = imap._Protocol(asyncio.get_running_loop(), lambda exc: None)
    protocol.connection_made(_Wire())
    protocol.state = aioimaplib.SELECTED
    command = (fetch_class or imap._FetchCommand)("A001", "1:*", "(UID INTERNALDATE BODY.PEEK[])", prefix="UID",
                                                  timeout=timeout)
    running = asyncio.ensure_future(protocol.execute(command))
    await asyncio.sleep(0)
    await pieces(protocol.data_received)
    return await running


@pytest.mark.parametrize("step", [1, 5, 333, 1 << 20])
def test_fetch_response_read_in_any_slicing(step: int) -> None:
    """However the server's answer is sliced, every message comes back whole with its UID, in
    order, and the unsolicited FETCH (no body) is left out: as aioimaplib's own FETCH reads it."""
    import aioimaplib

    from processor.sources.imap import parse_fetch

    answer = _fetch_response(b"A001")

    async def feed(data_received: Any) -> None:
        for start in range(0, len(answer), step):
            data_received(answer[start : start + step])

    for fetch_class in (None, aioimaplib.FetchCommand):
        response = run(_fetch_fed(feed, fetch_class=fetch_class))
        assert response.result == "OK"
        fetched = parse_fetch(response.lines)
        assert [(m.uid, m.data) for m in fetched] == _FETCHED
        assert all(m.received_at is not None and m.received_at.year == 2026 for m in fetched)


@pytest.mark.parametrize("value", [
    "17-Jul-1996 02:44:25 -0700", " 7-Jul-1996 02:44:25 +0000", "07-jul-1996 23:59:59 +1345",
    "29-Feb-2024 12:00:00 -0930", "01-DEC-2024 00:00:00 -0000", "31-Feb-2020 00:00:00 +0000",
    "01-Jan-2024 24:00:00 +0000", "01-Jan-2024 00:00:00 +0160", "01-Foo-2024 00:00:00 +0000",
    "1-Jan-2024 00:00:00 +0100", "01-Jan-2024  00:00:00 +0100", "01-Jan-2024 00:00:00 +01:00",
])
def test_internaldate_read_as_strptime_reads_it(value: str) -> None:
    """INTERNALDATE, read by hand for speed, gives what strptime gives (the same instant, the same
    offset; None for what strptime refuses)."""
    from datetime import datetime

    from processor.sources.imap import _internaldate

    try:
        wanted: datetime | None = datetime.strptime(value.strip(), "%d-%b-%Y %H:%M:%S %z")
    except ValueError:
        wanted = None
    got = _internaldate(b'1 FETCH (UID 9 INTERNALDATE "' + value.encode() + b'" BODY[] {10}')
    assert got == wanted
    assert (got.utcoffset() if got else None) == (wanted.utcoffset() if wanted else None)


def test_fetch_inactivity_timer_is_not_rearmed_per_line() -> None:
    """A batch's answer is thousands of lines and literal pieces: the inactivity timer is pushed
    back without a new timer (a heap entry and a cancelled one) for each of them."""
    answer = _fetch_response(b"A001") * 1  # 3 messages, ~40 KB: hundreds of pieces at 100 bytes

    async def feed(data_received: Any) -> None:
        loop = asyncio.get_running_loop()
        armed = []
        original = loop.call_later

        def counting(delay: float, callback: Any, *args: Any, **kwargs: Any) -> Any:
            armed.append(delay)
            return original(delay, callback, *args, **kwargs)

        loop.call_later = counting  # type: ignore[method-assign]
        try:
            for start in range(0, len(answer), 100):
                data_received(answer[start : start + 100])
        finally:
            loop.call_later = original  # type: ignore[method-assign]
        assert len(armed) <= 1, f"{len(armed)} timers armed while reading one answer"

    assert run(_fetch_fed(feed)).result == "OK"


def test_fetch_times_out_after_silence_not_while_data_trickles() -> None:
    """The inactivity timeout still holds: an answer that keeps coming, slowly, for longer than the
    timeout completes; one that stops half-way fails once the timeout has passed since the last
    piece."""
    import aioimaplib

    answer = _fetch_response(b"A001")

    async def trickle(data_received: Any) -> None:
        pieces = [answer[i : i + len(answer) // 8 + 1] for i in range(0, len(answer), len(answer) // 8 + 1)]
        for piece in pieces:
            await asyncio.sleep(0.1)
            data_received(piece)

    started = time.monotonic()
    assert run(_fetch_fed(trickle, timeout=0.3)).result == "OK"
    assert time.monotonic() - started > 0.6  # longer than the timeout in all

    async def stall(data_received: Any) -> None:
        await asyncio.sleep(0.2)
        data_received(answer[:500])

    started = time.monotonic()
    with pytest.raises(aioimaplib.CommandTimeout):
        run(_fetch_fed(stall, timeout=0.3))
    assert 0.45 < time.monotonic() - started < 2.0


@pytest.mark.parametrize("step", [None, 16 * 1024, 7])
def test_long_answer_of_short_lines_read_in_one_piece(step: int | None) -> None:
    """A UID MOVE of a 1,000-message batch is answered by one "* N EXPUNGE" line per message:
    16 KB, over a thousand lines in one read. aioimaplib's parser recurses once per line, so
    that read once went past the recursion limit (RecursionError, the connection dropped and the
    pass was retried after a backoff: the daemon ran 3x slower at batch_size 1000). Every line
    is read, and the command completes, however the answer is sliced."""
    import aioimaplib

    from processor.sources import imap

    count = 3000
    answer = (b"* OK [COPYUID 7 1:%d 1:%d] Moved UIDs.\r\n" % (count, count)
              + b"".join(b"* %d EXPUNGE\r\n" % (count - n) for n in range(count))
              + b"A001 OK Move completed (0.001 + 0.000 secs).\r\n")

    async def scenario() -> Any:
        protocol = imap._Protocol(asyncio.get_running_loop(), lambda exc: None)
        protocol.connection_made(_Wire())
        protocol.state = aioimaplib.SELECTED
        command = aioimaplib.Command("MOVE", "A001", "1:3000", '"Processed"', prefix="UID", timeout=5.0)
        running = asyncio.ensure_future(protocol.execute(command))
        await asyncio.sleep(0)
        slice_size = step or len(answer)
        for start in range(0, len(answer), slice_size):
            protocol.data_received(answer[start : start + slice_size])
        return await asyncio.wait_for(running, 5.0)

    response = run(scenario())
    assert response.result == "OK"
    expunged = [line for line in response.lines if isinstance(line, bytes) and line.endswith(b"EXPUNGE")]
    assert len(expunged) == count
