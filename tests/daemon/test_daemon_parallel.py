"""The daemon's batches parsed in a pool of processes: the same outcome as in its threads, in
order, each message once, with several batches in flight (fetch, parse, commit overlapped)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from processor.classify import load_classifier
from processor.config import DatabaseSettings, MailboxSettings, Settings
from processor.daemon.parallel import ParsePool
from processor.daemon.service import MailboxWorker, Pipeline, Runtime
from processor.store import Store, open_store
from processor.store import models as m
from tests.conftest import SAMPLES
from tests.daemon.helpers import UNKNOWN_RECIPIENT, UNKNOWN_USER, bounces
from tests.daemon.memory_source import MemorySource


@pytest.fixture
def pool() -> Iterator[ParsePool]:
    started = ParsePool(Settings().parse, 2)
    yield started
    started.close()


def drained(url: str, messages: list[bytes], parse_pool: ParsePool | None) -> tuple[MemorySource, list[Any]]:
    """Drains a memory source holding ``messages`` into a new store; (the source, the ledger and
    event rows in a comparable form)."""
    settings = Settings(database=DatabaseSettings(url=url))
    store: Store = open_store(settings)
    try:
        source = MemorySource()
        for data in messages:
            source.append(data)
        pipeline = Pipeline(settings, store, load_classifier(settings.rules), parse_pool)
        runtime = Runtime(ThreadPoolExecutor(3), asyncio.Event(), threading.Event())
        box = MailboxSettings(source="directory", path=Path("/nonexistent"), batch_size=7)
        asyncio.run(MailboxWorker(source, box, pipeline, store, runtime).drain())
        with store.engine.connect() as conn:
            rows = conn.execute(
                sa.select(m.event.c.recipient, m.event.c.status, m.event.c.reason, m.event.c.bounce_type,
                          m.processed_message.c.uid)
                .join(m.processed_message, m.processed_message.c.id == m.event.c.message_ref)
                .order_by(m.processed_message.c.uid, m.event.c.recipient)
            ).all()
            failed = conn.execute(sa.select(m.failed_message.c.error)).scalars().all()
        return source, [tuple(row) for row in rows] + sorted(failed)
    finally:
        store.close()


def test_pool_gives_the_same_outcome_as_the_threads(tmp_path: Path, pool: ParsePool) -> None:
    """Samples, generated bounces and an unparseable message, in batches of 7: the events, the
    ledger, the quarantine and the order are the same whether parsed in processes or threads."""
    messages = [p.read_bytes() for p in sorted((SAMPLES / "mta").glob("*.eml"))[:30]]
    messages += bounces(20, prefix="pool-")
    messages.insert(11, b"\n\n")
    in_threads = drained(f"sqlite:///{tmp_path / 'threads.db'}", messages, None)
    in_pool = drained(f"sqlite:///{tmp_path / 'pool.db'}", messages, pool)
    assert in_pool[1] == in_threads[1] and len(in_pool[1]) > len(messages)
    assert in_pool[0].folders == in_threads[0].folders
    assert in_pool[0].folders["quarantine"] == [b"\n\n"]
    assert len(in_pool[0].folders["processed"]) == len(messages) - 1


def test_pool_parses_in_other_processes(pool: ParsePool) -> None:
    """The work really leaves this process (the workers are spawned, each with its parser)."""
    from processor.daemon import parallel

    outcomes = pool.submit(bounces(40, prefix="where-")).result(timeout=120)
    assert len(outcomes) == 40 and all(isinstance(o, list) and o for o in outcomes)
    assert parallel._parser is None  # nothing was parsed in this process


def test_a_parse_worker_does_not_import_the_daemon() -> None:
    """A spawned worker imports processor.daemon.parallel to find its function: that import must
    not pull in the scheduler, the store or SQLAlchemy (a second of start-up per worker)."""
    import subprocess
    import sys

    code = ("import sys, processor.daemon.parallel; "
            "print(sorted(m for m in ('processor.daemon.scheduler', 'processor.store', 'sqlalchemy', "
            "'apscheduler') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    from processor.daemon import Daemon, DaemonError  # the names are still there, on first use

    assert Daemon.__name__ == "Daemon" and issubclass(DaemonError, Exception)


def test_warm_starts_every_worker_before_the_first_batch() -> None:
    """``warm`` returns at once and starts one process per worker, each with its parser built:
    the first batch finds them ready."""
    import time

    pool = ParsePool(Settings().parse, 2)
    try:
        started = time.monotonic()
        futures = pool.warm()
        assert time.monotonic() - started < 1.0 and len(futures) == 2
        assert [f.result(timeout=120) for f in futures] == [[], []]
        executor = pool._pool._executor
        assert executor is not None and len(executor._processes) == 2
        outcomes = pool.submit(bounces(4, prefix="warm-")).result(timeout=120)
        assert len(outcomes) == 4 and all(isinstance(o, list) and o for o in outcomes)
        assert len(executor._processes) == 2  # no process was started for the batch
    finally:
        pool.close()
    assert ParsePool(Settings().parse, 1).warm() == []  # one process: parsed in the daemon, nothing started


def _rule(rule_id: str, reason: str) -> str:
    return (f"rules:\n  - id: {rule_id}\n    description: A test rule for one domain.\n"
            "    match:\n      recipient_domain: reload.example\n"
            f"    result:\n      reason: {reason}\n      bounce_type: hard\n")


def _bounce_to(address: str) -> bytes:
    """A genuine Postfix DSN (unknown user) for ``address``, domain included."""
    return UNKNOWN_USER.read_bytes().replace(UNKNOWN_RECIPIENT, address.encode())


def _prepared(pipeline: Pipeline, messages: list[bytes]) -> list[Any]:
    from processor.sources.base import FetchedMessage

    box = MailboxSettings(source="directory", path=Path("/nonexistent"))
    fetched = [FetchedMessage(n, n, data, None, f"uid {n}") for n, data in enumerate(messages, 1)]
    outcome = pipeline.prepare_batch("t/INBOX", box, 1, fetched, threading.Event())
    assert not outcome.left and all(not p.error for p in outcome.prepared)
    return outcome.prepared


def test_pool_classifies_with_the_rules_of_the_last_valid_reload(tmp_path: Path, pool: ParsePool) -> None:
    """The workers classify (nothing is classified in this process) with the daemon's rules of the
    moment: after a valid reload the next batch gets the new rules; an invalid rule file keeps the
    previous rules in the workers as in the daemon. Verdicts are the daemon's own, field for field."""
    from processor.daemon import parallel
    from processor.parse import Parser
    from processor.parse_settings import RulesSettings

    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "local.yaml").write_text(_rule("local-first", "userunknown"))
    settings = Settings(database=DatabaseSettings(url=f"sqlite:///{tmp_path / 'r.db'}"),
                        rules=RulesSettings(dirs=[rules]))
    store = open_store(settings)
    try:
        classifier = load_classifier(settings.rules)
        pipeline = Pipeline(settings, store, classifier, pool)
        messages = [_bounce_to("someone@reload.example"), *bounces(3, prefix="rules-")]

        def verdicts() -> list[Any]:
            return [v for p in _prepared(pipeline, messages) for v in p.verdicts]

        first = verdicts()
        assert first[0].rule_id == "local-first" and first[0].reason == "userunknown"
        parser = Parser(settings.parse)
        assert first == [classifier.classify(e) for data in messages for e in parser.parse(data)]
        assert parallel._rules is None  # classified in the workers, not here

        (rules / "local.yaml").write_text(_rule("local-second", "mailboxfull"))
        assert classifier.reload() == []
        second = verdicts()
        assert (second[0].rule_id, second[0].reason) == ("local-second", "mailboxfull")
        assert second[1:] == first[1:]

        (rules / "local.yaml").write_text("rules: [this is not a rule\n")
        assert classifier.reload() != []
        assert verdicts() == second
    finally:
        store.close()


