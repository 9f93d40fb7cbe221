"""The daemon's parsing on all cores: a batch's messages are parsed in a pool of processes.

Parsing is the pipeline's CPU work; classification (whose rules the daemon reloads), the
return-path guard and the store stay in the daemon. The workers are spawned (the daemon has
threads and open connections, which a fork would copy half-way) and each builds its parser once.
A batch comes back in its own order; a message the parser refuses or raises on comes back as
its error text, exactly as the in-thread path reports it.
"""

from __future__ import annotations

from concurrent.futures import Future

from processor.parse_settings import ParseSettings
from processor.records import Event
from processor.workers import OrderedPool, default_jobs

__all__ = ["ParseOutcome", "ParsePool"]

ParseOutcome = list[Event] | str
"""A message's events, or why it could not be parsed ("cannot parse: ...")."""

_parser: object = None


def _start(settings: ParseSettings) -> None:
    global _parser  # noqa: PLW0603 - one parser per worker process, by design
    if _parser is None:
        from processor.parse import Parser

        _parser = Parser(settings)


def _parse_chunk(chunk: list[bytes]) -> list[ParseOutcome]:
    from processor.parse import ParseError, Parser

    assert isinstance(_parser, Parser), "the pool's initialiser runs first"
    out: list[ParseOutcome] = []
    for data in chunk:
        try:
            out.append(_parser.parse(data))
        except ParseError as exc:
            out.append(f"cannot parse: {exc}")
        except Exception as exc:
            out.append(f"the parser raised {type(exc).__name__}: {exc}")
    return out


class ParsePool:
    """``processes`` parser processes (default: one per CPU), started on first use."""

    def __init__(self, settings: ParseSettings, processes: int = 0) -> None:
        self.processes = processes or default_jobs()
        self._pool: OrderedPool[bytes, ParseOutcome] = OrderedPool(
            _parse_chunk, self.processes, _start, (settings,), chunk=16, start_method="spawn"
        )

    def warm(self) -> list[Future[list[ParseOutcome]]]:
        """Start every worker now (each imports the parser and builds it: about a second, spent
        while the daemon opens its database and mailboxes instead of after the first fetch).
        Returns at once; with one process nothing is started (it would parse here)."""
        if self.processes == 1:
            return []
        # one empty task per worker: the pool starts a process for each task no idle worker takes
        return [self._pool.submit([]) for _ in range(self.processes)]

    def submit(self, messages: list[bytes]) -> Future[list[ParseOutcome]]:
        """The outcomes of one batch, in order, computed in the pool."""
        return self._pool.submit(messages)

    def close(self) -> None:
        self._pool.close()
