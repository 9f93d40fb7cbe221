"""The ordered process pools: results in input order, each item once, set-up once per process."""

from __future__ import annotations

import os
from contextlib import closing

import pytest

from processor.workers import OrderedPool, WorkerError, striped_map

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


def test_map_keeps_order_and_uses_several_processes() -> None:
    """Every item comes back once, in order, and the work is spread over the workers."""
    with OrderedPool(_square_with_pid, 2, _set_up, chunk=5) as pool:
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


def _square_with_state(chunk: list[int]) -> list[tuple[int, int, int, list[str]]]:
    return [(item, item * item, os.getpid(), _built_here) for item in chunk]


def test_striped_map_keeps_order_works_each_item_once_and_forks_with_the_state() -> None:
    """Every item comes back once, in order, one result per chunk, from as many forked processes
    as jobs; the workers see what this process built before they started (nothing re-built)."""
    _built_here[:] = ["rules"]
    results = list(striped_map(_square_with_state, list(range(203)), 3, chunk=10))
    assert len(results) == 21 and [len(r) for r in results] == [10] * 20 + [3]
    flat = [row for chunk in results for row in chunk]
    assert [(item, square) for item, square, _, _ in flat] == [(i, i * i) for i in range(203)]
    pids = [chunk[0][2] for chunk in results]
    assert len(set(pids)) == 3 and os.getpid() not in pids
    assert pids[:3] * 7 == pids  # chunk i by worker i % jobs
    assert all(state == ["rules"] for _, _, _, state in flat)


def test_striped_map_one_job_or_one_chunk_runs_here() -> None:
    for jobs, items in ((1, list(range(50))), (4, list(range(5)))):
        results = list(striped_map(_square_with_state, items, jobs, chunk=10))
        assert {row[2] for chunk in results for row in chunk} == {os.getpid()}
        assert [row[0] for chunk in results for row in chunk] == items
    assert list(striped_map(_square_with_state, [], 2)) == []


def _fail_on_chunk_with_seven(chunk: list[int]) -> list[int]:
    if 7 in chunk:
        raise ValueError("seven")
    return chunk


class _Unpicklable(Exception):
    def __init__(self, a: int, b: int) -> None:  # pickle calls it with one argument: cannot be unpickled
        super().__init__(f"{a}+{b}")


def _fail_unpicklably(chunk: list[int]) -> list[int]:
    if 7 in chunk:
        raise _Unpicklable(3, 4)
    return chunk


def test_striped_map_raises_a_worker_exception_at_its_chunk() -> None:
    """The chunks before the failing one come back; its exception is raised here, as itself, or
    as WorkerError with the worker's traceback when it cannot be pickled; no worker is left."""
    before = _children()
    seen: list[int] = []
    with (
        pytest.raises(ValueError, match="seven"),
        closing(striped_map(_fail_on_chunk_with_seven, list(range(40)), 2, chunk=2)) as results,
    ):
        for chunk in results:
            seen.extend(chunk)
    assert seen == list(range(6))
    with pytest.raises(WorkerError, match="_Unpicklable"):
        list(striped_map(_fail_unpicklably, list(range(40)), 2, chunk=2))
    assert _children() <= before  # every worker was waited for


def test_striped_map_closed_early_stops_its_workers() -> None:
    """A reader that stops (an error, a closed pipe) closes the map: the workers, blocked on
    their full pipes, are stopped and waited for."""
    before = _children()
    results = striped_map(_square_with_state, list(range(100_000)), 2, chunk=10)
    assert next(results)[0][0] == 0
    assert len(_children() - before) == 2
    results.close()
    assert _children() <= before
