"""``bounce-processor reprocess [--apply]``: re-classify stored events with the current rules and
show (or apply) the suppressions that would change."""

from __future__ import annotations

import argparse
from datetime import datetime

from processor.commands import CommandError


def _time(value: str) -> datetime:
    from processor.store.transfer import parse_time

    try:
        return parse_time(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "reprocess",
        help="re-classify stored events after a rule change; show or apply the changes",
        description="Replay stored events through the current rules and policy. Without --apply "
        "nothing is written; with it, events get their new verdicts and the suppressions change.",
    )
    p.add_argument("--apply", action="store_true", help="write the changes (default: only show them)")
    p.add_argument("--address", help="only this address")
    p.add_argument("--since", type=_time, help="only addresses with reports received since this time")
    p.add_argument("--database", metavar="URL", help="database URL (default: from the configuration)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from processor.classify import load_classifier
    from processor.commands.suppress_cmd import opened
    from processor.store.reprocess import reprocess

    with opened(args) as store:
        try:
            classifier = load_classifier(store.settings.rules)
        except Exception as exc:  # a rule file error is the user's to fix: one line
            raise CommandError(f"cannot load the rules: {exc}") from None
        plan = reprocess(store, classifier, apply=args.apply, address=args.address, since=args.since)
    for change in plan.changes:
        print(change.describe())
    verb = "applied" if plan.applied else "would apply (use --apply to write them)"
    print(f"{plan.events_seen} events replayed, {plan.events_reclassified} reclassified, "
          f"{plan.errors} classifier errors; {len(plan.changes)} suppression changes {verb}")
    return 0
