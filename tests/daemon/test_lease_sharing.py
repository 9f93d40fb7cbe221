"""Several daemons on one PostgreSQL database share the mailboxes: each holds about its fair share,
hands back its surplus when another joins and takes the mailboxes of one that leaves; a mailbox is
never held by two at once (the advisory locks are the truth, read from pg_locks)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from processor.daemon.lease import MAILBOX_LOCK_CLASS, PostgresLeases, mailbox_key
from tests.daemon.helpers import DaemonProcess, bounces, write_config

NAMES = ["box0", "box1", "box2", "box3"]


def holders(url: str, names: list[str]) -> dict[str, list[int]]:
    """Mailbox name -> the backend pids holding its lease, read from pg_locks."""
    keys = {mailbox_key(name): name for name in names}
    out: dict[str, list[int]] = {name: [] for name in names}
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT objid::bigint, pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE d.datname = current_database() AND locktype = 'advisory' AND granted AND objsubid = 2 "
            "AND classid = %s::bigint::oid",
            (MAILBOX_LOCK_CLASS,),
        ).fetchall()
    for objid, pid in rows:
        key = objid - (1 << 32) if objid >= (1 << 31) else objid
        if key in keys:
            out[keys[key]].append(pid)
    return out


def split(url: str, names: list[str]) -> list[int]:
    """How many mailboxes each holder has, largest first; fails if any is held twice."""
    held = holders(url, names)
    assert all(len(pids) <= 1 for pids in held.values()), held
    return sorted(Counter(pids[0] for pids in held.values() if pids).values(), reverse=True)


async def refresh_and_hand_back(leases: PostgresLeases) -> None:
    await leases.refresh(NAMES)
    for name in leases.surplus():
        leases.stop_working(name)
        await leases.release(name)


def test_leases_split_fairly_and_rebalance(pg_url: str) -> None:
    """Alone a daemon takes all four; a second one makes it hand back two (2/2); when the second
    leaves the first takes all four again, and when it comes back the split is 2/2 again."""

    async def scenario() -> None:
        with ThreadPoolExecutor(4) as executor:
            first = PostgresLeases(pg_url, 6.0, executor)
            second = PostgresLeases(pg_url, 6.0, executor)
            await refresh_and_hand_back(first)
            assert split(pg_url, NAMES) == [4] and first.surplus() == []
            await refresh_and_hand_back(second)  # joins: everything is held, it takes nothing yet
            assert split(pg_url, NAMES) == [4] and second.live_daemons == 2
            await refresh_and_hand_back(first)  # sees two daemons: gives back its surplus
            assert sorted(n for n in NAMES if first.holds(n)) == ["box0", "box1"]
            await refresh_and_hand_back(second)
            assert split(pg_url, NAMES) == [2, 2]
            assert sorted(n for n in NAMES if second.holds(n)) == ["box2", "box3"]
            await refresh_and_hand_back(first)  # stable: nothing moves
            await refresh_and_hand_back(second)
            assert split(pg_url, NAMES) == [2, 2]
            await second.close()  # leaves (its connection ends, as when killed)
            # the server ends the closed connection's backend (and its locks) a moment later: the
            # first daemon takes the mailboxes at a refresh after that
            deadline = time.monotonic() + 15
            await refresh_and_hand_back(first)
            while split(pg_url, NAMES) != [4] and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                await refresh_and_hand_back(first)
            assert split(pg_url, NAMES) == [4] and first.live_daemons == 1
            back = PostgresLeases(pg_url, 6.0, executor)
            await refresh_and_hand_back(back)
            await refresh_and_hand_back(first)
            await refresh_and_hand_back(back)
            assert split(pg_url, NAMES) == [2, 2]
            await first.close()
            await back.close()

    asyncio.run(scenario())


def test_a_worker_stops_before_its_lease_is_handed_back(pg_url: str) -> None:
    """A surplus mailbox's lease is given back only after its worker's run has ended; until then
    this daemon still holds it (no second daemon can take it)."""
    from processor.daemon.sharing import hand_back_surplus

    class Worker:
        def __init__(self, name: str) -> None:
            self.name = name
            self.task: asyncio.Task[None] | None = None
            self.wake: asyncio.Event | None = None

    async def scenario() -> None:
        with ThreadPoolExecutor(4) as executor:
            first = PostgresLeases(pg_url, 6.0, executor)
            await first.refresh(NAMES)
            second = PostgresLeases(pg_url, 6.0, executor)
            await second.refresh(NAMES)
            await first.refresh(NAMES)
            assert first.surplus() == ["box2", "box3"]
            busy = Worker("box3")
            release_busy = asyncio.Event()
            busy.task = asyncio.ensure_future(release_busy.wait())
            stop = asyncio.Event()
            handed = await hand_back_surplus(first, [Worker("box2"), busy], stop, wait_seconds=0.3)
            assert handed == ["box2"]
            assert not first.holds("box3")  # told to stop working it ...
            assert holders(pg_url, NAMES)["box3"]  # ... but the lock is still this daemon's
            release_busy.set()
            await busy.task
            assert await hand_back_surplus(first, [busy], stop, wait_seconds=1.0) == ["box3"]
            assert not holders(pg_url, NAMES)["box3"]
            await first.close()
            await second.close()

    asyncio.run(scenario())


@pytest.mark.slow
def test_two_daemons_split_four_folders_and_rebalance(tmp_path: Path, pg_url: str) -> None:
    """Two real daemons, four mailboxes: 2/2 within two lease periods of the second's start; all
    four to the survivor when one is SIGKILLed, 2/2 again when it restarts; every message once."""
    lease = 3.0
    sections: dict[str, dict[str, object]] = {
        "database": {"url": pg_url},
        "daemon": {"housekeeping_interval_seconds": 1.0, "lease_seconds": lease},
        "api": {"enabled": False},
    }
    per = 30
    for n in range(4):
        folder = tmp_path / f"box{n}"
        folder.mkdir()
        for i, data in enumerate(bounces(per, prefix=f"share{n}-")):
            (folder / f"{i:04d}.eml").write_bytes(data)
        sections[f"mailboxes.box{n}"] = {"source": "directory", "path": str(folder), "read_only": True,
                                         "poll_interval_seconds": 1.0, "batch_size": 5}
    cfg = write_config(tmp_path / "config.toml", sections)
    names = [f"box{n}" for n in range(4)]

    def wait_split(expected: list[int], within: float) -> float:
        start = time.monotonic()
        while split(pg_url, names) != expected:
            assert time.monotonic() - start < within, f"split {split(pg_url, names)}, wanted {expected}"
            time.sleep(0.1)
        return time.monotonic() - start

    daemons: list[DaemonProcess] = []
    took: list[float] = []
    try:
        daemons.append(DaemonProcess(cfg))
        wait_split([4], 30)
        for round_ in ("joins", "comes back"):
            if round_ == "comes back":
                daemons[1].proc.send_signal(signal.SIGKILL)
                daemons[1].proc.wait(10)
                wait_split([4], 2 * lease)
                daemons[1] = DaemonProcess(cfg)
            else:
                daemons.append(DaemonProcess(cfg))
            # timed from the moment the second daemon has started (its imports are not the split's)
            daemons[1].wait_for(lambda d: bool(d.events("daemon.started")), 60, "the second daemon to start")
            took.append(wait_split([2, 2], 2 * lease))
        deadline = time.monotonic() + 60
        while processed(pg_url) < 4 * per:
            assert time.monotonic() < deadline, f"{processed(pg_url)} of {4 * per} messages processed"
            time.sleep(0.2)
        for daemon in daemons:
            daemon.signal(signal.SIGTERM)
            assert daemon.wait(20) == 0
    finally:
        for daemon in daemons:
            daemon.close()
    assert len(took) == 2 and max(took) < 2 * lease
    assert processed(pg_url) == 4 * per


def processed(url: str) -> int:
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        row = conn.execute("SELECT count(*) FROM processed_message").fetchone()
    return int(row[0]) if row else 0
