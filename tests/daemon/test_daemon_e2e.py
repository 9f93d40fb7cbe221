"""``bounce-processor run`` as a real process against real servers: Postfix bouncing into Dovecot,
SIGKILL and restart, Dovecot restarted mid-run, an unreachable database, two daemons on
PostgreSQL, signals, logs without secrets, the embedded default and ``config check``."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from processor.store import models as m
from tests.conftest import PROJECT, SAMPLES, require
from tests.daemon.helpers import (
    DaemonProcess,
    TcpProxy,
    bounce_for,
    bounces,
    cli,
    imap_box,
    run_once,
    write_config,
)
from tests.private_postgres import PrivatePostgres, private_postgres_missing
from tests.servers import Dovecot, MailUser, Postfix, make_message

pytestmark = pytest.mark.slow


def config(workdir: Path, url: str, mailboxes: dict[str, dict[str, Any]], *, daemon: dict[str, Any] | None = None,
           name: str = "config.toml", **sections: dict[str, Any]) -> Path:
    values: dict[str, dict[str, Any]] = {
        "database": {"url": url},
        "daemon": {"housekeeping_interval_seconds": 1.0, "lease_seconds": 6.0, **(daemon or {})},
        "api": {"enabled": False},  # several daemons run at once here: no HTTP API on a fixed port
        **sections,
    }
    for box_name, box in mailboxes.items():
        values[f"mailboxes.{box_name}"] = box
    return write_config(workdir / name, values)


def sqlite(workdir: Path) -> str:
    return f"sqlite:///{workdir / 'bounces.db'}"


def counts(url: str) -> dict[str, int]:
    """Events from reports, ledger rows, and distinct (mailbox, uid) in the ledger."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            def one(query: Any) -> int:
                return int(conn.execute(query).scalar_one())

            pm = m.processed_message
            return {
                "events": one(sa.select(sa.func.count()).select_from(m.event)
                              .where(m.event.c.message_ref.is_not(None))),
                "ledger": one(sa.select(sa.func.count()).select_from(pm)),
                "distinct": one(sa.select(sa.func.count()).select_from(
                    sa.select(pm.c.mailbox, pm.c.uidvalidity, pm.c.uid).distinct().subquery())),
                "suppressed": one(sa.select(sa.func.count()).select_from(m.suppression)),
            }
    finally:
        engine.dispose()


def expected_sample_events() -> int:
    """How many events the samples report: from their rows in samples/expected.yaml and
    samples/mta/expected.yaml (which the table tests pin exactly), and, for the known parser
    misses of samples/generated/PENDING.md (whose rows are not what comes out today), what the
    parser gives today."""
    from processor.parse import parse
    from tests.test_samples import PENDING_ROWS

    rows = [*yaml.safe_load((SAMPLES / "expected.yaml").read_text(encoding="utf-8")),
            *yaml.safe_load((SAMPLES / "mta" / "expected.yaml").read_text(encoding="utf-8"))]
    pending = [row["file"] for row in PENDING_ROWS]
    assert sorted([row["file"] for row in rows] + pending) == sorted(p.relative_to(SAMPLES).as_posix()
                                                                     for p in SAMPLES.rglob("*.eml"))
    return sum(len(row["events"]) for row in rows) + sum(len(parse((SAMPLES / f).read_bytes())) for f in pending)


def processed_count(daemon: DaemonProcess) -> int:
    return sum(1 for line in daemon.lines() if line.get("event") == "message.processed")


# --------------------------------------------------------------------------- end to end


