"""``bounce-processor parse [--jsonl] PATH...``: print the events each message reports."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import Any, TextIO

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


def iter_records(paths: list[str], settings: Any, errors: TextIO) -> Iterator[dict[str, Any]]:
    from processor.classify import RulesError, load_classifier
    from processor.parse import ParseError, Parser
    from processor.sources.files import SourceError, iter_path

    parser = Parser(settings.parse)
    try:
        classifier = load_classifier(settings.rules)
    except RulesError as exc:
        raise CommandError(str(exc), exit_code=1) from None
    for given in paths:
        try:
            for message in iter_path(given):
                source = message.origin
                try:
                    events = parser.parse(message.data)
                except ParseError as exc:
                    errors.write(f"bounce-processor: {source}: cannot parse: {exc}\n")
                    yield {"source": source, "bounce_type": "none", "error": str(exc)}
                    continue
                for event in events:
                    yield event_record(source, classifier.classify(event))
        except SourceError as exc:
            raise CommandError(str(exc), exit_code=1) from None


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    out = sys.stdout
    write = out.write
    for record in iter_records(args.paths, settings, sys.stderr):
        if args.jsonl:
            write(json.dumps(record, ensure_ascii=False))
            write("\n")
        elif "error" not in record:
            write(_human(record) + "\n")
    out.flush()
    return 0
