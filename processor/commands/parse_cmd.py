"""``bounce-processor parse [--jsonl] PATH...``: print the events each message reports."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from processor.commands import CommandError, settings_from


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "parse",
        help="parse bounce, complaint and auto-reply messages and print their events",
        description="Read .eml files, Maildirs, mbox files, directories or - (stdin) and print "
        "one line per event.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--jsonl", action="store_true", help="one JSON object per event per line")
    p.add_argument(
        "--jobs", "-j", type=_jobs, default=None, metavar="N",
        help="processes that parse in parallel (default: the number of CPUs); output order is kept",
    )
    # parse reports problems on stderr itself; it skips the logging set-up to start faster
    p.set_defaults(handler=run, configure_logging=False)


def event_record(source: str, verdict: Any) -> dict[str, Any]:
    """The JSON contract of ``parse --jsonl`` (read by tools/bounce_accuracy.py and by users)."""
    event = verdict.event
    original = event.original
    return {
        "source": source,
        "recipient": event.recipient,
        "original_recipient": event.original_recipient,
        "kind": str(event.kind),
        "action": event.dsn_action,
        "status": event.status,
        "reply_code": event.reply_code,
        "smtp_command": event.smtp_command,
        "diagnostic": event.diagnostic,
        "reason": verdict.reason,
        "bounce_type": str(verdict.bounce_type),
        "rule_id": verdict.rule_id,
        "feedback_type": event.feedback_type,
        "remote_mta": event.remote_mta,
        "reporting_mta": event.reporting_mta,
        "mta": event.mta,
        "message_id": event.message_id,
        "subject": original.subject,
        "source_ip": event.source_ip,
        "arrival_date": event.arrival_date,
        "last_attempt": event.last_attempt,
        "correlation": dict(original.correlation),
    }


def _human(record: dict[str, Any]) -> str:
    bits = [
        record["source"],
        record["bounce_type"],
        record["reason"],
        record["recipient"] or "-",
        record["status"] or "-",
        record["reply_code"] or "-",
    ]
    line = "  ".join(bits)
    if record["diagnostic"]:
        line += f"  {record['diagnostic'][:160]}"
    return line


def _jobs(value: str) -> int:
    try:
        jobs = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of processes: {value!r}") from None
    if jobs < 1:
        raise argparse.ArgumentTypeError(f"--jobs must be at least 1, not {jobs}")
    return jobs


class _Worker:
    """What one process needs to turn messages into output lines, built once per process."""

    def __init__(self, sections: tuple[Any, Any], jsonl: bool) -> None:
        from processor.classify import RulesError, load_classifier
        from processor.parse import ParseError, Parser

        parse_settings, rules_settings = sections
        self.parser = Parser(parse_settings)
        try:
            self.classifier = load_classifier(rules_settings)
        except RulesError as exc:
            raise CommandError(str(exc), exit_code=1) from None
        self.parse_error = ParseError
        self.jsonl = jsonl

    def lines(self, source: str, data: bytes) -> tuple[str, str]:
        """(what goes to stdout, what goes to stderr) for one message."""
        try:
            events = self.parser.parse(data)
        except self.parse_error as exc:
            error = f"bounce-processor: {source}: cannot parse: {exc}\n"
            if self.jsonl:
                record = {"source": source, "bounce_type": "none", "error": str(exc)}
                return json.dumps(record, ensure_ascii=False) + "\n", error
            return "", error
        out: list[str] = []
        for event in events:
            record = event_record(source, self.classifier.classify(event))
            out.append(json.dumps(record, ensure_ascii=False) if self.jsonl else _human(record))
        return ("\n".join(out) + "\n" if out else ""), ""


_worker: _Worker | None = None


def _start_worker(sections: tuple[Any, Any], jsonl: bool) -> None:
    """Builds this process's worker; a forked worker already has its parent's and keeps it."""
    global _worker  # noqa: PLW0603 - one per process, by design
    if _worker is None:
        _worker = _Worker(sections, jsonl)


Item = tuple[str, bytes | None]
"""What the pool is handed: a file for the worker to read (``(path, None)``), or a message that
only this process could read (``(origin, data)``: standard input)."""


Output = tuple[str, str, str]
"""(stdout text, stderr text, why the run stops here: '' or a file that cannot be read)."""


def _work(chunk: list[Item]) -> list[Output]:
    """The output of each item; a file's messages (a small mbox has several) are joined in
    order. A file that cannot be read ends the run there, after the output of those before it."""
    from processor.sources.files import SourceError, read_file

    assert _worker is not None, "the pool's initialiser runs first"
    out: list[Output] = []
    for name, data in chunk:
        if data is not None:
            out.append((*_worker.lines(name, data), ""))
            continue
        texts: list[str] = []
        errors: list[str] = []
        try:
            for message in read_file(Path(name)):
                text, error = _worker.lines(message.origin, message.data)
                texts.append(text)
                errors.append(error)
        except SourceError as exc:
            out.append(("".join(texts), "".join(errors), str(exc)))
            break
        out.append(("".join(texts), "".join(errors), ""))
    return out


WORKER_READS_BELOW = 64 * 1024
"""Files smaller than this are read by the workers (so that reading is spread over the cores
too); a bigger one, which may be an mbox of many messages, is streamed from here message by
message, so that neither its messages nor its output are ever held whole."""


def _items(paths: list[str]) -> Iterator[Item]:
    """Every file (small ones by name, for a worker to read; the messages of big ones) and
    standard input's message, in command-line order."""
    from processor.sources.files import SourceError, iter_files, read_file

    for given in paths:
        try:
            for path in iter_files(given):
                if path is None:
                    yield "-", sys.stdin.buffer.read()
                    continue
                try:
                    small = os.stat(path).st_size < WORKER_READS_BELOW
                except OSError:
                    small = True  # the worker reports it, in its turn
                if small:
                    yield str(path), None
                else:
                    yield from ((message.origin, message.data) for message in read_file(path))
        except SourceError as exc:
            raise CommandError(str(exc), exit_code=1) from None


