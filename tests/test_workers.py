"""The ordered process pool: results in input order, each item once, set-up once per process."""

from __future__ import annotations

import os

from processor.workers import OrderedPool

_set_up_in: list[int] = []


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
