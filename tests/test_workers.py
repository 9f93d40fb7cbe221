"""The ordered process pools: results in input order, each item once, set-up once per process."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import closing

import pytest

from processor.workers import OrderedPool, WorkerError, chunk_bounds, forked_map

_set_up_in: list[int] = []


def _children() -> set[int]:
    """This process's live children (Linux /proc), zombies included: a child not waited for
    stays listed. Other tests' servers may be children too, so tests compare before and after."""
    found: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as f:
            found.update(int(pid) for pid in f.read().split())
    return found


def _set_up() -> None:
    _set_up_in.append(os.getpid())


def _square_with_pid(chunk: list[int]) -> list[tuple[int, int, int]]:
    return [(item, item * item, os.getpid()) for item in chunk]


def _fail_on_seven(chunk: list[int]) -> list[int]:
    if 7 in chunk:
        raise ValueError("seven")
    return chunk


def _square_with_pid_slowly(chunk: list[int]) -> list[tuple[int, int, int]]:
    time.sleep(0.005)  # (instant chunks may all go to the first worker when the machine is busy)
    return _square_with_pid(chunk)


def test_map_keeps_order_and_uses_several_processes() -> None:
    """Every item comes back once, in order, and the work is spread over the workers."""
    with OrderedPool(_square_with_pid_slowly, 2, _set_up, chunk=5) as pool:
        results = list(pool.map(range(200)))
    assert [(item, square) for item, square, _ in results] == [(i, i * i) for i in range(200)]
    assert len({pid for _, _, pid in results}) == 2
    assert os.getpid() not in {pid for _, _, pid in results}


def test_one_job_runs_here_and_sets_up_once() -> None:
    """With one job nothing is forked and the initialiser runs once, however many chunks."""
    _set_up_in.clear()
    with OrderedPool(_square_with_pid, 1, _set_up, chunk=3) as pool:
        results = list(pool.map(range(10)))
    assert {pid for _, _, pid in results} == {os.getpid()}
    assert _set_up_in == [os.getpid()]


def test_submit_returns_one_batch_in_order() -> None:
    """A submitted batch larger than a chunk is split over the workers and joined in order."""
    with OrderedPool(_square_with_pid, 2, _set_up, chunk=4) as pool:
        batch = pool.submit(list(range(50))).result(timeout=60)
    assert [item for item, _, _ in batch] == list(range(50))


def test_a_failing_chunk_raises_in_the_caller() -> None:
    """An exception in a worker reaches the caller at that chunk's place in the order."""
    seen: list[int] = []
    with OrderedPool(_fail_on_seven, 2, _set_up, chunk=2) as pool:
        try:
            for item in pool.map(range(20)):
                seen.append(item)
        except ValueError as exc:
            assert str(exc) == "seven"
        else:
            raise AssertionError("the failure was lost")
    assert seen == list(range(6))


_built_here: list[str] = []
_PARENT = os.getpid()
_slept: list[int] = []  # this process's: whether it slept on its first chunk yet
_failed: list[int] = []  # this process's: whether it failed yet


def _square_with_state(chunk: list[int]) -> list[tuple[int, int, int, list[str]]]:
    return [(item, item * item, os.getpid(), _built_here) for item in chunk]


def _sleep_on_the_first_chunk(seconds: float) -> None:
    if not _slept:
        _slept.append(1)
        time.sleep(seconds)


def _steady(chunk: list[int]) -> list[tuple[int, int, int, list[str]]]:
    """10 ms a chunk: no process can take them all before the others have started."""
    time.sleep(0.01)
    return _square_with_state(chunk)


def _slow_first_here(chunk: list[int]) -> list[tuple[int, int, int, list[str]]]:
    """This process is slow on the first chunk it takes: the worker takes the rest meanwhile."""
    if os.getpid() == _PARENT:
        _sleep_on_the_first_chunk(0.5)
    return _steady(chunk)


