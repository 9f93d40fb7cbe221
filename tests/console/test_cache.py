"""The console's refreshing cache: computed once, served while stale, refreshed in the background,
and a failed refresh keeps the old value."""

from __future__ import annotations

import threading
import time

from processor.console.cache import Refreshing


def wait_until(condition: object, seconds: float = 5) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def test_computes_once_while_fresh() -> None:
    """A fresh value is served without computing again."""
    cache = Refreshing(60)
    calls: list[int] = []
    assert cache.get("k", lambda: calls.append(1) or len(calls)) == 1
    assert cache.get("k", lambda: calls.append(1) or len(calls)) == 1
    assert calls == [1]


def test_stale_value_is_served_and_refreshed_in_the_background() -> None:
    """Once stale, the old value is answered at once and the new one computed in another thread."""
    cache = Refreshing(0.0)
    cache.get("k", lambda: "old")
    release = threading.Event()

    def slow() -> str:
        release.wait(5)
        return "new"

    started = time.monotonic()
    assert cache.get("k", slow) == "old"
    assert time.monotonic() - started < 4  # did not wait for slow(), which blocks up to 5 s
    release.set()
    assert wait_until(lambda: cache.get("k", lambda: "newer") in ("new", "newer"))


def test_failed_refresh_keeps_the_old_value() -> None:
    """A refresh that raises leaves the cached value in place."""
    cache = Refreshing(0.0)
    cache.get("k", lambda: 7)

    def broken() -> int:
        raise RuntimeError("database gone")

    assert cache.get("k", broken) == 7
    time.sleep(0.1)
    cache.ttl = 60
    assert cache.get("k", lambda: 8) == 7
