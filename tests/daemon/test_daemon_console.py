"""What the console's mailboxes page shows, made by ``bounce-processor run`` as a real process
against Dovecot: each pass's backlog and the daemon holding the lease, and a quarantined message
processed again on an operator's request once the rule that broke it is fixed."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from processor.api import create_app
from processor.store import Store, open_store
from processor.store.passes import mailbox_pass
from processor.store.quarantine import quarantine_action
from tests.console.helpers import OPERATOR, form_token, make_settings, sign_in, soup, squash
from tests.daemon.helpers import DaemonProcess, bounce_for, bounces, imap_box, run_once, write_config
from tests.servers import Dovecot

pytestmark = pytest.mark.slow

OPERATOR_RULE = """rules:
  - id: operator-unknown-user
    description: Unknown users, suppressed for a set time.
    match:
      kind: failure
      status: '5.1.1'
    result:
      reason: userunknown
      bounce_type: hard
      ttl: 30d
"""

BROKEN_RELEASE = """# A release with a parser bug: parsing a message that names a gone- address raises. The test's
# daemon loads this through PYTHONPATH (sitecustomize runs in every process it starts, the parse
# pool's included); the next run without it is the release with the bug fixed.
import processor.parse as _parse

_parse_as_released = _parse.Parser.parse


def _parse_with_bug(self, data):
    if b"gone-" in data:
        raise RuntimeError("a parser bug in this release")
    return _parse_as_released(self, data)


_parse.Parser.parse = _parse_with_bug
"""


def config(workdir: Path, url: str, box: dict[str, Any], **sections: dict[str, Any]) -> Path:
    return write_config(workdir / "config.toml", {
        "database": {"url": url},
        "daemon": {"housekeeping_interval_seconds": 1.0, "shutdown_seconds": 8.0},
        "api": {"enabled": False},
        "mailboxes.bounces": box,
        **sections,
    })


def pass_row(url: str, mailbox: str = "bounces/INBOX") -> Any:
    """The mailbox's last pass as the daemon recorded it (None before the daemon made its database)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("mailbox_pass"):
                return None
            return conn.execute(sa.select(mailbox_pass).where(mailbox_pass.c.mailbox == mailbox)).first()
    finally:
        engine.dispose()


@contextmanager
def console(url: str) -> Iterator[tuple[TestClient, Store]]:
    """The console over the daemon's database, signed in as an operator."""
    store = open_store(make_settings(url))
    try:
        with TestClient(create_app(store.settings, store)) as client:
            sign_in(client, OPERATOR)
            yield client, store
    finally:
        store.close()


def mailbox_cells(client: TestClient) -> dict[str, str]:
    row = soup(client.get("/ui/mailboxes").text).select_one("#mailboxes tr[data-mailbox='bounces/INBOX']")
    assert row is not None
    return {name: squash(row.select_one(f".{name}").get_text()) for name in ("backlog", "holder")}


def test_each_pass_records_its_backlog_and_the_daemon_holding_the_lease(dovecot: Dovecot, workdir: Path) -> None:
    """After a complete pass the page shows backlog 0 and the running daemon (host:pid) as holder;
    after a SIGTERM mid-pass, the backlog is exactly what is still in the folder, and a stopped
    daemon no longer names itself the holder."""
    user = dovecot.new_user()
    dovecot.append_many(user, bounces(30, prefix=f"p{os.urandom(2).hex()}-"))
    url = f"sqlite:///{workdir / 'bounces.db'}"
    cfg = config(workdir, url, imap_box(dovecot, user, batch_size=10, poll_interval_seconds=120))
    daemon = DaemonProcess(cfg)
    holder = f"{socket.gethostname()}:{daemon.proc.pid}"
    try:
        daemon.wait_for(lambda d: (row := pass_row(url)) is not None and row.handled == 30, 60,
                        "the first pass to be recorded")
        row = pass_row(url)
        assert (row.backlog, row.holder, row.last_error) == (0, holder, "")
        assert dovecot.uids(user) == []
        with console(url) as (client, _):
            assert mailbox_cells(client) == {"backlog": "0", "holder": holder}
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(15) == 0
    finally:
        daemon.close()
    assert pass_row(url).holder == ""

    dovecot.append_many(user, bounces(800, prefix=f"q{os.urandom(2).hex()}-"))
    cfg = config(workdir, url, imap_box(dovecot, user, batch_size=20, poll_interval_seconds=120))
    daemon = DaemonProcess(cfg)
    try:
        daemon.wait_for(lambda d: sum(1 for e in d.events("message.processed")) >= 40, 60, "processing to start")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(15) == 0
    finally:
        daemon.close()
    left = len(dovecot.uids(user))
    row = pass_row(url)
    assert 0 < left < 800, "the stop came after the pass ended: nothing left to count"
    assert row.backlog == left and row.handled == 800 - left and row.holder == ""
    with console(url) as (client, _):
        assert mailbox_cells(client) == {"backlog": str(left), "holder": "—"}