def test_forked_map_keeps_order_works_each_item_once_and_forks_with_the_state() -> None:
    """Every item comes back once, in order, one result per chunk, from at most ``jobs``
    processes (this one among them); the workers see what this process built before they
    started (nothing re-built)."""
    _built_here[:] = ["rules"]
    results = list(forked_map(_steady, list(range(203)), 3, chunk=10))
    assert len(results) == 21 and [len(r) for r in results] == [10] * 20 + [3]
    flat = [row for chunk in results for row in chunk]
    assert [(item, square) for item, square, _, _ in flat] == [(i, i * i) for i in range(203)]
    pids = {chunk[0][2] for chunk in results}
    assert 2 <= len(pids) <= 3 and _PARENT in pids
    assert all(len({pid for _, _, pid, _ in chunk}) == 1 for chunk in results)
    assert all(state == ["rules"] for _, _, _, state in flat)


@pytest.mark.parametrize(("count", "chunk", "jobs", "taper", "sizes"), [
    (203, 10, 3, 4, [10] * 17 + [3] + [2] * 15),  # the last 3 x 10 items in chunks of 10 // 4
    (203, 10, 3, 1, [10] * 20 + [3]),  # no taper
    (20, 10, 3, 4, [2] * 10),  # fewer items than jobs x chunk: all in small chunks
    (5, 10, 2, 4, [2, 2, 1]),
    (0, 10, 2, 4, []),
    (64, 32, 2, 4, [8] * 8),
    (65, 32, 2, 4, [1] + [8] * 8),
    (1000, 3, 2, 8, [3] * 331 + [1] * 7),  # 994 = 331 x 3 + 1, then the last 2 x 3 in chunks of one (3 // 8 is 0)
])
def test_chunk_bounds_cover_the_items_once_in_order_with_a_tapered_end(
    count: int, chunk: int, jobs: int, taper: int, sizes: list[int]
) -> None:
    bounds = chunk_bounds(count, chunk, jobs, taper)
    assert [i for start, end in bounds for i in range(start, end)] == list(range(count))
    assert [end - start for start, end in bounds] == sizes


def test_forked_map_with_a_taper_keeps_order_and_ends_in_small_chunks() -> None:
    _built_here[:] = ["rules"]
    results = list(forked_map(_steady, list(range(203)), 3, chunk=10, taper=4))
    assert [len(r) for r in results] == [10] * 17 + [3] + [2] * 15
    flat = [row for chunk in results for row in chunk]
    assert [(item, square) for item, square, _, _ in flat] == [(i, i * i) for i in range(203)]
    assert _PARENT in {chunk[0][2] for chunk in results}


def test_forked_map_shares_by_speed() -> None:
    """A process that is held up takes fewer chunks: while this one sleeps on its first chunk,
    the worker takes the others (fixed shares would give each process half)."""
    _slept.clear()
    results = list(forked_map(_slow_first_here, list(range(200)), 2, chunk=10))
    assert [row[0] for chunk in results for row in chunk] == list(range(200))
    done_here = [chunk[0][0] for chunk in results if chunk[0][2] == _PARENT]
    assert 1 <= len(done_here) <= 5


