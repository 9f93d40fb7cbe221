"""The daemon's parsing and classification on all cores: a batch's messages go to a pool of processes.

Parsing and classifying are the pipeline's CPU work; the return-path guard, the policy and the store
stay in the daemon. The workers are spawned (the daemon has threads and open connections, which a
fork would copy half-way) and each builds its parser once; or, started by ``bounce-processor run``
before it has any thread or connection, forked (``start_method="fork"``): each worker then
inherits the imports made so far instead of making them again (spawned, the two workers of a
2-CPU machine took ~0.6 s of CPU to be ready, rules compiled; forked, ~0.2 s), at the moment the
daemon itself is importing its store and opening its mailboxes on the same cores.

The rules travel with the work: each task carries the daemon's current rule set (``ShippedRules``:
the rules pickled once per rule set, and a digest of them). A worker compiles a rule set the first
time it sees its digest, so after SIGHUP (a valid reload) the next batch is classified with the new
rules in every worker, and an invalid rule file, which leaves the daemon's rules as they were,
leaves the workers' as they were too.

A batch comes back in its own order. Each message's outcome is one of:

- its error text ("cannot parse: ..." or "the parser raised ..."), as the in-thread path reports it;
- its events (``list[Event]``), when no rules were shipped (the daemon classifies);
- ``Classified``: its verdicts, and each verdict's recipient normalised as the store does it
  (the address, or "" and why not), so the daemon does neither;
- ``ClassifyFailed``: the rules raised on it (the message is quarantined, as in-thread).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import pickle
import traceback
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from processor.parse_settings import ParseSettings
from processor.records import Event, Verdict
from processor.workers import OrderedPool, default_jobs

if TYPE_CHECKING:
    from processor.classify import CompiledRules

__all__ = ["Classified", "ClassifyFailed", "ParseOutcome", "ParsePool", "ShippedRules", "ship_rules"]


class Classified(NamedTuple):
    """A message parsed and classified in a worker (a tuple: cheap to pickle)."""

    verdicts: list[Verdict]
    addresses: list[tuple[str, str]] | None
    """Per verdict: (the normalised recipient, "") or ("", why it is not an address); None when
    normalising raised something unexpected (the store then normalises, and reports it)."""


class ClassifyFailed(NamedTuple):
    """The rules raised on a message's events."""

    error: str
    """``TypeName: text``."""
    traceback: str


ParseOutcome = list[Event] | str | Classified | ClassifyFailed
"""A message's outcome from the pool (see the module's docstring)."""


@dataclass(frozen=True, slots=True)
class ShippedRules:
    """A rule set as it travels to the workers: pickled once, known by its digest."""

    digest: str
    blob: bytes
    lowercase_local: bool
    """How the store normalises addresses (``[database] lowercase_local_part``)."""


def ship_rules(compiled: CompiledRules, *, lowercase_local: bool) -> ShippedRules:
    blob = pickle.dumps(compiled.rules, protocol=pickle.HIGHEST_PROTOCOL)
    return ShippedRules(hashlib.blake2b(blob, digest_size=16).hexdigest(), blob, lowercase_local)


_parser: object = None
_rules: tuple[str, object] | None = None
"""(digest, CompiledRules) of the rule set this worker compiled last."""


_in_worker = False
"""This process is one of the pool's workers (not the daemon, which parses itself with one process)."""


def _start(settings: ParseSettings) -> None:
    global _parser, _in_worker  # noqa: PLW0603 - one parser per worker process, by design
    if _parser is None:
        import atexit
        import multiprocessing

        from processor.parse import Parser

        _parser = Parser(settings)
        if multiprocessing.parent_process() is not None:  # a worker, not the daemon (one process)
            _in_worker = True
            atexit.register(_exit_at_once)


def _exit_at_once() -> None:
    """A spawned worker's last exit handler: its work is done (the pool sent it the sentinel only
    once nothing was left, and it holds nothing but a parser), so it ends now rather than tearing
    its interpreter down module by module (~0.1 s that the daemon's shutdown waited for)."""
    import os
    import sys

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