def test_postfix_bounce_is_suppressed_through_idle(
    postfix: Postfix, dovecot: Dovecot, bounce_mailbox: MailUser, workdir: Path
) -> None:
    """Postfix bounces mail for an unknown user; the genuine DSN lands in Dovecot; the daemon,
    in IDLE, classifies it hard and suppresses the address, which `suppress check` reports."""
    cfg = config(workdir, sqlite(workdir), {"bounces": imap_box(dovecot, bounce_mailbox, poll_interval_seconds=120)})
    daemon = DaemonProcess(cfg, log_level="DEBUG")
    try:
        daemon.wait_for(lambda d: bool(d.events("imap.idle")), 30, "the daemon to enter IDLE")
        rcpt = f"nobody-{os.urandom(3).hex()}@mail.example.com"
        refused = postfix.submit(bounce_mailbox.name, rcpt,
                                 make_message(mail_from=bounce_mailbox.name, to=rcpt, subject="newsletter"))
        assert refused == {}
        daemon.wait_for(lambda d: any(rcpt in e.get("recipients", []) for e in d.events("message.processed")),
                        60, "the bounce to be processed")
        line = next(e for e in daemon.events("message.processed") if rcpt in e["recipients"])
        assert line["bounce_types"] == ["hard"] and line["decisions"] == ["suppress"]
        assert line["mailbox"] == "bounces/INBOX" and line["uid"] == 1 and line["message_id"]
        check = cli(cfg, "suppress", "check", rcpt)
        assert check.returncode == 1, check.stdout + check.stderr
        assert check.stdout.startswith("suppressed") and rcpt in check.stdout and "hard" in check.stdout
        assert dovecot.uids(bounce_mailbox) == [] and len(dovecot.uids(bounce_mailbox, "Processed")) == 1
        started = time.monotonic()
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(15) == 0
        assert time.monotonic() - started < 10
    finally:
        daemon.close()


def test_sigkill_mid_batch_then_restart_processes_each_message_exactly_once(dovecot: Dovecot, workdir: Path) -> None:
    """Killed with SIGKILL several times in the middle of its batches and restarted, the daemon
    ends with exactly one event per appended message, and every message moved."""
    user = dovecot.new_user()
    total = 1200
    dovecot.append_many(user, bounces(total, prefix=f"k{os.urandom(2).hex()}-"))
    url = sqlite(workdir)
    cfg = config(workdir, url, {"bounces": imap_box(dovecot, user, batch_size=15)})
    kills = 0
    for threshold in (30, 200, 500):
        daemon = DaemonProcess(cfg, "--once")
        try:
            daemon.wait_for(lambda d, n=threshold: processed_count(d) >= n, 60, f"{threshold} messages processed")  # type: ignore[misc]
            if daemon.proc.poll() is None:
                daemon.proc.kill()
                kills += 1
            daemon.proc.wait(10)
        finally:
            daemon.close()
    assert kills >= 2, "the runs finished before they could be killed"
    assert dovecot.uids(user), "nothing left in INBOX: the kills came too late to test anything"
    final = run_once(cfg)
    assert final.proc.returncode == 0, final.text()[-3000:]
    # each message is a distinct recipient's hard bounce: one suppression each
    assert counts(url) == {"events": total, "ledger": total, "distinct": total, "suppressed": total}
    assert dovecot.uids(user) == [] and len(dovecot.uids(user, "Processed")) == total
    for line in final.text().splitlines():  # --log-format json: every line is one JSON object
        assert isinstance(json.loads(line), dict)


def test_dovecot_restarted_mid_run_is_reconnected_and_the_run_completes(dovecot: Dovecot, workdir: Path) -> None:
    """Dovecot stopped and started again in the middle of `run --once`: the daemon reconnects with
    backoff, finishes the mailbox, and counts every message once."""
    user = dovecot.new_user()
    total = 1500
    sent = bounces(total, prefix=f"r{os.urandom(2).hex()}-")
    dovecot.append_many(user, sent)
    url = sqlite(workdir)
    # one message per batch: several round trips each, so that the run is still going when Dovecot stops.
    # run --once retries six times; the backoff spans about a minute, because a Dovecot whose imap
    # processes were killed mid-command was once seen (full suite, loaded machine) leaving SELECT
    # unanswered for over 30 s after it came back, which the old 0.2-2 s backoff gave up on.
    cfg = config(workdir, url, {"bounces": imap_box(dovecot, user, batch_size=1, backoff_initial_seconds=2.0,
                                                    backoff_max_seconds=20.0)})
    daemon = DaemonProcess(cfg, "--once")
    try:
        daemon.wait_for(lambda d: processed_count(d) >= 5, 60, "the run to get going")
        dovecot.stop()
        assert daemon.proc.poll() is None, "the run finished before Dovecot was stopped"
        time.sleep(0.5)
        dovecot.start()
        assert daemon.wait(120) == 0, daemon.text()[-3000:]
    finally:
        daemon.close()
    noticed = [e for e in daemon.lines() if e.get("event") not in ("message.processed", "store.retry")]
    assert daemon.events("mailbox.source_error"), f"the restart was not noticed: {noticed}"
    assert counts(url)["events"] == total and counts(url)["ledger"] == total
    assert dovecot.uids(user) == []
    # Every message reached Processed. Dovecot's MOVE is a copy and then an expunge: a server
    # killed between the two leaves the message in both folders, and the daemon, which finds it
    # recorded in its ledger but still in INBOX, moves it again (counted once: the ledger above).
    # With one message per batch at most one message was in flight when the server died.
    moved = [data for _, data in dovecot.messages(user, "Processed")]
    assert {data.replace(b"\r\n", b"\n") for data in moved} == {data.replace(b"\r\n", b"\n") for data in sent}
    assert total <= len(moved) <= total + 1