def _slow_first_in_a_worker(chunk: list[int]) -> list[tuple[int, int, float]]:
    """A worker is slow on the first chunk it takes; this process waits a little on its own
    first one, so that the worker has started and taken one."""
    _sleep_on_the_first_chunk(0.5 if os.getpid() != _PARENT else 0.3)
    return [(chunk[0] // 10, os.getpid(), time.monotonic())]


def test_forked_map_works_at_most_ahead_chunks_past_the_one_due() -> None:
    """While a worker is held up on a chunk, this process works no chunk more than ``ahead - 1``
    past it (what it holds is bounded), then waits; then all come back, in order."""
    _slept.clear()
    chunks = forked_map(_slow_first_in_a_worker, list(range(400)), 2, chunk=10, ahead=4)
    results = [row for chunk in chunks for row in chunk]
    assert [number for number, _, _ in results] == list(range(40))
    held_up, _, until = min((row for row in results if row[1] != _PARENT), default=(-1, 0, 0.0))
    assert held_up >= 0, "the worker took no chunk"
    meanwhile = [number for number, pid, done in results if pid == _PARENT and done < until]
    assert meanwhile and max(meanwhile) <= held_up + 3


def test_forked_map_one_job_or_one_chunk_runs_here() -> None:
    for jobs, items in ((1, list(range(50))), (4, list(range(5)))):
        results = list(forked_map(_square_with_state, items, jobs, chunk=10))
        assert {row[2] for chunk in results for row in chunk} == {os.getpid()}
        assert [row[0] for chunk in results for row in chunk] == items
    assert list(forked_map(_square_with_state, [], 2)) == []


class _Unpicklable(Exception):
    def __init__(self, a: int, b: int) -> None:  # pickle calls it with one argument: cannot be unpickled
        super().__init__(f"{a}+{b}")


def _fail_in(where: str) -> Callable[[list[int]], list[int]]:
    """Fails on the first chunk past the third that the failing side takes: a worker ("worker",
    "unpicklable", "dies": it ends without a word) or this process ("here"); the other side is slow
    on its first chunk, so that the failing side takes chunks."""

    def work(chunk: list[int]) -> list[int]:
        here = os.getpid() == _PARENT
        if here != (where == "here"):
            _sleep_on_the_first_chunk(0.5)
        elif chunk[0] >= 6 and not _failed:
            _failed.append(1)
            if where == "dies":
                os._exit(3)
            if where == "unpicklable":
                raise _Unpicklable(3, 4)
            raise ValueError(f"chunk {chunk[0] // 2} in {os.getpid()}")
        return chunk

    _slept.clear()
    _failed.clear()
    return work


@pytest.mark.parametrize("where", ["worker", "here"])
def test_forked_map_raises_an_exception_at_its_chunk(where: str) -> None:
    """The chunks before the failing one come back, in order; its exception is raised here as
    itself, whichever process met it; no worker is left."""
    before = _children()
    seen: list[int] = []
    with (
        pytest.raises(ValueError, match="chunk") as raised,
        closing(forked_map(_fail_in(where), list(range(40)), 2, chunk=2)) as results,
    ):
        for chunk in results:
            seen.extend(chunk)
    number, pid = (int(word) for word in str(raised.value).split()[1::2])
    assert number >= 3 and seen == list(range(2 * number))
    assert (pid == _PARENT) == (where == "here")
    assert _children() <= before  # every worker was waited for


def test_forked_map_hands_back_an_unpicklable_exception_as_worker_error() -> None:
    before = _children()
    with pytest.raises(WorkerError, match="_Unpicklable"):
        list(forked_map(_fail_in("unpicklable"), list(range(40)), 2, chunk=2))
    assert _children() <= before


def test_forked_map_a_worker_that_dies_is_reported_at_its_chunk() -> None:
    """A worker that ends without handing back a chunk it took: the chunks before it come back,
    then WorkerError at that chunk's place (not a hang)."""
    before = _children()
    seen: list[int] = []
    with (
        pytest.raises(WorkerError, match="ended before") as raised,
        closing(forked_map(_fail_in("dies"), list(range(40)), 2, chunk=2)) as results,
    ):
        for chunk in results:
            seen.extend(chunk)
    number = int(str(raised.value).split("chunk ")[1].split()[0])
    assert number >= 3 and seen == list(range(2 * number))
    assert _children() <= before


def test_forked_map_closed_early_stops_its_workers() -> None:
    """A reader that stops (an error, a closed pipe) closes the map: the workers, blocked on
    their full pipes, are stopped and waited for."""
    before = _children()
    results = forked_map(_square_with_state, list(range(400_000)), 3, chunk=10)
    assert next(results)[0][0] == 0
    assert len(_children() - before) == 2
    results.close()
    assert _children() <= before
