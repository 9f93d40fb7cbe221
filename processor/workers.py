"""Pools of processes that run a pure per-message function on all cores, results in input order.

``OrderedPool`` (the daemon's: spawn or fork, fed as work arrives): start-up (imports, the
parser's and the rules' compilation) is paid once per worker by an initialiser, never per
message; messages travel in chunks so that the cost of handing work to a process is paid per chunk.

``striped_map`` (a single-threaded command that knows its items up front, such as ``parse``):
the workers are forked once everything is built, so their start-up is free; worker ``k`` takes
chunks ``k``, ``k + jobs``, ... of the list it inherited, so nothing is sent to a worker, and
each hands its results back through its own pipe, read here in the chunks' order. This process
only reads and writes: no queue threads, no per-item hand-off.

With one job nothing is forked: the same function runs in this process, so ``--jobs 1`` and
``--jobs N`` print the same thing by construction.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, BinaryIO, Generic, NoReturn, TypeVar

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

    ``work(chunk, *extra)`` gets the ``extra`` arguments given to ``submit`` (none from ``map``);
    ``initializer(*initargs)`` runs once in each worker (and once here, for ``jobs == 1``);
    ``start_method`` is multiprocessing's ("spawn" for a process with threads);
    ``map`` yields one result per item, in the items' order, and keeps at most ``window``
    chunks in flight, so a long input is streamed, not held.
    """

    def __init__(
        self,
        work: Callable[..., list[Result]],
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

    def _run_here(self, chunk: list[Item], *extra: object) -> list[Result]:
        if not self._initialised_here:
            self._initializer(*self._initargs)
            self._initialised_here = True
        return self._work(chunk, *extra)

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

    def submit(self, items: list[Item], *extra: object) -> Future[list[Result]]:
        """The results of one batch, computed in a worker (for callers that overlap their own
        I/O with the work: the daemon fetches the next batch meanwhile); ``extra`` goes with every
        chunk of it to ``work``."""
        from concurrent.futures import Future

        if self.jobs == 1:
            done: Future[list[Result]] = Future()
            try:
                done.set_result(self._run_here(items, *extra))
            except BaseException as exc:
                done.set_exception(exc)
            return done
        executor = self._start()
        if len(items) <= self._chunk:
            return executor.submit(self._work, items, *extra)
        parts = [executor.submit(self._work, chunk, *extra) for chunk in _chunks(items, -(-len(items) // self.jobs))]
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


class WorkerError(RuntimeError):
    """A forked worker failed (its exception could not be handed back as it was) or ended early."""


_FRAME_HEAD = 9
"""A result frame: one byte (1: the result, 0: an exception), the payload's length (8 bytes,
big-endian), then the pickled payload."""


def striped_map(
    work: Callable[[list[Item]], Result], items: Sequence[Item], jobs: int, *, chunk: int = CHUNK
) -> Generator[Result, None, None]:
    """``work(chunk)`` for each chunk of ``items``, in order, in ``jobs`` forked processes.

    Chunk ``i`` is computed by worker ``i % jobs`` and by no other, so each item is worked once;
    the results are read back in the chunks' order, so the output keeps the input's order. A
    worker that is ahead blocks on its full pipe until its turn comes, so results are streamed,
    not held. An exception in a worker is raised here at that chunk's place in the order (as
    itself when it can be pickled, else as ``WorkerError`` with the worker's traceback).

    Fork only from a single-threaded process (a command, not the daemon). Use it as a context
    manager or close it (``contextlib.closing``): closing before the end stops the workers.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, not {jobs}")
    chunks = [list(items[start : start + chunk]) for start in range(0, len(items), chunk)]
    if jobs == 1 or len(chunks) <= 1:
        for one in chunks:
            yield work(one)
        return
    import contextlib
    import pickle
    import signal
    import sys

    jobs = min(jobs, len(chunks))
    for stream in (sys.stdout, sys.stderr):  # nothing buffered here is written twice
        if stream is not None:
            stream.flush()
    pids: list[int] = []
    readers: list[BinaryIO] = []
    finished = False
    try:
        for k in range(jobs):
            read_fd, write_fd = os.pipe()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child's side (its results are what the tests check)
                os.close(read_fd)
                for reader in readers:
                    reader.close()
                _serve(work, chunks[k::jobs], write_fd)
            os.close(write_fd)
            pids.append(pid)
            readers.append(os.fdopen(read_fd, "rb"))
        for index in range(len(chunks)):
            reader = readers[index % jobs]
            head = reader.read(_FRAME_HEAD)
            size = int.from_bytes(head[1:], "big") if len(head) == _FRAME_HEAD else -1
            payload = reader.read(size) if size >= 0 else b""
            if size < 0 or len(payload) != size:
                raise WorkerError(f"worker {pids[index % jobs]} ended before its chunk {index} of {len(chunks)}")
            value = pickle.loads(payload)
            if head[0] != 1:
                raise value
            yield value
        finished = True
    finally:
        for reader in readers:
            reader.close()
        for pid in pids:
            if not finished:
                with contextlib.suppress(ProcessLookupError):  # (already gone)
                    os.kill(pid, signal.SIGTERM)  # an early end (an error here, a closed pipe) stops them
            os.waitpid(pid, 0)


def _serve(work: Callable[[list[Item]], Result], chunks: list[list[Item]], fd: int) -> NoReturn:  # pragma: no cover
    """A forked worker: the result of each of its chunks, framed, to ``fd``; then it ends
    without running this process's exit handlers (they belong to the parent)."""
    import pickle
    import traceback

    code = 0
    try:
        with os.fdopen(fd, "wb") as out:
            for one in chunks:
                try:
                    payload, kind = pickle.dumps(work(one), pickle.HIGHEST_PROTOCOL), 1
                except Exception as exc:
                    try:
                        payload = pickle.dumps(exc, pickle.HIGHEST_PROTOCOL)
                        pickle.loads(payload)
                    except Exception:
                        payload = pickle.dumps(WorkerError(traceback.format_exc()), pickle.HIGHEST_PROTOCOL)
                    kind, code = 0, 1
                out.write(bytes((kind,)) + len(payload).to_bytes(_FRAME_HEAD - 1, "big"))
                out.write(payload)
                out.flush()
                if kind == 0:
                    break
    except BaseException:  # the parent went away (a closed pipe), or an interrupt: just end
        code = 1
    os._exit(code)
