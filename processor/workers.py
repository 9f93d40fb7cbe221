"""Pools of processes that run a pure per-message function on all cores, results in input order.

``OrderedPool`` (the daemon's: spawn or fork, fed as work arrives): start-up (imports, the
parser's and the rules' compilation) is paid once per worker by an initialiser, never per
message; messages travel in chunks so that the cost of handing work to a process is paid per chunk.

``forked_map`` (a single-threaded command that knows its items up front, such as ``parse``):
the workers are forked once everything is built, so their start-up is free; this process works
too (``jobs`` processes in all, one per core, none only relaying); each process takes the next
chunk's number from a shared pipe when it is free, so the work is shared by speed, not in fixed
parts, and nothing but that number is sent to a worker; a worker hands its results back through
its own pipe, and this process yields them in the chunks' order. No queue threads, no per-item
hand-off.

With one job nothing is forked: the same function runs in this process, so ``--jobs 1`` and
``--jobs N`` print the same thing by construction.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Generic, NoReturn, TypeVar

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
    import threading  # here, not at import: a command that forks (parse) never needs it
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


_FRAME_HEAD = 13
"""A result frame: one byte (1: the result, 0: an exception), the chunk's number (4 bytes), the
payload's length (8 bytes; all big-endian), then the pickled payload."""

_TOKEN = 4
"""A chunk's number in the pipe of chunks not yet taken (big-endian)."""

AHEAD = 16
"""How many chunks past the next one due this process may work on before it waits for the
workers' results: a bound on what it holds (its own results that are not due yet)."""

_PIPE_BYTES = 1 << 20
"""The pipe size asked for (Linux's default cap for an unprivileged process): room for the
pending chunks' numbers, and for a worker's results to queue while this process works a chunk."""