def test_quarantined_message_is_processed_again_on_request_once_its_rule_is_fixed(
    dovecot: Dovecot, workdir: Path
) -> None:
    """A release whose parser raises on the bounce quarantines it. Asked through the console while
    that release still runs, it fails again and stays (new error); once the fixed release runs and
    it is asked again, the daemon processes it through the normal pipeline: the address is
    suppressed for the operator rule's TTL and the message leaves the quarantine."""
    user = dovecot.new_user()
    rcpt = f"gone-{os.urandom(3).hex()}@local.example.net"
    dovecot.append(user, bounce_for(rcpt))
    rules = workdir / "operator-rules"
    rules.mkdir()
    (rules / "10-operator.yaml").write_text(OPERATOR_RULE)
    broken = workdir / "broken-release"
    broken.mkdir()
    (broken / "sitecustomize.py").write_text(BROKEN_RELEASE)
    with_bug = {"PYTHONPATH": os.pathsep.join(filter(None, [str(broken), os.environ.get("PYTHONPATH", "")]))}
    url = f"sqlite:///{workdir / 'bounces.db'}"
    cfg = config(workdir, url, imap_box(dovecot, user), rules={"dirs": [str(rules)]})

    first = run_once(cfg, env=with_bug)
    assert first.proc.returncode == 0, first.text()[-3000:]
    assert first.events("message.quarantined") and dovecot.uids(user) == []
    assert len(dovecot.uids(user, "Quarantine")) == 1

    def ask(note: str) -> None:
        with console(url) as (client, _):
            page = soup(client.get("/ui/mailboxes").text)
            (row,) = page.select("#quarantine tr.quarantined")
            assert "RuntimeError: a parser bug in this release" in row.select_one(".diagnostic").get_text()
            answer = client.post("/ui/quarantine/reprocess", data={
                "id": str(row["data-id"]), "note": note, "csrf_token": form_token(str(page))}, follow_redirects=False)
            assert answer.status_code == 303, answer.text

    ask("try again")
    second = run_once(cfg, env=with_bug)
    assert second.events("quarantine.reprocess_failed") and not second.events("quarantine.reprocessed")
    with console(url) as (client, store):
        assert store.is_suppressed(rcpt) is None
        page = soup(client.get("/ui/mailboxes").text)
        assert squash(page.select_one("#quarantine .status .badge").get_text()) == "quarantined"

    ask("fixed release installed")
    third = run_once(cfg)
    (done,) = third.events("quarantine.reprocessed")
    assert done["mailbox"] == "bounces/INBOX" and done["duplicate"] is False and done["events"] == 1
    (processed,) = third.events("message.processed")
    assert processed["recipients"] == [rcpt] and processed["rule_ids"] == ["operator-unknown-user"]
    daemon_actor = f"daemon:{socket.gethostname()}:{third.proc.pid}"
    with console(url) as (client, store):
        entry = store.is_suppressed(rcpt)
        assert entry is not None and entry.reason == "userunknown" and entry.expires_at is not None
        assert 29 * 86400 < (entry.expires_at - entry.first_seen).total_seconds() <= 30 * 86400 + 60
        (event,) = [e for e in store.history(rcpt) if e.kind == "failure"]
        assert (event.mailbox, event.uid, event.rule_id) == ("bounces/INBOX", 1, "operator-unknown-user")
        page = soup(client.get("/ui/mailboxes").text)
        assert "Nothing quarantined" in page.select_one("#quarantine").get_text()
        with store.engine.connect() as conn:
            t = quarantine_action.c
            steps = [tuple(r) for r in conn.execute(sa.select(t.action, t.actor, t.note).order_by(t.id))]
    assert steps[0] == ("requested", "ui:operator", "try again")
    assert steps[1][:1] == ("failed",) and steps[2] == ("requested", "ui:operator", "fixed release installed")
    assert steps[3] == ("processed", daemon_actor, "")
    # the message stays in the IMAP quarantine folder (never deleted); nothing is asked again
    fourth = run_once(cfg)
    assert not fourth.events("quarantine.reprocessed") and len(dovecot.uids(user, "Quarantine")) == 1