@pytest.mark.parametrize("lowercase", [True, False])
def test_pool_normalises_recipients_as_the_store_does(tmp_path: Path, pool: ParsePool, lowercase: bool) -> None:
    """The workers hand the store each recipient normalised with the store's own setting
    (``lowercase_local_part``), and the event rows say the same as without the pool."""
    settings = Settings(database=DatabaseSettings(url=f"sqlite:///{tmp_path / 'n.db'}",
                                                  lowercase_local_part=lowercase))
    store = open_store(settings)
    try:
        pipeline = Pipeline(settings, store, load_classifier(settings.rules), pool)
        item, _ = _prepared(pipeline, [_bounce_to("Mixed.Case@Reload.EXAMPLE"), *bounces(1)])  # one: no pool
        expected = "mixed.case@reload.example" if lowercase else "Mixed.Case@reload.example"
        assert item.addresses == ((expected, ""),)
        (result,) = store.record_messages([(item.ref, list(item.verdicts))], addresses=[item.addresses])
        assert [d.address for d in result.decisions] == [expected]
    finally:
        store.close()


_WORKER_MAIN = """
import os, sys
from pathlib import Path

class Marker:
    def __init__(self, path, write, getpid):
        self.path, self.write, self.getpid = path, write, getpid
    def __del__(self):
        fd = os.open(f"{self.path}/torn-{self.getpid()}", os.O_CREAT | os.O_WRONLY)
        os.close(fd)

if __name__ == "__mp_main__":  # each spawned worker: says so if it is torn down module by module
    marker = Marker(os.environ["BP_TEST_MARK_DIR"], os.write, os.getpid)

if __name__ == "__main__":
    from processor.config import Settings
    from processor.daemon.parallel import ParsePool

    pool = ParsePool(Settings().parse, 2)
    assert [f.result(timeout=120) for f in pool.warm()] == [[], []]
    pids = sorted(pool._pool._executor._processes)
    pool.close()
    print(" ".join(map(str, pids)))
"""


