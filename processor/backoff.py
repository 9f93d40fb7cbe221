"""One retry delay for every reconnect: mailboxes (IMAP and local sources), the daemon's database,
the policy service's refresh.

The n-th failure in a row waits ``initial * 2 ** (n - 1)`` seconds, never more than ``maximum``;
with ``jitter`` the wait is drawn between half and all of that, so that daemons that failed
together do not come back together.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(slots=True)
class Backoff:
    """Counts failures in a row; ``failed()`` gives the next wait, ``succeeded()`` starts over."""

    initial: float
    maximum: float
    jitter: bool = False
    failures: int = 0

    def delay(self) -> float:
        """The wait after the failures counted so far (0 before the first)."""
        if self.failures == 0:
            return 0.0
        ceiling = min(self.maximum, self.initial * 2.0 ** min(self.failures - 1, 64))  # no float overflow
        if self.jitter:
            return ceiling / 2 + random.uniform(0, ceiling / 2)
        return ceiling

    def failed(self) -> float:
        """Count one more failure; the wait before the next try."""
        self.failures += 1
        return self.delay()

    def succeeded(self) -> None:
        self.failures = 0
