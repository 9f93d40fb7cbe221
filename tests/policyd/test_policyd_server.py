"""The policy service over real sockets: answers, pipelining, many clients, malformed input,
timeouts, the in-memory copy kept current, the per-query mode, scopes and UNIX sockets."""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from processor import metrics
from processor.policyd import ListenError
from processor.records import BounceType
from processor.store import MessageRef
from tests.policyd.helpers import Client, ThreadServer, make_settings, refreshes_pass, request_bytes, wait_until
from tests.store.helpers import verdict

REJECT_HARD = "REJECT 5.1.1 recipient suppressed: userunknown"


def _suppress_hard(store: Any, address: str, sender: str = "news@sender.example") -> None:
    """Record a genuine-looking hard bounce for ``address`` (the daemon's path into the store)."""
    data = f"bounce for {address} {time.monotonic_ns()}".encode()
    result = store.record_message(MessageRef.for_bytes(data, "INBOX"), [verdict(address, sender=sender)])
    assert result.decisions[0].action == "suppress"


def _errors() -> float:
    return metrics.POLICY_REQUESTS.labels(answer="error")._value.get()  # type: ignore[no-any-return]


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory for UNIX sockets (their paths are limited to about 100 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="bp-pd-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_suppressed_rejected_allowed_dunno(sqlite_url: str, store_at: Any) -> None:
    """A suppressed recipient gets REJECT with the reason, any other DUNNO, whatever its case."""
    _suppress_hard(store_at(sqlite_url), "gone@example.org")
    with ThreadServer(make_settings(sqlite_url)) as server, server.client() as client:
        assert client.ask("gone@example.org") == REJECT_HARD
        assert client.ask("<Gone@EXAMPLE.org>") == REJECT_HARD
        assert client.ask("here@example.org") == "DUNNO"


@pytest.mark.parametrize("recipient", [
    '"gone"@example.org',
    "gone@example.org.",
    '"Gone"@EXAMPLE.org.',
    '<"gone"@example.org>',
])
def test_postfix_equivalent_forms_are_rejected(sqlite_url: str, store_at: Any, recipient: str) -> None:
    """A quoted local part that needs no quotes and a trailing dot of the domain name the address
    Postfix delivers to, so a suppressed recipient written so is refused too."""
    _suppress_hard(store_at(sqlite_url), "gone@example.org")
    with ThreadServer(make_settings(sqlite_url)) as server, server.client() as client:
        assert client.ask(recipient) == REJECT_HARD


@pytest.mark.parametrize("recipient", ["go\u200bne@example.org", "gone\ufffd@example.org", '"go ne"@example.org'])
def test_lookalike_recipients_are_not_the_suppressed_address(sqlite_url: str, store_at: Any, recipient: str) -> None:
    """A recipient with an invisible character or U+FFFD is refused as an address (DUNNO): it is
    not the suppressed one, and it is never matched by stripping the character."""
    _suppress_hard(store_at(sqlite_url), "gone@example.org")
    with ThreadServer(make_settings(sqlite_url)) as server, server.client() as client:
        assert client.ask(recipient) == "DUNNO"


def test_only_rcpt_stage_and_real_addresses_are_judged(sqlite_url: str, store_at: Any) -> None:
    """Other protocol states, an empty recipient and an unparseable one get DUNNO."""
    _suppress_hard(store_at(sqlite_url), "gone@example.org")
    with ThreadServer(make_settings(sqlite_url)) as server, server.client() as client:
        assert client.ask("gone@example.org", protocol_state="DATA") == "DUNNO"
        assert client.ask("gone@example.org", protocol_state="END-OF-MESSAGE") == "DUNNO"
        assert client.ask("") == "DUNNO"
        assert client.ask("not an address@@") == "DUNNO"
        assert client.ask("gone@example.org", protocol_state="rcpt") == REJECT_HARD


def test_pipelined_requests_are_answered_in_order(sqlite_url: str, store_at: Any) -> None:
    """Many requests sent at once, split at odd places, are each answered, in order."""
    store = store_at(sqlite_url)
    suppressed = {f"gone{i}@example.org" for i in range(0, 300, 3)}
    for address in suppressed:
        store.add(address, reason="userunknown")
    recipients = [f"gone{i}@example.org" for i in range(300)]
    data = b"".join(request_bytes(r) for r in recipients)
    with ThreadServer(make_settings(sqlite_url)) as server, server.client() as client:
        for start in range(0, len(data), 997):
            client.send(data[start : start + 997])
        answers = client.answers(len(recipients))
        expected = ["REJECT 5.1.1 recipient suppressed: userunknown" if r in suppressed else "DUNNO"
                    for r in recipients]
        assert answers == expected
        for byte in request_bytes("gone3@example.org"):  # one byte per write
            client.send(bytes([byte]))
        assert client.answers(1) == ["REJECT 5.1.1 recipient suppressed: userunknown"]


def test_many_clients_at_once(sqlite_url: str, store_at: Any) -> None:
    """Fifty concurrent connections of a hundred requests each all get the right answers."""
    store = store_at(sqlite_url)
    for i in range(0, 100, 2):
        store.add(f"user{i}@example.org", reason="userunknown")

    def one_client(n: int) -> list[bool]:
        with Client(server.port) as client:
            results = []
            for i in range(100):
                answer = client.ask(f"user{(i + n) % 100}@example.org")
                results.append(answer.startswith("REJECT") == ((i + n) % 100 % 2 == 0))
            return results

    with ThreadServer(make_settings(sqlite_url)) as server:
        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            outcomes = [ok for batch in pool.map(one_client, range(50)) for ok in batch]
        assert len(outcomes) == 5000 and all(outcomes)
        assert len(server.server.connections) <= 50


def test_malformed_request_closes_only_that_connection(sqlite_url: str, store_at: Any) -> None:
    """Complete requests before a malformed one are answered, then that connection is closed;
    the service keeps answering others and counts the error."""
    _suppress_hard(store_at(sqlite_url), "gone@example.org")
    with ThreadServer(make_settings(sqlite_url)) as server, server.client() as good:
        before = _errors()
        for bad in (b"hello there\n\n", b"request=smtpd_access_policy\n\xff\xfe=1\n\n", b"\n",
                    b"request=other\nrecipient=a@b.example\n\n"):
            with server.client() as client:
                client.send(request_bytes("gone@example.org") + bad + request_bytes("gone@example.org"))
                assert client.answers(1) == [REJECT_HARD]
                assert client.closed_by_server()
            assert good.ask("gone@example.org") == REJECT_HARD
        assert _errors() - before == 4


def test_oversized_request_is_refused(sqlite_url: str) -> None:
    """A request beyond max_request_bytes closes the connection without waiting for its end."""
    settings = make_settings(sqlite_url, max_request_bytes=2048)
    with ThreadServer(settings) as server, server.client() as client:
        client.send(b"request=smtpd_access_policy\n" + b"x=" + b"y" * 5000 + b"\n")
        assert client.closed_by_server()
        with server.client() as other:
            assert other.ask("a@example.org") == "DUNNO"


def test_unfinished_request_times_out(sqlite_url: str) -> None:
    """A request begun and never finished is dropped after request_timeout_seconds."""
    settings = make_settings(sqlite_url, request_timeout_seconds=0.5)
    with ThreadServer(settings) as server, server.client() as client:
        client.send(b"request=smtpd_access_policy\nrecipient=a@example.org\n")
        started = time.monotonic()
        assert client.closed_by_server()
        assert 0.4 < time.monotonic() - started < 5


def test_request_timeout_counts_from_each_request(sqlite_url: str) -> None:
    """A slow client is timed per request: a request that began after the previous one ended
    gets the whole request_timeout_seconds."""
    settings = make_settings(sqlite_url, request_timeout_seconds=5.0)
    first, second = request_bytes("a@example.org"), request_bytes("b@example.org")
    with ThreadServer(settings) as server, server.client() as client:
        client.send(first[:40])
        time.sleep(3.0)
        client.send(first[40:] + second[:40])
        assert client.answers(1) == ["DUNNO"]
        # 6 s or more after the first request began (slowness only adds), about 3 s after the
        # second did: a timer counted from the first request would have closed the connection
        time.sleep(3.0)
        client.send(second[40:])
        assert client.answers(1) == ["DUNNO"]


def test_idle_connection_stays_open_until_idle_timeout(sqlite_url: str) -> None:
    """An idle connection is kept (Postfix reuses it), and closed after idle_timeout_seconds."""
    settings = make_settings(sqlite_url, idle_timeout_seconds=6.0)
    with ThreadServer(settings) as server, server.client(timeout=30) as client:
        assert client.ask("a@example.org") == "DUNNO"
        time.sleep(1.5)
        assert client.ask("a@example.org") == "DUNNO"  # kept open while idle for less than the timeout
        started = time.monotonic()
        assert client.closed_by_server()  # the client's 30 s socket timeout is the generous deadline
        assert time.monotonic() - started >= 5.5  # not before the idle timeout (slowness only adds)


def test_changes_reach_memory_within_refresh(db_url: str, store_at: Any) -> None:
    """Entries added, removed and re-added while running are seen within a refresh or two."""
    store = store_at(db_url)
    _suppress_hard(store, "early@example.org")
    with ThreadServer(make_settings(db_url, refresh_seconds=0.2)) as server, server.client() as client:
        assert client.ask("early@example.org") == REJECT_HARD
        assert client.ask("late@example.org") == "DUNNO"
        _suppress_hard(store, "late@example.org")
        store.add("manual@example.org", reason="asked by the owner")
        assert wait_until(lambda: client.ask("late@example.org") == REJECT_HARD, 5)
        assert client.ask("manual@example.org") == "REJECT 5.1.1 recipient suppressed: asked by the owner"
        store.remove("early@example.org")
        assert wait_until(lambda: client.ask("early@example.org") == "DUNNO", 5)
        store.add("early@example.org", reason="again")
        assert wait_until(lambda: client.ask("early@example.org") == "REJECT 5.1.1 recipient suppressed: again", 5)


def test_expired_entries_stop_counting_at_once(sqlite_url: str, store_at: Any) -> None:
    """An entry whose expiry passes while it is held in memory is no longer refused."""
    store = store_at(sqlite_url)
    now = datetime.now(UTC)
    store.add("brief@example.org", reason="mailboxfull", expires_at=now + timedelta(seconds=2))
    store.add("old@example.org", reason="mailboxfull", expires_at=now - timedelta(days=1),
              now=now - timedelta(days=2))
    with ThreadServer(make_settings(sqlite_url, full_reload_seconds=3600)) as server, server.client() as client:
        assert client.ask("old@example.org") == "DUNNO"
        assert client.ask("brief@example.org") == "REJECT 5.1.1 recipient suppressed: mailboxfull"
        assert wait_until(lambda: client.ask("brief@example.org") == "DUNNO", 5)


def test_defer_for_soft_entries(sqlite_url: str, store_at: Any) -> None:
    """action_by_bounce_type soft = defer answers DEFER with the 4.x.x text."""
    store = store_at(sqlite_url)
    store.add("full@example.org", reason="mailboxfull", bounce_type="soft",
              expires_at=datetime.now(UTC) + timedelta(days=14))
    store.add("gone@example.org", reason="userunknown", bounce_type="hard")
    settings = make_settings(sqlite_url, action_by_bounce_type={"soft": "defer"})
    with ThreadServer(settings) as server, server.client() as client:
        assert client.ask("full@example.org") == "DEFER 4.2.1 recipient temporarily suppressed: mailboxfull"
        assert client.ask("gone@example.org") == REJECT_HARD


def test_scoped_entries_apply_to_their_scope_only(db_url: str, store_at: Any) -> None:
    """A scoped entry refuses only mail whose sender domain or client maps to that scope;
    a global entry refuses all mail."""
    store = store_at(db_url)
    store.add("scoped@example.org", reason="shop bounce", scope="shop.example")
    store.add("global@example.org", reason="complaint")
    settings = make_settings(db_url, sender_domain_scope=True, scope_by_client={"10.20.0.0/16": "shop.example"})
    with ThreadServer(settings) as server, server.client() as client:
        refused = "REJECT 5.1.1 recipient suppressed: shop bounce"
        assert client.ask("scoped@example.org", sender="orders@shop.example") == refused
        assert client.ask("scoped@example.org", sender="news@other.example") == "DUNNO"
        assert client.ask("scoped@example.org", sender="news@other.example", client_address="10.20.1.1") == refused
        assert client.ask("scoped@example.org", sender="") == "DUNNO"
        for sender in ("orders@shop.example", "news@other.example", ""):
            assert client.ask("global@example.org", sender=sender) == "REJECT 5.1.1 recipient suppressed: complaint"


def test_query_mode_answers_and_caches(db_url: str, store_at: Any) -> None:
    """mode = query answers from the store; a new entry shows once the cached answer expires."""
    store = store_at(db_url)
    _suppress_hard(store, "gone@example.org")
    settings = make_settings(db_url, mode="query", cache_ttl_seconds=0.5)
    with ThreadServer(settings) as server, server.client() as client:
        assert client.ask("gone@example.org") == REJECT_HARD
        assert client.ask("new@example.org") == "DUNNO"
        store.add("new@example.org", reason="manual")
        assert client.ask("new@example.org") == "DUNNO"  # cached for cache_ttl_seconds
        assert wait_until(lambda: client.ask("new@example.org") == "REJECT 5.1.1 recipient suppressed: manual", 3)


@pytest.mark.parametrize("mode", ["memory", "query"])
@pytest.mark.parametrize(("on_error", "expected"), [
    ("dunno", "DUNNO"), ("defer", "DEFER 4.3.0 suppression list temporarily unavailable")])
def test_unreachable_store_at_start_fails_open_or_closed(mode: str, on_error: str, expected: str) -> None:
    """With no database to read, the service still listens and answers as on_store_error says."""
    from tests.servers import free_port

    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
    settings = make_settings(url, mode=mode, on_store_error=on_error)
    with ThreadServer(settings) as server, server.client() as client:
        assert client.ask("anyone@example.org") == expected


@pytest.mark.parametrize("mode", ["memory", "query"])
@pytest.mark.parametrize("on_error", ["dunno", "defer"])
def test_store_lost_and_back(postgres: Any, store_at: Any, mode: str, on_error: str) -> None:
    """When the database goes away the answers follow on_store_error (after max_staleness in
    memory mode), and return to REJECT when it is back."""
    url = postgres.create()
    _suppress_hard(store_at(url), "gone@example.org")
    settings = make_settings(url, mode=mode, on_store_error=on_error, refresh_seconds=0.2,
                             max_staleness_seconds=1.0, cache_ttl_seconds=0)
    failed = "DUNNO" if on_error == "dunno" else "DEFER 4.3.0 suppression list temporarily unavailable"
    with ThreadServer(settings) as server, server.client() as client:
        assert client.ask("gone@example.org") == REJECT_HARD
        postgres.set_connections(url, False)
        try:
            assert wait_until(lambda: client.ask("gone@example.org") == failed, 10)
            assert client.ask("other@example.org") == failed
        finally:
            postgres.set_connections(url, True)
        assert wait_until(lambda: client.ask("gone@example.org") == REJECT_HARD, 40, 0.2)
        assert client.ask("other@example.org") == "DUNNO"


def test_memory_mode_rides_out_a_short_outage(postgres: Any, store_at: Any) -> None:
    """A database outage shorter than max_staleness_seconds changes no answer (the copy is used)."""
    url = postgres.create()
    _suppress_hard(store_at(url), "gone@example.org")
    settings = make_settings(url, on_store_error="defer", refresh_seconds=0.2, max_staleness_seconds=60)
    with ThreadServer(settings) as server, server.client() as client:
        postgres.set_connections(url, False)
        try:
            time.sleep(1.5)
            assert client.ask("gone@example.org") == REJECT_HARD
            assert client.ask("other@example.org") == "DUNNO"
        finally:
            postgres.set_connections(url, True)


def test_unix_socket(sqlite_url: str, store_at: Any, short_dir: Path) -> None:
    """The service listens on a UNIX socket with the configured mode, replaces a stale socket
    file, and removes its socket when it stops."""
    _suppress_hard(store_at(sqlite_url), "gone@example.org")
    path = short_dir / "policy.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # a socket file nobody listens on, as a killed process leaves it
    with ThreadServer(make_settings(sqlite_url, socket_mode=0o640), listen=f"unix:{path}") as server:
        assert oct(path.stat().st_mode & 0o777) == oct(0o640)
        with server.client() as client:
            assert client.ask("gone@example.org") == REJECT_HARD
    assert not path.exists()


def test_unix_socket_default_mode_and_group(sqlite_url: str, short_dir: Path) -> None:
    """By default the socket is 0660 (no access for others); socket_group gives it that group."""
    import grp

    group = next(g for g in grp.getgrall() if g.gr_gid != os.getegid())
    path = short_dir / "policy.sock"
    with ThreadServer(make_settings(sqlite_url, socket_group=group.gr_name), listen=f"unix:{path}"):
        info = path.stat()
        assert (oct(info.st_mode & 0o777), info.st_gid) == (oct(0o660), group.gr_gid)


def test_unix_socket_unknown_group_is_a_clear_error(sqlite_url: str, short_dir: Path) -> None:
    """A socket_group that does not exist stops the start with an error naming it."""
    server = ThreadServer(make_settings(sqlite_url, socket_group="no-such-group-bp"), listen=f"unix:{short_dir / 's'}")
    with pytest.raises(ListenError, match="'no-such-group-bp' is not a group on this system"), server:
        pass


def test_unix_socket_refuses_to_replace_other_files(sqlite_url: str, short_dir: Path) -> None:
    """A regular file where the socket should go is left alone and the start fails clearly."""
    path = short_dir / "policy.sock"
    path.write_text("precious")
    server = ThreadServer(make_settings(sqlite_url), listen=f"unix:{path}")
    with pytest.raises(ListenError, match="exists and is not a socket"), server:
        pass
    assert path.read_text() == "precious"


def test_refresh_through_many_changes_reloads(sqlite_url: str, store_at: Any, monkeypatch: Any) -> None:
    """A burst of changes larger than the incremental limit is taken in by a full reload."""
    from processor.policyd import _lookup

    monkeypatch.setattr(_lookup, "FULL_RELOAD_AFTER", 50)
    monkeypatch.setattr(_lookup, "EVENT_PAGE", 20)
    store = store_at(sqlite_url)
    with ThreadServer(make_settings(sqlite_url, refresh_seconds=0.2)) as server, server.client() as client:
        for i in range(120):
            store.add(f"bulk{i}@example.org", reason="import")
        assert wait_until(lambda: client.ask("bulk119@example.org").startswith("REJECT"), 5)
        assert all(client.ask(f"bulk{i}@example.org").startswith("REJECT") for i in range(120))
        assert server.server.lookup.size == 120


def test_soft_bounce_threshold_reaches_the_service(sqlite_url: str, store_at: Any) -> None:
    """Soft bounces suppress only at the policy threshold, and the service follows the store."""
    store = store_at(sqlite_url)
    settings = make_settings(sqlite_url, refresh_seconds=0.2)
    with ThreadServer(settings) as server, server.client() as client:
        for n in range(3):
            data = f"soft {n} {os.urandom(4).hex()}".encode()
            store.record_message(MessageRef.for_bytes(data, "INBOX"),
                                 [verdict("full@example.org", BounceType.SOFT, reason="mailboxfull", status="4.2.2")])
            if n < 2:  # below the threshold: a refresh that read the bounce still answers DUNNO
                refreshes_pass(server.server.lookup)
                assert client.ask("full@example.org") == "DUNNO"
        assert wait_until(lambda: client.ask("full@example.org") == "REJECT 5.1.1 recipient suppressed: mailboxfull",
                          30)


@pytest.mark.parametrize(("overlap", "seen"), [(30.0, True), (0.0, False)])
def test_postgres_commit_out_of_id_order(postgres: Any, store_at: Any, overlap: float, seen: bool) -> None:
    """On PostgreSQL a transaction can commit after one holding a higher event id; events are
    re-read refresh_overlap_seconds back so that its change is still seen (with no overlap it
    is missed until the next full reload: the setting matters)."""
    import sqlalchemy as sa

    from processor.store import models
    from processor.store._db import change_values

    url = postgres.create()
    store = store_at(url)
    settings = make_settings(url, refresh_seconds=0.2, refresh_overlap_seconds=overlap)
    with ThreadServer(settings) as server, server.client() as client:
        now = datetime.now(UTC)
        with store.engine.connect() as slow:
            transaction = slow.begin()
            event_id = slow.execute(
                sa.insert(models.event).values(**change_values(
                    "manual_add", "add", "slow@example.org", scope="global", now=now, reason="slow",
                    bounce_type="", expires_at=None, explanation="", actor="test"))
                .returning(models.event.c.id)).scalar_one()
            slow.execute(sa.insert(models.suppression).values(
                address="slow@example.org", domain="example.org", scope="global", source="manual", reason="slow",
                bounce_type="", first_seen=now, last_seen=now, expires_at=None, event_count=1,
                last_event_id=event_id, note=""))
            store.add("fast@example.org", reason="fast")  # a higher event id, committed first
            assert wait_until(lambda: client.ask("fast@example.org") == "REJECT 5.1.1 recipient suppressed: fast", 5)
            refreshes_pass(server.server.lookup, 3)  # refreshes pass the fast event's id
            transaction.commit()
        refreshes_pass(server.server.lookup, 3)  # and read what the slow one committed, if they look
        assert (client.ask("slow@example.org") == "REJECT 5.1.1 recipient suppressed: slow") is seen


def test_internal_error_answers_like_an_unreachable_store(sqlite_url: str, monkeypatch: Any) -> None:
    """A failure inside the service answers as on_store_error says and the connection stays usable."""
    settings = make_settings(sqlite_url, on_store_error="defer")
    with ThreadServer(settings) as server, server.client() as client:
        calls: list[str] = []
        real_find = server.server.lookup.find

        def broken_find(address: str, scope: str, now: float) -> Any:
            calls.append(address)
            if address == "boom@example.org":
                raise RuntimeError("a bug")
            return real_find(address, scope, now)

        monkeypatch.setattr(server.server.lookup, "find", broken_find)
        assert client.ask("boom@example.org") == "DEFER 4.3.0 suppression list temporarily unavailable"
        assert client.ask("fine@example.org") == "DUNNO"
        assert calls == ["boom@example.org", "fine@example.org"]
