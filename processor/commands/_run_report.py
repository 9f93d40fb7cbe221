"""What ``bounce-processor run --once`` shows a person at a terminal.

In a terminal (console log format, stdout and stderr TTYs) a long drain draws one progress bar
per mailbox (messages done of the total, rate, time left), the one-line-per-message log lines
appear only at DEBUG, and the run ends with a short summary and the commands to try next. It
learns everything from the daemon's own log events (``processor.logs.observe``), so the daemon
knows nothing of it; with ``--log-format json`` or without a terminal nothing changes.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

# per-message lines that the progress bars replace (still logged at DEBUG)
_PER_MESSAGE = frozenset({"message.processed", "message.duplicate", "mailbox.draining", "mailbox.drained",
                          "mailbox.disposed_recorded", "daemon.once_done", "daemon.purged", "daemon.started",
                          "daemon.stopped", "store.migrated"})


def wanted(args: Any) -> bool:
    """Whether the terminal report replaces the per-message lines for this run."""
    from processor import logs

    fmt, _ = logs.current()
    return bool(args.once and fmt == "console" and sys.stdout.isatty() and sys.stderr.isatty())


@dataclass
class _Quarantined:
    mailbox: str
    what: str
    error: str
    to: str


@dataclass
class RunReport:
    """Counts the run's events from the log and draws the progress bars while it runs."""

    verbose: bool = False
    """At DEBUG the per-message lines are printed too."""
    started: float = field(default_factory=time.monotonic)
    started_at: datetime = field(default_factory=lambda: datetime.now().astimezone())
    messages: int = 0
    duplicates: int = 0
    already: int = 0
    events: Counter[str] = field(default_factory=Counter)
    quarantined: list[_Quarantined] = field(default_factory=list)
    mailboxes: set[str] = field(default_factory=set)
    _progress: Any = None
    _tasks: dict[str, Any] = field(default_factory=dict)
    _stop_observing: Callable[[], None] | None = None
    _previous_stream: Any = None

    # ----------------------------------------------------------------- live

    def __enter__(self) -> RunReport:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )

        from processor import logs

        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
            console=Console(stderr=True), transient=False,
        )
        self._progress.start()
        # the progress display redirects sys.stderr to print above its bars; the log handler
        # holds the stream it was given, so it is pointed at the redirected one while it runs
        self._previous_stream = logs.redirect(sys.stderr)
        self._stop_observing = logs.observe(self.observe)
        return self

    def __exit__(self, *exc: object) -> None:
        from processor import logs

        if self._stop_observing is not None:
            self._stop_observing()
        if self._previous_stream is not None:
            logs.redirect(self._previous_stream)
        if self._progress is not None:
            self._progress.stop()

    def observe(self, level: str, event: MutableMapping[str, Any]) -> bool:
        """The logs' observer: count, advance the bars; False drops a per-message line."""
        name = str(event.get("event", ""))
        mailbox = str(event.get("mailbox", ""))
        if name == "mailbox.draining":
            self.mailboxes.add(mailbox)
            self._task(mailbox, int(event.get("candidates", 0)))
        elif name == "message.processed":
            self.messages += 1
            self.events.update(str(t) for t in event.get("bounce_types", ()))
            self._advance(mailbox, 1)
        elif name == "message.duplicate":
            self.duplicates += 1
            self._advance(mailbox, 1)
        elif name == "message.quarantined":
            what = event.get("source") or f"UID {event.get('uid')}"
            self.quarantined.append(_Quarantined(mailbox, str(what), str(event.get("error", "")),
                                                 str(event.get("to", ""))))
            self._advance(mailbox, 1)
        elif name == "mailbox.drained":
            self.already += int(event.get("already", 0))  # known to the ledger, not read again
            if mailbox in self._tasks:
                task = self._tasks[mailbox]
                self._progress.update(task, completed=self._progress.tasks[task].total)
        return self.verbose or name not in _PER_MESSAGE

    def _task(self, mailbox: str, total: int) -> None:
        if self._progress is None:
            return
        if mailbox in self._tasks:
            self._progress.reset(self._tasks[mailbox], total=total)
        else:
            self._tasks[mailbox] = self._progress.add_task(mailbox, total=total, rate="")

    def _advance(self, mailbox: str, count: int) -> None:
        if self._progress is None or mailbox not in self._tasks:
            return
        task_id = self._tasks[mailbox]
        self._progress.advance(task_id, count)
        task = self._progress.tasks[task_id]
        speed = task.speed
        self._progress.update(task_id, rate=f"{speed:,.0f} msg/s" if speed else "")

    # ----------------------------------------------------------------- the end

    def summary(self, settings: Any, config: str | None, new_entries: Counter[str] | None) -> str:
        """The text printed when the run is over."""
        seconds = max(time.monotonic() - self.started, 0.001)
        new = self.messages + len(self.quarantined)
        seen = self.duplicates + self.already
        total = new + seen
        plural = "es" if len(self.mailboxes) != 1 else ""
        lines = [f"Looked at {total:,} message{'s' if total != 1 else ''} in {len(self.mailboxes)} mailbox{plural} "
                 f"in {seconds:,.1f} s ({total / seconds:,.0f}/s): {new:,} new, {seen:,} recorded before "
                 "(never counted twice)."]
        if self.events:
            by_type = ", ".join(f"{kind} {count:,}" for kind, count in self.events.most_common())
            lines.append(f"  events:       {sum(self.events.values()):,}  ({by_type})")
        if new_entries is not None:
            if new_entries:
                by_reason = ", ".join(f"{reason} {count:,}" for reason, count in new_entries.most_common(8))
                more = " ..." if len(new_entries) > 8 else ""
                lines.append(f"  suppressed:   {sum(new_entries.values()):,} new address"
                             f"{'es' if sum(new_entries.values()) != 1 else ''}  ({by_reason}{more})")
            else:
                lines.append("  suppressed:   no new address")
        if self.quarantined:
            lines.append(f"  quarantined:  {len(self.quarantined):,} (kept, never deleted):")
            for item in self.quarantined[:5]:
                where = _quarantine_place(settings, item)
                lines.append(f"    {item.what}: {item.error[:100]} -> {where}")
            if len(self.quarantined) > 5:
                lines.append(f"    ... and {len(self.quarantined) - 5} more (see the log)")
        prefix = "bounce-processor" + (f" --config {config}" if config else "")
        api = settings.api
        lines += [
            "",
            "Next:",
            f"  {prefix} suppress list            the suppression list",
            f"  {prefix} suppress history ADDRESS why an address is suppressed",
            f"  {prefix} explain FILE             which rule decided a message, and why",
            f"  {prefix} api                      the HTTP API senders consult "
            f"(http://{api.host}:{api.port})",
        ]
        return "\n".join(lines)


def _quarantine_place(settings: Any, item: _Quarantined) -> str:
    if item.to.startswith("("):
        return item.to
    box = settings.mailboxes.get(item.mailbox.split("/")[0]) if settings.mailboxes else None
    path: Path | None = getattr(box, "path", None)
    if path is not None:
        return str(path / item.to) + "/"
    return f"folder {item.to} of {item.mailbox}"