def test_a_parse_worker_ends_at_once_when_the_pool_closes(tmp_path: Path) -> None:
    """Closing the pool (the daemon's shutdown) does not wait for each worker to tear its
    interpreter down: a worker's work is done when it gets the pool's sentinel, so it just ends."""
    import os
    import subprocess
    import sys

    from tests.conftest import PROJECT

    script = tmp_path / "main.py"
    script.write_text(_WORKER_MAIN)
    marks = tmp_path / "marks"
    marks.mkdir()
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=PROJECT, timeout=180,
                          check=False,
                          env={**os.environ, "BP_TEST_MARK_DIR": str(marks), "PYTHONPATH": str(PROJECT)})
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.split()) == 2  # two workers ran
    assert sorted(p.name for p in marks.iterdir()) == []  # neither was torn down


_FORKED_POOL = """
import multiprocessing, sys
from processor.commands.run_cmd import _start_parse_pool, pool_start_method
from processor.config import Settings
from processor.parse import Parser
from tests.daemon.helpers import bounces

if __name__ == "__main__":
    settings = Settings()
    assert pool_start_method() == "fork"
    pool = _start_parse_pool(settings)
    try:
        messages = bounces(40, prefix="forked-")
        outcomes = pool.submit(messages).result(timeout=120)
        executor = pool._pool._executor
        print(executor._mp_context.get_start_method(), len(executor._processes),
              outcomes == [Parser(settings.parse).parse(m) for m in messages], multiprocessing.active_children() != [])
    finally:
        pool.close()
"""


def test_the_run_command_forks_its_parse_workers_before_it_has_threads(tmp_path: Path) -> None:
    """``bounce-processor run`` starts its pool before any thread or connection: the workers are
    forked (they inherit the imports), and parse as a spawned worker or this process does."""
    import os
    import subprocess
    import sys

    from processor.workers import default_jobs
    from tests.conftest import PROJECT

    if default_jobs() < 2:
        pytest.skip("one CPU: the daemon parses in its own threads, no pool is started")
    script = tmp_path / "forked_pool.py"
    script.write_text(_FORKED_POOL)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True,
                         cwd=PROJECT, env={**os.environ, "PYTHONPATH": str(PROJECT)}).stdout
    assert out.split() == ["fork", str(default_jobs()), "True", "True"]


def test_a_process_with_threads_spawns_its_parse_workers() -> None:
    from processor.commands.run_cmd import pool_start_method

    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert pool_start_method() == "spawn"
    finally:
        stop.set()
        other.join()
