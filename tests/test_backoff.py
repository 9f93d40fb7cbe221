"""The one retry delay shared by mailbox, database and policy-service reconnects."""

from __future__ import annotations

from processor.backoff import Backoff


def test_delay_doubles_from_initial_up_to_maximum_without_jitter() -> None:
    """Without jitter the n-th failure in a row waits initial * 2**(n-1), capped at maximum."""
    retry = Backoff(initial=1.0, maximum=60.0)
    assert [retry.failed() for _ in range(8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]


def test_success_starts_the_sequence_over() -> None:
    """After ``succeeded`` the next failure waits ``initial`` again."""
    retry = Backoff(initial=0.5, maximum=30.0)
    retry.failed()
    retry.failed()
    retry.succeeded()
    assert retry.delay() == 0.0
    assert retry.failed() == 0.5


def test_jitter_stays_between_half_and_all_of_the_delay() -> None:
    """With jitter each wait lies in [ceiling/2, ceiling] and varies."""
    retry = Backoff(initial=2.0, maximum=8.0, jitter=True, failures=3)
    delays = [retry.delay() for _ in range(200)]
    assert all(4.0 <= d <= 8.0 for d in delays)
    assert max(delays) - min(delays) > 1.0


def test_many_failures_never_overflow() -> None:
    """A service failing for days keeps waiting ``maximum`` (no float overflow)."""
    retry = Backoff(initial=1.0, maximum=30.0, failures=5000)
    assert retry.failed() == 30.0