def test_unreachable_database_at_start_touches_no_message(dovecot: Dovecot, workdir: Path) -> None:
    """`run --once` with an unreachable database exits 1 with a clear error; every message stays
    in INBOX, unread, and no folder is created."""
    user = dovecot.new_user()
    dovecot.append_many(user, bounces(5))
    closed = TcpProxy(("127.0.0.1", 9))  # never brought up: nothing listens on its port
    url = f"postgresql+psycopg://postgres:Db-Pa55-91xq@127.0.0.1:{closed.port}/nowhere"
    cfg = config(workdir, url, {"bounces": imap_box(dovecot, user)})
    result = run_once(cfg)
    assert result.proc.returncode == 1
    assert "cannot open the database" in result.text() and "Db-Pa55-91xq" not in result.text()
    assert dovecot.uids(user) == [1, 2, 3, 4, 5]
    assert all("\\Seen" not in f for f in dovecot.flags(user).values())
    assert "Processed" not in dovecot.mailboxes(user)


def test_database_lost_mid_run_leaves_messages_in_place_until_it_returns(
    dovecot: Dovecot, workdir: Path, pg_url: str
) -> None:
    """While PostgreSQL is unreachable, arriving bounces stay in INBOX unread and uncounted; when
    it comes back they are processed, each once."""
    user = dovecot.new_user()
    proxy = TcpProxy(("127.0.0.1", 5432))
    proxy.up()
    via_proxy = sa.make_url(pg_url).set(port=proxy.port).render_as_string(hide_password=False)
    cfg = config(workdir, via_proxy, {"bounces": imap_box(dovecot, user, poll_interval_seconds=2.0)})
    daemon = DaemonProcess(cfg)
    try:
        dovecot.append_many(user, bounces(10, prefix="before"))
        daemon.wait_for(lambda d: processed_count(d) >= 10, 30, "the first ten")
        proxy.down()
        dovecot.append_many(user, bounces(10, prefix="during"))
        daemon.wait_for(lambda d: bool(d.events("mailbox.store_error")), 30, "the daemon to notice")
        time.sleep(2.0)
        assert len(dovecot.uids(user)) == 10
        assert all("\\Seen" not in f for f in dovecot.flags(user).values())
        assert counts(pg_url)["events"] == 10
        proxy.up()
        daemon.wait_for(lambda d: processed_count(d) >= 20, 60, "the rest after the database returned")
        deadline = time.monotonic() + 20
        while dovecot.uids(user) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert dovecot.uids(user) == []
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(15) == 0
    finally:
        daemon.close()
        proxy.down()
    assert counts(pg_url) == {"events": 20, "ledger": 20, "distinct": 20, "suppressed": 20}