def _defaults_only(args: argparse.Namespace) -> bool:
    """No configuration file and no BOUNCE_PARSE* or BOUNCE_RULES* variable: every [parse] and
    [rules] value is its default."""
    if getattr(args, "config", None) is not None or os.environ.get("BOUNCE_PROCESSOR_CONFIG"):
        return False
    return not any(name.upper().startswith(("BOUNCE_PARSE", "BOUNCE_RULES")) for name in os.environ)


def _sections(args: argparse.Namespace) -> tuple[Any, Any]:
    """[parse] and [rules]: read on their own (parse answers at once), or from the full settings
    when only those can say."""
    if _defaults_only(args):
        return None, None  # Parser(None) and load_classifier(None) use the defaults, without pydantic
    from processor.parse_settings import SectionsError, read_parse_sections

    try:
        sections = read_parse_sections(getattr(args, "config", None))
    except SectionsError as exc:
        raise CommandError(str(exc)) from None
    if sections is not None:
        return sections
    settings = settings_from(args)
    return settings.parse, settings.rules


def run(args: argparse.Namespace) -> int:
    from processor.workers import OrderedPool, default_jobs

    sections = _sections(args)
    jobs = args.jobs or default_jobs()
    _start_worker(sections, args.jsonl)  # rules errors show here, before any worker starts
    out, err = sys.stdout, sys.stderr
    if jobs > 1:
        import gc

        gc.freeze()  # forked workers share the parent's objects: no collection copies their pages
    with OrderedPool(_work, jobs, _start_worker, (sections, args.jsonl)) as pool:
        for text, error, fatal in pool.map(_items(args.paths)):
            if error:
                err.write(error)
            if text:
                out.write(text)
            if fatal:
                out.flush()
                raise CommandError(fatal, exit_code=1)
    out.flush()
    return 0