def _compiled(shipped: ShippedRules) -> CompiledRules:
    global _rules  # noqa: PLW0603 - the worker's current rule set, by design
    from processor.classify import CompiledRules

    if _rules is None or _rules[0] != shipped.digest:
        _rules = (shipped.digest, CompiledRules(pickle.loads(shipped.blob)))
        if _in_worker:
            # what the worker keeps (imports, the parser, these rules: ~44,000 objects) out of the
            # collector's sight: its collections walk what each batch makes (the collector's time
            # 6 -> 3 us a message); an earlier rule set let go is still freed by its count
            gc.freeze()
    compiled = _rules[1]
    assert isinstance(compiled, CompiledRules)
    return compiled


def _addresses(verdicts: list[Verdict], lowercase_local: bool) -> list[tuple[str, str]] | None:
    from processor.addresses import AddressError, normalise_address

    out: list[tuple[str, str]] = []
    try:
        for verdict in verdicts:
            try:
                out.append((normalise_address(verdict.event.recipient, lowercase_local=lowercase_local), ""))
            except AddressError as exc:
                out.append(("", str(exc)))
    except Exception:  # the store normalises again, and reports what it raised as it always did
        return None
    return out


def _parse_chunk(chunk: list[bytes], rules: ShippedRules | None = None) -> list[ParseOutcome]:
    from processor.parse import ParseError, Parser

    assert isinstance(_parser, Parser), "the pool's initialiser runs first"
    compiled = _compiled(rules) if rules is not None else None  # an empty chunk with rules: warm-up
    out: list[ParseOutcome] = []
    for data in chunk:
        try:
            events = _parser.parse(data)
        except ParseError as exc:
            out.append(f"cannot parse: {exc}")
            continue
        except Exception as exc:
            out.append(f"the parser raised {type(exc).__name__}: {exc}")
            continue
        if compiled is None or rules is None:
            out.append(events)
            continue
        try:
            verdicts = [compiled.classify(event) for event in events]
        except Exception as exc:
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=12))
            out.append(ClassifyFailed(f"{type(exc).__name__}: {exc}", text))
            continue
        out.append(Classified(verdicts, _addresses(verdicts, rules.lowercase_local)))
    return out


class ParsePool:
    """``processes`` parser processes (default: one per CPU), started on first use.

    ``start_method``: "spawn" (a clean interpreter each), or "fork" only from a process with no
    other thread and nothing a worker must not share (``bounce-processor run`` at its start): with
    fork every worker is started at the first ``warm`` or ``submit``, before the pool's own
    threads."""

    def __init__(self, settings: ParseSettings, processes: int = 0, *, start_method: str = "spawn") -> None:
        self.processes = processes or default_jobs()
        self._pool: OrderedPool[bytes, ParseOutcome] = OrderedPool(
            _parse_chunk, self.processes, _start, (settings,), chunk=16, start_method=start_method
        )

    def warm(self, rules: ShippedRules | None = None) -> list[Future[list[ParseOutcome]]]:
        """Start every worker now (each imports the parser and builds it: about a second, spent
        while the daemon opens its database and mailboxes instead of after the first fetch); with
        ``rules``, each worker also compiles them now rather than in the first batch (called again
        once the daemon has loaded its rules). Returns at once; with one process nothing is started
        (it would parse here)."""
        if self.processes == 1:
            return []
        # one empty task per worker: the pool starts a process for each task no idle worker takes
        return [self._pool.submit([], rules) for _ in range(self.processes)]

    def submit(self, messages: list[bytes], rules: ShippedRules | None = None) -> Future[list[ParseOutcome]]:
        """The outcomes of one batch, in order, computed in the pool; with ``rules``, classified
        too (``Classified``), else the events."""
        return self._pool.submit(messages, rules)

    def close(self) -> None:
        self._pool.close()