def test_two_daemons_on_postgresql_each_named_holder_of_the_mailboxes_it_works(
    dovecot: Dovecot, workdir: Path, pg_url: str
) -> None:
    """Two daemons share four mailboxes: each mailbox's recorded holder is the daemon whose lease it
    is (by its log); a killed daemon's mailboxes name the survivor once it took them; a stopped
    daemon names itself holder of nothing."""
    users = [dovecot.new_user() for _ in range(4)]
    for n, user in enumerate(users):
        dovecot.append_many(user, bounces(5, prefix=f"h{n}-{os.urandom(2).hex()}-"))
    values: dict[str, dict[str, Any]] = {
        "database": {"url": pg_url},
        "daemon": {"housekeeping_interval_seconds": 1.0, "lease_seconds": 6.0},
        "api": {"enabled": False},
    }
    for n, user in enumerate(users):
        values[f"mailboxes.box{n}"] = imap_box(dovecot, user, poll_interval_seconds=2.0)
    cfg = write_config(workdir / "config.toml", values)
    names = [f"box{n}/INBOX" for n in range(4)]
    daemons = [DaemonProcess(cfg), DaemonProcess(cfg)]
    host = socket.gethostname()

    def lease_holder(name: str, among: list[DaemonProcess]) -> str:
        """Who holds ``name`` by the daemons' own logs ("" if none says so)."""
        for daemon in among:
            moves = [e["event"] for e in daemon.lines()
                     if e.get("mailbox") == name and e.get("event") in ("lease.taken", "lease.handed_back")]
            if moves and moves[-1] == "lease.taken":
                return f"{host}:{daemon.proc.pid}"
        return ""

    def recorded_as_logged(among: list[DaemonProcess]) -> bool:
        return all((row := pass_row(pg_url, name)) is not None and row.holder != ""
                   and row.holder == lease_holder(name, among) for name in names)

    def shared() -> bool:
        """Each daemon holds two mailboxes by its log (the first may take all four before the
        second joins, then hands two back: processor.daemon.sharing)."""
        return sorted(Counter(lease_holder(name, daemons) for name in names).values()) == [2, 2]

    try:
        deadline = time.monotonic() + 60
        while not (shared() and recorded_as_logged(daemons)) or any(dovecot.uids(u) for u in users):
            assert time.monotonic() < deadline, [(n, lease_holder(n, daemons), pass_row(pg_url, n)) for n in names]
            time.sleep(0.3)
        holders = Counter(pass_row(pg_url, name).holder for name in names)
        assert holders == {f"{host}:{d.proc.pid}": 2 for d in daemons}
        victim, survivor = daemons
        victim.proc.kill()
        victim.proc.wait(10)
        deadline = time.monotonic() + 40
        while not all(pass_row(pg_url, name).holder == f"{host}:{survivor.proc.pid}" for name in names):
            assert time.monotonic() < deadline, [(n, pass_row(pg_url, n)) for n in names]
            time.sleep(0.3)
        survivor.signal(signal.SIGTERM)
        assert survivor.wait(15) == 0
    finally:
        for daemon in daemons:
            daemon.close()
    assert [pass_row(pg_url, name).holder for name in names] == ["", "", "", ""]