def chunk_bounds(count: int, chunk: int, jobs: int, taper: int = 1) -> list[tuple[int, int]]:
    """(start, end) of each chunk of ``count`` items: ``chunk`` items each, except that the last
    ``jobs * chunk`` items go in chunks ``taper`` times smaller. The processes then run out of
    work within a small chunk of each other instead of a whole one (at the end, the process that
    took the last chunk works alone while the others wait for it: half a chunk's time, on average)."""
    small = max(1, chunk // taper)
    tail = min(count, jobs * chunk) if small < chunk else 0
    head = count - tail
    bounds = [(start, min(start + chunk, head)) for start in range(0, head, chunk)]
    bounds += [(start, min(start + small, count)) for start in range(head, count, small)]
    return bounds


def forked_map(
    work: Callable[[list[Item]], Result],
    items: Sequence[Item],
    jobs: int,
    *,
    chunk: int = CHUNK,
    ahead: int = AHEAD,
    taper: int = 1,
) -> Generator[Result, None, None]:
    """``work(chunk)`` for each chunk of ``items``, in order, in ``jobs`` processes: this one and
    ``jobs - 1`` forked from it.

    The chunks' numbers wait in a pipe that every process reads (a read takes one number, and
    the kernel gives each number to one reader only), so each chunk is worked once, and a process
    that is faster, or less disturbed by the rest of the machine, takes more of them: nobody
    waits on a fixed share. A worker hands its results back through its own pipe, in the order it
    took its chunks; this process reads them when it is not working a chunk itself, and yields
    every result in the chunks' order. It works a chunk only when that chunk is less than ``ahead``
    past the one due, and reads only the first waiting result of each worker, so what is held is
    bounded (a worker that is ahead blocks on its full pipe): results are streamed, not held.
    An exception is raised here at that chunk's place in the order (a worker's as itself when it
    can be pickled, else as ``WorkerError`` with the worker's traceback); a worker that ends
    before handing back a chunk it took raises ``WorkerError`` at that chunk's place.

    ``taper`` > 1 makes the last chunks smaller (``chunk_bounds``): the results are the same,
    in more, smaller chunks at the end.

    With one job or one chunk nothing is forked. Fork only from a single-threaded process (a
    command, not the daemon). Use it as a context manager or close it (``contextlib.closing``):
    closing before the end stops the workers.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, not {jobs}")
    if ahead < 1:
        raise ValueError(f"ahead must be at least 1, not {ahead}")
    if jobs == 1 or len(items) <= chunk:
        for start in range(0, len(items), chunk):
            yield work(list(items[start : start + chunk]))
        return
    import contextlib
    import fcntl
    import pickle
    import signal
    import sys
    import termios

    for stream in (sys.stdout, sys.stderr):  # nothing buffered here is written twice
        if stream is not None:
            stream.flush()
    tokens_read, tokens_write = os.pipe()
    pids: list[int] = []
    readers: list[int] = []  # one per worker, in pids' order
    finished = False
    try:
        with contextlib.suppress(OSError):  # (the default size then: 16,384 numbers, chunks grow to fit)
            fcntl.fcntl(tokens_write, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        room = fcntl.fcntl(tokens_write, fcntl.F_GETPIPE_SZ) // _TOKEN
        chunk = max(chunk, -(-len(items) // max(1, room - jobs * taper)))  # (the small ones fit too)
        chunks = [list(items[start:end]) for start, end in chunk_bounds(len(items), chunk, jobs, taper)]
        count = len(chunks)
        numbers = memoryview(b"".join(number.to_bytes(_TOKEN, "big") for number in range(count)))
        while numbers:  # (they fit: nothing reads them yet)
            numbers = numbers[os.write(tokens_write, numbers) :]
        os.close(tokens_write)  # once the numbers are taken, a read finds the end
        tokens_write = -1
        jobs = min(jobs, count)
        for _ in range(jobs - 1):
            read_fd, write_fd = os.pipe()
            with contextlib.suppress(OSError):
                fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child's side (its results are what the tests check)
                os.close(read_fd)
                for reader in readers:
                    os.close(reader)
                _serve(work, chunks, tokens_read, write_fd)
            os.close(write_fd)
            pids.append(pid)
            readers.append(read_fd)
        held: dict[int, tuple[bool, object, int]] = {}  # number -> (is a result, it or the exception, reader or -1)
        waiting = set(readers)  # live workers whose first waiting result is not held yet
        size = bytearray(4)
        due = 0
        while due < count:
            if due in held:
                ok, value, reader = held.pop(due)
                if reader >= 0:
                    waiting.add(reader)  # its next result may be read now
                due += 1
                if not ok:
                    raise value  # type: ignore[misc]
                yield value  # type: ignore[misc]
                continue
            ready = _readable(waiting, 0) if waiting else []
            if not ready:
                fcntl.ioctl(tokens_read, termios.FIONREAD, size)
                untaken = count - int.from_bytes(size, sys.byteorder) // _TOKEN
                token = os.read(tokens_read, _TOKEN) if untaken < min(count, due + ahead) else b""
                if token:  # work a chunk here while the workers work theirs
                    number = int.from_bytes(token, "big")
                    try:
                        held[number] = (True, work(chunks[number]), -1)
                    except Exception as exc:
                        held[number] = (False, exc, -1)
                    continue
                if not waiting:
                    raise WorkerError(f"a worker ended before handing back chunk {due} of {count}")
                ready = _readable(waiting, None)
            for reader in ready:
                frame = _read_frame(reader)
                waiting.discard(reader)
                if frame is None:  # the end: it took no more chunks, or it died
                    continue
                ok, number, payload = frame
                held[number] = (ok, pickle.loads(payload), reader)
        finished = True
    finally:
        for reader in readers:
            os.close(reader)
        os.close(tokens_read)
        if tokens_write >= 0:
            os.close(tokens_write)
        for pid in pids:
            if not finished:
                with contextlib.suppress(ProcessLookupError):  # (already gone)
                    os.kill(pid, signal.SIGTERM)  # an early end (an error here, a closed pipe) stops them
            os.waitpid(pid, 0)


def _readable(fds: set[int], timeout: int | None) -> list[int]:
    """Those of ``fds`` with something to read (or at their end), waiting up to ``timeout`` ms
    (None: until one has)."""
    import select

    poll = select.poll()
    for fd in fds:
        poll.register(fd, select.POLLIN)
    return [fd for fd, _ in poll.poll(timeout)]


def _read_frame(fd: int) -> tuple[bool, int, bytes] | None:
    """The next frame from a worker's pipe; None at its end (or at a frame it did not finish)."""
    head = _read_exactly(fd, _FRAME_HEAD)
    if len(head) < _FRAME_HEAD:
        return None
    size = int.from_bytes(head[5:], "big")
    payload = _read_exactly(fd, size)
    if len(payload) < size:
        return None
    return head[0] == 1, int.from_bytes(head[1:5], "big"), payload


def _read_exactly(fd: int, size: int) -> bytes:
    data = os.read(fd, size)
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        data = os.read(fd, size - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def _serve(  # pragma: no cover - the child's side
    work: Callable[[list[Item]], Result], chunks: list[list[Item]], tokens: int, fd: int
) -> NoReturn:
    """A forked worker: takes chunks' numbers until none is left, hands each chunk's result back
    framed to ``fd`` (stops after an exception); then it ends without running this process's exit
    handlers (they belong to the parent)."""
    import pickle

    code = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while token := os.read(tokens, _TOKEN):
                number = int.from_bytes(token, "big")
                try:
                    payload, kind = pickle.dumps(work(chunks[number]), pickle.HIGHEST_PROTOCOL), 1
                except Exception as exc:
                    try:
                        payload = pickle.dumps(exc, pickle.HIGHEST_PROTOCOL)
                        pickle.loads(payload)
                    except Exception:
                        import traceback  # (here: a worker that fails no chunk never needs it)

                        payload = pickle.dumps(WorkerError(traceback.format_exc()), pickle.HIGHEST_PROTOCOL)
                    kind, code = 0, 1
                out.write(bytes((kind,)) + token + len(payload).to_bytes(_FRAME_HEAD - 1 - _TOKEN, "big"))
                out.write(payload)
                out.flush()
                if kind == 0:
                    break
    except BaseException:  # the parent went away (a closed pipe), or an interrupt: just end
        code = 1
    os._exit(code)
