"""Handing a mailbox over to another daemon without ever working it twice at once.

The lease module names this daemon's surplus (mailboxes beyond its fair share); here each one's
worker is told to stop (``holds`` turns False: it finishes the batch in hand, commits and moves
it, and starts no new one; one waiting for new mail stops waiting), and only once that worker's
run has ended is the lock given back. A worker
that is still busy after ``wait_seconds`` keeps its mailbox until the next refresh tries again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

import structlog

from processor.daemon.lease import Leases

__all__ = ["hand_back_surplus"]

log = structlog.get_logger(__name__)


class _Worker(Protocol):
    name: str
    task: asyncio.Task[Any] | None
    wake: asyncio.Event | None


async def hand_back_surplus(
    leases: Leases, workers: Sequence[_Worker], stop: asyncio.Event, wait_seconds: float = 5.0
) -> list[str]:
    """Give back every surplus lease whose worker is (or becomes) idle; returns their names."""
    surplus = leases.surplus()
    if not surplus:
        return []
    by_name = {worker.name: worker for worker in workers}
    for name in surplus:
        leases.stop_working(name)
        worker = by_name.get(name)
        if worker is not None and worker.wake is not None:
            worker.wake.set()  # waiting for new mail: stop waiting now
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    handed: list[str] = []
    pending = list(surplus)
    while pending and not stop.is_set():
        for name in list(pending):
            worker = by_name.get(name)
            task = worker.task if worker is not None else None
            if task is None or task.done() or task is asyncio.current_task():
                await leases.release(name)
                handed.append(name)
                pending.remove(name)
        if not pending or loop.time() >= deadline:
            break
        await asyncio.sleep(0.05)
    if pending:
        log.info("lease.hand_back_waiting", mailboxes=pending, why="a batch is still in hand; tried again later")
    return handed
