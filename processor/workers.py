"""A pool of processes that run a pure per-message function on all cores, results in input order.

Start-up (imports, the parser's and the rules' compilation) is paid once per worker by an
initialiser, never per message; messages travel in chunks so that the cost of handing work to a
process is paid per chunk. With one job nothing is forked: the same function runs in this
process, so ``--jobs 1`` and ``--jobs N`` print the same thing by construction.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:  # imported when a pool is used: a one-file run never needs them
    from concurrent.futures import Future, ProcessPoolExecutor

Item = TypeVar("Item")
Result = TypeVar("Result")

CHUNK = 32
"""Messages handed to a worker at a time (a few milliseconds of work: hand-off cost stays small)."""


def default_jobs() -> int:
    """The number of CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class OrderedPool(Generic[Item, Result]):
    """Runs ``work(chunk) -> results`` over chunks of items in ``jobs`` processes.

    ``initializer(*initargs)`` runs once in each worker (and once here, for ``jobs == 1``);
    ``start_method`` is multiprocessing's ("spawn" for a process with threads);
    ``map`` yields one result per item, in the items' order, and keeps at most ``window``
    chunks in flight, so a long input is streamed, not held.
    """

    def __init__(
        self,
        work: Callable[[list[Item]], list[Result]],
        jobs: int,
        initializer: Callable[..., None],
        initargs: tuple[object, ...] = (),
        *,
        chunk: int = CHUNK,
        start_method: str = "fork",
    ) -> None:
        if jobs < 1:
            raise ValueError(f"jobs must be at least 1, not {jobs}")
        self.jobs = jobs
        self._work = work
        self._initializer = initializer
        self._initargs = initargs
        self._chunk = chunk
        self._start_method = start_method
        self._executor: ProcessPoolExecutor | None = None
        self._initialised_here = False

    def _start(self) -> ProcessPoolExecutor:
        if self._executor is None:
            import multiprocessing  # here, not at import: a one-file run never needs it
            from concurrent.futures import ProcessPoolExecutor

            # fork (a single-threaded command): the workers inherit the imports already made here;
            # spawn (a daemon with threads and connections): each worker starts clean, once
            context = multiprocessing.get_context(self._start_method)
            self._executor = ProcessPoolExecutor(
                self.jobs, mp_context=context, initializer=self._initializer, initargs=self._initargs
            )
        return self._executor

    def _run_here(self, chunk: list[Item]) -> list[Result]:
        if not self._initialised_here:
            self._initializer(*self._initargs)
            self._initialised_here = True
        return self._work(chunk)

    def map(self, items: Iterable[Item]) -> Iterator[Result]:
        """One result per item, in order. A short input (one chunk) runs here, unforked."""
        chunks = _chunks(items, self._chunk)
        first = next(chunks, None)
        if first is None:
            return
        second = next(chunks, None)
        if self.jobs == 1 or second is None:
            yield from self._run_here(first)
            if second is not None:
                yield from self._run_here(second)
                for chunk in chunks:
                    yield from self._run_here(chunk)
            return
        executor = self._start()
        window = self.jobs * 3
        pending: deque[Future[list[Result]]] = deque(
            [executor.submit(self._work, first), executor.submit(self._work, second)]
        )
        for chunk in chunks:
            pending.append(executor.submit(self._work, chunk))
            if len(pending) >= window:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()

    def submit(self, items: list[Item]) -> Future[list[Result]]:
        """The results of one batch, computed in a worker (for callers that overlap their own
        I/O with the work: the daemon fetches the next batch meanwhile)."""
        from concurrent.futures import Future

        if self.jobs == 1:
            done: Future[list[Result]] = Future()
            try:
                done.set_result(self._run_here(items))
            except BaseException as exc:
                done.set_exception(exc)
            return done
        executor = self._start()
        if len(items) <= self._chunk:
            return executor.submit(self._work, items)
        parts = [executor.submit(self._work, chunk) for chunk in _chunks(items, -(-len(items) // self.jobs))]
        return _joined(parts)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> OrderedPool[Item, Result]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _chunks(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    chunk: list[Item] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _joined(parts: list[Future[list[Result]]]) -> Future[list[Result]]:
    """One future for the concatenated results of ``parts`` (in order)."""
    from concurrent.futures import Future

    joined: Future[list[Result]] = Future()
    remaining = [len(parts)]
    lock = threading.Lock()

    def one_done(_: Future[list[Result]]) -> None:
        with lock:
            remaining[0] -= 1
            if remaining[0]:
                return
        try:
            joined.set_result([result for part in parts for result in part.result()])
        except BaseException as exc:
            joined.set_exception(exc)

    for part in parts:
        part.add_done_callback(one_done)
    return joined