def test_two_daemons_on_postgresql_process_each_message_once_and_take_over(
    dovecot: Dovecot, workdir: Path, pg_url: str
) -> None:
    """Two daemons against the same mailboxes: every message is handled by one of them and counted
    once, and when one is killed the other takes its mailboxes within a lease period."""
    users = [dovecot.new_user() for _ in range(3)]
    per = 150
    for n, user in enumerate(users):
        dovecot.append_many(user, bounces(per, prefix=f"t{n}-{os.urandom(2).hex()}-"))
    boxes = {f"box{n}": imap_box(dovecot, user, poll_interval_seconds=3.0, batch_size=10)
             for n, user in enumerate(users)}
    cfg = config(workdir, pg_url, boxes, daemon={"lease_seconds": 6.0})
    first, second = DaemonProcess(cfg), DaemonProcess(cfg)
    daemons = [first, second]
    try:
        deadline = time.monotonic() + 90
        while any(dovecot.uids(u) for u in users):
            assert time.monotonic() < deadline, "the mailboxes were not emptied"
            time.sleep(0.3)
        result = counts(pg_url)
        assert result["events"] == result["ledger"] == result["distinct"] == 3 * per
        # each message was handled by exactly one daemon (a mailbox may move between them when
        # the second one joins and the first hands back its surplus: processor.daemon.sharing)
        handled_by: dict[tuple[str, int], set[int]] = {}
        for index, daemon in enumerate(daemons):
            for line in daemon.events("message.processed"):
                handled_by.setdefault((line["mailbox"], line["uid"]), set()).add(index)
        assert {mailbox for mailbox, _ in handled_by} == {"box0/INBOX", "box1/INBOX", "box2/INBOX"}
        assert len(handled_by) == 3 * per and all(len(who) == 1 for who in handled_by.values())
        # fail-over: kill the holder of box0 now; the other takes it within a lease period
        def holds_box0(daemon: DaemonProcess) -> bool:
            moves = [e["event"] for e in daemon.lines()
                     if e.get("mailbox") == "box0/INBOX" and e.get("event") in ("lease.taken", "lease.handed_back")]
            return bool(moves) and moves[-1] == "lease.taken"

        holder = next(i for i, d in enumerate(daemons) if holds_box0(d))
        survivor = daemons[1 - holder]
        daemons[holder].proc.kill()
        daemons[holder].proc.wait(10)
        dovecot.append_many(users[0], bounces(20, prefix=f"after-{os.urandom(2).hex()}-"))
        # the event, with a generous deadline (five lease periods), not a wall-clock window
        survivor.wait_for(lambda d: any(e.get("mailbox") == "box0/INBOX" for e in d.events("lease.taken")),
                          30, "the survivor to take box0")
        deadline = time.monotonic() + 30
        while dovecot.uids(users[0]):
            assert time.monotonic() < deadline, "box0 was not emptied after the take-over"
            time.sleep(0.2)
        survivor.signal(signal.SIGTERM)
        assert survivor.wait(15) == 0
    finally:
        for daemon in daemons:
            daemon.close()
    result = counts(pg_url)
    assert result["events"] == result["ledger"] == result["distinct"] == 3 * per + 20


# --------------------------------------------------------------------------- life cycle


def test_sigterm_mid_batch_exits_zero_quickly_and_loses_nothing(dovecot: Dovecot, workdir: Path) -> None:
    """SIGTERM while a large mailbox is being worked: exit 0 within 10 s; a later run finishes the
    mailbox with every message counted once."""
    user = dovecot.new_user()
    total = 1000
    dovecot.append_many(user, bounces(total, prefix=f"s{os.urandom(2).hex()}-"))
    url = sqlite(workdir)
    cfg = config(workdir, url, {"bounces": imap_box(dovecot, user, batch_size=20)})
    daemon = DaemonProcess(cfg)
    try:
        daemon.wait_for(lambda d: processed_count(d) >= 20, 60, "processing to start")
        started = time.monotonic()
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(15) == 0
        assert time.monotonic() - started < 10
        assert daemon.events("daemon.stopped")
    finally:
        daemon.close()
    final = run_once(cfg)
    assert final.proc.returncode == 0
    assert counts(url)["events"] == total and dovecot.uids(user) == []


def test_sighup_and_changed_rule_files_reload_the_rules(dovecot: Dovecot, workdir: Path) -> None:
    """SIGHUP reloads the rules; so does a change to a rule file (housekeeping); an invalid file
    keeps the old rules."""
    rules = workdir / "rules"
    rules.mkdir()
    rule = rules / "local.yaml"
    rule.write_text("rules:\n  - id: local-test\n    description: A test rule that matches nothing.\n"
                    "    match:\n      recipient_domain: never.example\n"
                    "    result:\n      reason: userunknown\n      bounce_type: hard\n")
    user = dovecot.new_user()
    cfg = config(workdir, sqlite(workdir), {"bounces": imap_box(dovecot, user)}, **{"rules": {"dirs": [str(rules)]}})
    daemon = DaemonProcess(cfg)
    try:
        daemon.wait_for(lambda d: bool(d.events("scheduler.job")), 30, "the scheduler to start")
        jobs = {e["id"] for e in daemon.events("scheduler.job")}
        assert jobs == {"mailbox:bounces/INBOX", "purge", "housekeeping", "quarantine"}
        daemon.signal(signal.SIGHUP)
        daemon.wait_for(lambda d: bool(d.events("rules_reloaded")), 15, "the SIGHUP reload")
        rule.write_text(rule.read_text().replace("never.example", "nowhere.example"))
        daemon.wait_for(lambda d: bool(d.events("daemon.rules_changed")), 15, "the file-change reload")
        daemon.wait_for(lambda d: len(d.events("rules_reloaded")) >= 2, 15, "the second reload")
        rule.write_text("rules: [this is not a rule\n")
        daemon.wait_for(lambda d: bool(d.events("rules_reload_failed")), 15, "the failed reload")
        assert daemon.proc.poll() is None
        daemon.signal(signal.SIGINT)
        assert daemon.wait(15) == 0
    finally:
        daemon.close()


