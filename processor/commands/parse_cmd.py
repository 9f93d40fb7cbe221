"""``bounce-processor parse [--jsonl] PATH...``: print the events each message reports."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from json.encoder import encode_basestring
from operator import attrgetter
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


_FIELDS: tuple[tuple[str, Callable[[Any], Any]], ...] = tuple(
    (key, attrgetter(path))
    for key, path in (
        ("recipient", "event.recipient"),
        ("original_recipient", "event.original_recipient"),
        ("kind", "event.kind"),
        ("action", "event.dsn_action"),
        ("status", "event.status"),
        ("reply_code", "event.reply_code"),
        ("smtp_command", "event.smtp_command"),
        ("diagnostic", "event.diagnostic"),
        ("reason", "reason"),
        ("bounce_type", "bounce_type"),
        ("rule_id", "rule_id"),
        ("feedback_type", "event.feedback_type"),
        ("remote_mta", "event.remote_mta"),
        ("reporting_mta", "event.reporting_mta"),
        ("mta", "event.mta"),
        ("message_id", "event.message_id"),
        ("subject", "event.original.subject"),
        ("source_ip", "event.source_ip"),
        ("arrival_date", "event.arrival_date"),
        ("last_attempt", "event.last_attempt"),
    )
)
"""The record's text fields after "source", in order, each read from the verdict: the one list
that ``event_record`` and ``jsonl_line`` both write."""


def event_record(source: str, verdict: Any) -> dict[str, Any]:
    """The JSON contract of ``parse --jsonl`` (read by tools/bounce_accuracy.py and by users)."""
    record: dict[str, Any] = {"source": source}
    for key, read in _FIELDS:
        record[key] = str(read(verdict))
    record["correlation"] = dict(verdict.event.original.correlation)
    return record


_JSON = json.JSONEncoder(ensure_ascii=False)
"""What ``json.dumps(record, ensure_ascii=False)`` uses, built once rather than per line."""
_quote: Callable[[str], str] = encode_basestring
"""A str as a JSON string, as ``json.dumps(..., ensure_ascii=False)`` writes it."""
_KEYS = tuple((_quote(key) + ": ", read) for key, read in _FIELDS)


def jsonl_line(source: str, verdict: Any) -> str:
    """``json.dumps(event_record(source, verdict), ensure_ascii=False)``, written out from the same
    field list with the standard encoder's string quoting and separators, without a dict and an
    encoder per line (about a third of the cost; a test holds the two equal)."""
    q = _quote
    pairs = ", ".join(f"{q(k)}: {q(v)}" for k, v in dict(verdict.event.original.correlation).items())
    fields = ", ".join([key + q(read(verdict)) for key, read in _KEYS])
    return f'{{"source": {q(source)}, {fields}, "correlation": {{{pairs}}}}}'


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
                return _JSON.encode(record) + "\n", error
            return "", error
        classify = self.classifier.classify
        if self.jsonl:
            out = [jsonl_line(source, classify(event)) for event in events]
        else:
            out = [_human(event_record(source, classify(event))) for event in events]
        return ("\n".join(out) + "\n" if out else ""), ""


_worker: _Worker | None = None


def _start_worker(sections: tuple[Any, Any], jsonl: bool) -> None:
    """Builds this process's worker; a forked worker already has its parent's and keeps it."""
    global _worker  # noqa: PLW0603 - one per process, by design
    if _worker is None:
        _worker = _Worker(sections, jsonl)


Item = tuple[str, bytes | None]
"""What a worker is handed: a file for it to read (``(path, None)``), or a message that only this
process could read (``(origin, data)``: standard input)."""


Output = tuple[bytes, str, str, str]
"""(stdout bytes, stderr text, why the run stops here: '' or a file that cannot be read, a big
file for this process to stream: '' or its path)."""


WORKER_READS_BELOW = 64 * 1024
"""mbox files smaller than this are read by the workers, as is every file of one message, whatever
its size (its output is a few lines); a bigger mbox, which may hold many messages, is streamed by
this process message by message, in its turn, so that neither its messages nor its output are
ever held whole."""


TAPER = 4
"""The last chunks (one per process) are cut in four: the processes end within ~2 ms of each
other instead of ~9 ms (a chunk of 32 bounces)."""


def _encoding() -> tuple[str, str]:
    """What standard output encodes text with (the workers hand back bytes ready to write)."""
    return getattr(sys.stdout, "encoding", None) or "utf-8", getattr(sys.stdout, "errors", None) or "strict"


def _work(chunk: list[Item]) -> list[Output]:
    """The output of each item of a chunk, as bytes; a file's messages (a small mbox has several)
    are joined in order, and so are the outputs of consecutive items that report no error. A
    file that cannot be read ends the run there, after the output of those before it."""
    from processor.sources.files import SourceError, is_mbox, read_file, read_small

    assert _worker is not None, "the worker is built before the work starts"
    encoding, errors = _encoding()
    out: list[Output] = []
    texts: list[str] = []

    def flush(error: str = "", fatal: str = "", stream: str = "") -> None:
        out.append(("".join(texts).encode(encoding, errors), error, fatal, stream))
        texts.clear()

    for name, data in chunk:
        if data is not None:
            text, error = _worker.lines(name, data)
            texts.append(text)
            if error:
                flush(error)
            continue
        try:
            messages = read_small(name, WORKER_READS_BELOW)
        except SourceError as exc:
            flush("", str(exc))
            break
        if messages is None and is_mbox(name):  # a big mbox: the parent streams it
            flush(stream=name)
            continue
        file_errors: list[str] = []
        try:
            # a big file of one message is read here too, whatever its size
            for message in read_file(Path(name)) if messages is None else messages:
                text, error = _worker.lines(message.origin, message.data)
                texts.append(text)
                if error:
                    file_errors.append(error)
        except SourceError as exc:
            flush("".join(file_errors), str(exc))
            break
        if file_errors:
            flush("".join(file_errors))
    if texts or not out:
        flush()
    return out


def _items(paths: list[str]) -> tuple[list[Item], str]:
    """Every file (by name, for a worker to read) and standard input's message, in command-line
    order; and why the list stops early ('' if it does not: a path that does not exist)."""
    from processor.sources.files import SourceError, iter_files

    items: list[Item] = []
    for given in paths:
        try:
            for path in iter_files(given):
                items.append(("-", sys.stdin.buffer.read()) if path is None else (path, None))
        except SourceError as exc:
            return items, str(exc)
    return items, ""


def _stream(path: str) -> Iterator[tuple[bytes, str, str]]:
    """The output of a big file's messages, read and parsed here one at a time (stdout bytes,
    stderr text, '' or why the run stops)."""
    from processor.sources.files import SourceError, read_file

    assert _worker is not None
    encoding, errors = _encoding()
    try:
        for message in read_file(Path(path)):
            text, error = _worker.lines(message.origin, message.data)
            yield text.encode(encoding, errors), error, ""
    except SourceError as exc:
        yield b"", "", str(exc)


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
    import gc
    from contextlib import closing

    from processor.workers import default_jobs, forked_map

    # The start-up (imports, rules) allocates much and frees next to nothing: the collections it
    # would trigger (~2.4 ms of CPU, before the workers fork) find nothing to collect.
    collecting = gc.isenabled()
    gc.disable()
    try:
        sections = _sections(args)
        jobs = args.jobs or default_jobs()
        _start_worker(sections, args.jsonl)  # rules errors show here, before any worker starts
        items, stop = _items(args.paths)
        # What the start-up built lives as long as the command: no collection needs to look at
        # it again (a full one over it cost ~18 ms in a --jobs 1 run of 5,000 bounces), and the
        # forked workers share its pages (a collection would copy them).
        gc.freeze()
    finally:
        if collecting:
            gc.enable()
    out, err = sys.stdout, sys.stderr
    write = out.buffer.write if hasattr(out, "buffer") else (lambda data: out.write(data.decode(*_encoding())))
    with closing(forked_map(_work, items, jobs, taper=TAPER)) as results:
        for outputs in results:
            for text, error, fatal, stream in outputs:
                if error:
                    err.write(error)
                if text:
                    write(text)
                for big_text, big_error, big_fatal in _stream(stream) if stream else ():
                    if big_error:
                        err.write(big_error)
                    if big_text:
                        write(big_text)
                    if big_fatal:
                        out.flush()
                        raise CommandError(big_fatal, exit_code=1)
                if fatal:
                    out.flush()
                    raise CommandError(fatal, exit_code=1)
    out.flush()
    if stop:
        raise CommandError(stop, exit_code=1)
    return 0
