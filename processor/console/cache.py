"""A small per-process cache for the console's few sums that are not a handful of rows (the
window totals of closed days, entries in force by reason): computed once, then served while a
background thread refreshes them when older than ``ttl`` (stale-while-revalidate)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import structlog

__all__ = ["Refreshing"]

log = structlog.get_logger(__name__)
T = TypeVar("T")


class Refreshing:
    def __init__(self, ttl_seconds: float, max_entries: int = 64) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._values: dict[Hashable, tuple[float, Any]] = {}
        self._refreshing: set[Hashable] = set()
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The cached value (refreshed in the background once stale), or ``compute()`` now."""
        with self._lock:
            hit = self._values.get(key)
            stale = hit is not None and time.monotonic() - hit[0] > self.ttl and key not in self._refreshing
            if stale:
                self._refreshing.add(key)
        if hit is None:
            value = compute()
            self._put(key, value)
            return value
        if stale:
            threading.Thread(target=self._refresh, args=(key, compute), name="console-refresh", daemon=True).start()
        result: T = hit[1]
        return result

    def _put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            if len(self._values) >= self.max_entries and key not in self._values:
                oldest = min(self._values, key=lambda k: self._values[k][0])
                del self._values[oldest]
            self._values[key] = (time.monotonic(), value)

    def _refresh(self, key: Hashable, compute: Callable[[], Any]) -> None:
        try:
            self._put(key, compute())
        except Exception as exc:  # a failed refresh keeps the old value; the next stale read retries
            log.warning("console.refresh_failed", error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        finally:
            with self._lock:
                self._refreshing.discard(key)