def test_no_secret_ever_appears_in_logs_or_errors(dovecot: Dovecot, workdir: Path) -> None:
    """Passwords of a working mailbox, a refused one and one from a file never reach the output,
    in JSON or console format, even at DEBUG, nor `config check`."""
    good, refused, filed = dovecot.new_user(), dovecot.new_user(), dovecot.new_user()
    dovecot.append_many(good, bounces(3))
    secret_file = workdir / "imap-password"
    secret_file.write_text(filed.password + "\n")
    wrong = "Wr0ng-" + os.urandom(6).hex()
    boxes = {
        "good": imap_box(dovecot, good),
        "refused": imap_box(dovecot, refused, password=wrong, backoff_initial_seconds=0.05),
        "filed": {k: v for k, v in imap_box(dovecot, filed).items() if k != "password"} | {
            "password_file": str(secret_file)},
    }
    env_secret = "Env-" + os.urandom(6).hex()
    cfg = config(workdir, sqlite(workdir), boxes)
    secrets = [good.password, wrong, filed.password, env_secret]
    outputs = []
    for fmt in ("json", "console"):
        daemon = DaemonProcess(cfg, "--once", log_level="DEBUG", log_format=fmt,
                               env={"BOUNCE_VERP__SECRETS": json.dumps([env_secret + "-0123456789abcdef"])})
        assert daemon.wait(60) == 1  # the refused mailbox fails the run
        daemon.close()
        outputs.append(daemon.text())
    checked = cli(cfg, "config", "check")
    assert checked.returncode == 0, checked.stderr
    outputs.append(checked.stdout + checked.stderr)
    for text in outputs:
        for secret in secrets:
            assert secret not in text
    assert refused.name in outputs[0] and "refused" in outputs[0]
    assert "message.processed" in outputs[0]


def test_embedded_default_processes_the_samples_read_only(workdir: Path) -> None:
    """With no configuration, `python -m processor run --once` reads samples/ into the default
    SQLite file without changing a sample; a second run counts nothing again."""
    def digest() -> str:
        h = hashlib.sha256()
        for path in sorted(SAMPLES.rglob("*")):
            if path.is_file():
                h.update(str(path).encode() + path.read_bytes())
        return h.hexdigest()

    before = digest()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOUNCE_")}
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-m", "processor", "--log-format", "json", "run", "--once"],
                              cwd=workdir, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    emls = len(list(SAMPLES.rglob("*.eml")))
    result = counts(f"sqlite:///{workdir / 'bounce-processor.db'}")
    assert (result["ledger"], result["events"]) == (emls, expected_sample_events())
    assert digest() == before
    last = [json.loads(line) for line in proc.stdout.splitlines() + proc.stderr.splitlines() if line.startswith("{")]
    done = next(line for line in last if line["event"] == "daemon.once_done")
    assert done["processed"] == 0 and done["already"] == emls


def test_config_check_validates_and_describes_without_secrets(dovecot: Dovecot, workdir: Path) -> None:
    """`config check` prints what run would do (no password) and exits 1 naming a bad value;
    --connect logs in to each mailbox."""
    user = dovecot.new_user()
    cfg = config(workdir, sqlite(workdir), {"bounces": imap_box(dovecot, user)})
    ok = cli(cfg, "config", "check", "--connect")
    assert ok.returncode == 0, ok.stderr
    assert "bounces: imap" in ok.stdout and "configuration OK" in ok.stdout and "connected" in ok.stdout
    assert user.password not in ok.stdout + ok.stderr
    bad = config(workdir, sqlite(workdir), {"bounces": imap_box(dovecot, user, batch_size=0)}, name="bad.toml")
    result = cli(bad, "config", "check")
    assert result.returncode == 2 and "mailboxes.bounces.batch_size" in result.stderr
    wrong = config(workdir, sqlite(workdir), {"bounces": imap_box(dovecot, user, password="nope-nope")},
                   name="wrong.toml")
    result = cli(wrong, "config", "check", "--connect")
    assert result.returncode == 1 and "refused" in result.stderr and "nope-nope" not in result.stderr
    empty = write_config(workdir / "empty.toml", {"database": {"url": sqlite(workdir)}})
    result = cli(empty, "config", "check")
    assert result.returncode == 0 and "embedded default" in result.stdout and "samples" in result.stdout


def test_readme_quick_start_first_command_runs_the_daemon() -> None:
    """README's Quick start: the first command installs and runs `run --once` (the embedded default)."""
    readme = (PROJECT / "README.md").read_text()
    block = readme.split("## Quick start", 1)[1].split("```", 2)[1]
    commands = [line for line in block.splitlines()[1:] if line.strip()]
    assert commands[0] == "python3 -m pip install -e . && python3 -m processor run --once"
    assert len(commands) == 2 and "pytest" in commands[1]


def test_example_configuration_in_readme_is_valid(workdir: Path) -> None:
    """The TOML example in README.md loads and passes `config check` (password from the environment)."""
    readme = (PROJECT / "README.md").read_text()
    section = readme.split("## Running the daemon", 1)[1]
    example = section.split("```toml", 1)[1].split("```", 1)[0]
    cfg = workdir / "example.toml"
    cfg.write_text(example.replace("/etc/bounce-processor/", f"{workdir}/"))
    (workdir / "ca.pem").write_text(_ca_pem())
    (workdir / "fbl-password").write_text("secret-from-a-file\n")
    env = {**os.environ, "BOUNCE_PROCESSOR_CONFIG": str(cfg), "BOUNCE_MAILBOXES__BOUNCES__PASSWORD": "from-env"}
    result = subprocess.run([sys.executable, "-m", "processor", "config", "check"], env=env, cwd=workdir,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "from-env" not in result.stdout and "secret-from-a-file" not in result.stdout


def _ca_pem() -> str:
    import shutil

    from tests.servers import generate_tls, private_dir

    directory = private_dir("bp-ca-")
    try:
        return generate_tls(directory).ca_cert.read_text()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_daemon_resumes_within_seconds_of_postgresql_returning(dovecot: Dovecot, workdir: Path) -> None:
    """A private PostgreSQL stopped (-m immediate) for 10 s in the middle of a drain, with a 60 s
    poll interval and IDLE: the daemon is back at work within 15 s of the database answering,
    says that the lease went with the database (no other daemon exists), and counts every
    message once, including those that arrived during the outage."""
    require(private_postgres_missing() is None, str(private_postgres_missing()))
    user = dovecot.new_user()
    tag = os.urandom(2).hex()
    before, during = 600, 20
    dovecot.append_many(user, bounces(before, prefix=f"p{tag}-"))
    with PrivatePostgres() as cluster:
        # the default backoff (1 s doubling up to 300 s), not the tests' short one
        box = imap_box(dovecot, user, poll_interval_seconds=60.0, batch_size=2, backoff_initial_seconds=1.0,
                       backoff_max_seconds=300.0)
        cfg = config(workdir, cluster.url, {"bounces": box})
        daemon = DaemonProcess(cfg)
        try:
            daemon.wait_for(lambda d: processed_count(d) >= 50, 60, "the drain to get going")
            cluster.stop()
            outage_began = time.monotonic()
            dovecot.append_many(user, bounces(during, prefix=f"q{tag}-"))
            time.sleep(max(0.0, 10 - (time.monotonic() - outage_began)))
            done_before = processed_count(daemon)
            assert done_before < before, "the drain ended before the outage: nothing tests the resumption"
            cluster.start()
            back = time.monotonic()
            daemon.wait_for(lambda d: processed_count(d) > done_before, 15, "work within 15 s of the database")
            resumed_after = time.monotonic() - back
            print(f"postgresql outage: first message processed {resumed_after:.1f} s after the database returned")
            daemon.wait_for(lambda d: not dovecot.uids(user), 180, "the mailbox to be drained")
            daemon.signal(signal.SIGTERM)
            assert daemon.wait(15) == 0, daemon.text()[-3000:]
        finally:
            daemon.close()
        total = before + during
        assert counts(cluster.url) == {"events": total, "ledger": total, "distinct": total, "suppressed": total}
    assert resumed_after < 15
    lost = daemon.events("mailbox.lease_lost")
    assert all("database" in event["why"] and "another daemon" not in event["why"] for event in lost), lost
    assert not [e for e in daemon.lines() if e.get("level") == "error" and e.get("event") == "scheduler.job_error"]


def test_sigterm_while_idle_logs_no_error(dovecot: Dovecot, workdir: Path) -> None:
    """SIGTERM while every folder is in IDLE: exit 0 within the shutdown time, and not one ERROR
    line (no cancelled job reported as a failure)."""
    user = dovecot.new_user()
    box = imap_box(dovecot, user, poll_interval_seconds=60.0, folders=["INBOX", "Other"])
    with dovecot.session(user) as imap:
        imap.create("Other")
    dovecot.append(user, bounces(1, prefix=f"s{os.urandom(2).hex()}-")[0])
    daemon = DaemonProcess(config(workdir, sqlite(workdir), {"bounces": box}))
    try:
        daemon.wait_for(lambda d: processed_count(d) >= 1, 60, "the first message")
        daemon.wait_for(lambda d: len([e for e in d.lines() if e.get("event") == "imap.connected"]) >= 2, 30,
                        "both folders connected")
        time.sleep(1.0)  # both folders settle into IDLE
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(15) == 0
    finally:
        daemon.close()
    errors = [line for line in daemon.lines() if line.get("level") in ("error", "critical")]
    assert errors == [], errors
    assert "CancelledError" not in daemon.text()


def test_daemon_resumes_within_seconds_of_dovecot_returning(dovecot: Dovecot, workdir: Path) -> None:
    """Dovecot stopped for 5 s under a daemon in IDLE, with a 60 s poll interval and the default
    backoff: mail that arrives after the restart is processed within 15 s of Dovecot answering."""
    user = dovecot.new_user()
    tag = os.urandom(2).hex()
    dovecot.append(user, bounce_for(f"a{tag}@local.example.net"))
    box = imap_box(dovecot, user, poll_interval_seconds=60.0, backoff_initial_seconds=1.0, backoff_max_seconds=300.0)
    daemon = DaemonProcess(config(workdir, sqlite(workdir), {"bounces": box}))
    try:
        daemon.wait_for(lambda d: processed_count(d) >= 1, 60, "the first message")
        time.sleep(1.0)  # in IDLE now
        dovecot.stop()
        time.sleep(5.0)
        dovecot.start()
        back = time.monotonic()
        dovecot.append_many(user, bounces(5, prefix=f"b{tag}-"))
        daemon.wait_for(lambda d: processed_count(d) >= 6, 15, "the new mail within 15 s of Dovecot's return")
        resumed_after = time.monotonic() - back
        print(f"dovecot restart: new mail processed {resumed_after:.1f} s after Dovecot returned")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(15) == 0
    finally:
        daemon.close()
    assert daemon.events("mailbox.source_error"), "the restart was not noticed"
    assert resumed_after < 15
    assert counts(sqlite(workdir)) == {"events": 6, "ledger": 6, "distinct": 6, "suppressed": 6}


def test_mail_arriving_during_a_drain_is_processed_right_after_it(dovecot: Dovecot, workdir: Path) -> None:
    """600 bounces in INBOX with a 60 s poll interval and IDLE; one more APPENDed while the drain
    runs is processed within 5 s of the drain's end (not at the next poll)."""
    user = dovecot.new_user()
    tag = os.urandom(2).hex()
    dovecot.append_many(user, bounces(600, prefix=f"d{tag}-"))
    late = f"late{tag}@local.example.net"
    box = imap_box(dovecot, user, poll_interval_seconds=60.0, batch_size=10)
    daemon = DaemonProcess(config(workdir, sqlite(workdir), {"bounces": box}))
    try:
        daemon.wait_for(lambda d: processed_count(d) >= 100, 60, "100 messages recorded")
        dovecot.append(user, bounce_for(late))
        assert daemon.events("mailbox.drained") == [], "the drain ended before the APPEND: nothing is tested"
        daemon.wait_for(lambda d: bool(d.events("mailbox.drained")), 120, "the drain to end")
        drained_at = time.monotonic()
        daemon.wait_for(lambda d: any(late in e.get("recipients", []) for e in d.events("message.processed")), 5,
                        "the late message within 5 s of the drain's end")
        print(f"drain race: late message processed {time.monotonic() - drained_at:.1f} s after the drain")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(15) == 0
    finally:
        daemon.close()
    assert counts(sqlite(workdir))["ledger"] == 601
