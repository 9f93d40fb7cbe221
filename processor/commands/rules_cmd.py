"""``bounce-processor rules check|test`` and ``bounce-processor explain``: review classification rules.

- ``rules check [DIR...]`` validates rule files and prints every problem as file:line.
- ``rules test [CORPUS...]`` classifies samples/expected.yaml (and labelled corpora: a directory
  with messages/*.eml and expected.jsonl) and prints confusion tables of reason and bounce type.
- ``explain FILE...`` shows, per event, the parsed fields, the rule that matched and why, and the
  rules that would have matched next.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from processor.commands import CommandError, settings_from

UNFOUND = "(no event)"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rules = sub.add_parser(
        "rules",
        help="check and test the classification rules",
        description="Validate rule files, or measure them against labelled samples.",
    )
    actions = rules.add_subparsers(dest="rules_command", metavar="ACTION")
    actions.required = True

    check = actions.add_parser(
        "check",
        help="validate rule files; print each problem as file:line",
        description="Validate every rule file of the given directories (default: the configured "
        "rule directories and the defaults). Exit code 1 on any problem.",
    )
    check.add_argument("dirs", nargs="*", metavar="DIR", type=Path)
    check.set_defaults(handler=run_check)

    test = actions.add_parser(
        "test",
        help="classify labelled samples and print confusion tables",
        description="Parse and classify samples/expected.yaml and any labelled corpus given (a "
        "directory with messages/*.eml and expected.jsonl, or another expected.yaml), then print "
        "expected-vs-got tables for reason and bounce_type. Exit code 1 when a sample of "
        "samples/expected.yaml gets another result than it lists.",
    )
    test.add_argument("corpora", nargs="*", metavar="PATH", type=Path)
    test.add_argument("--no-samples", action="store_true", help="skip samples/expected.yaml")
    test.add_argument("--misses", type=int, default=20, metavar="N", help="list up to N mismatches")
    test.set_defaults(handler=run_test)

    suggest = actions.add_parser(
        "suggest",
        help="propose rules for stored replies that no rule decided or an operator corrected",
        description="Group the stored failures and delays of the period that no rule decided, or "
        "whose address an operator later added or removed by hand, by their normalised reply text "
        "(addresses, hosts, IPs, numbers and ids masked); print, largest group first, a proposed "
        "rule with its count and examples, as a rule file to review and paste into your own rule "
        "directory. 'rules test' then shows what it changes.",
    )
    suggest.add_argument("--since", default="30d", metavar="AGE", help="period to read: 30d, 12h, 2w (default 30d)")
    suggest.add_argument("--limit", type=int, default=20, metavar="N", help="propose at most N rules (default 20)")
    suggest.add_argument("--examples", type=int, default=3, metavar="N", help="examples per group (default 3)")
    suggest.add_argument("--database", metavar="URL", help="database URL (default: from the configuration)")
    suggest.set_defaults(handler=run_suggest)

    explain = sub.add_parser(
        "explain",
        help="show which rule classifies each event of a message, and why",
        description="For each event of each message: the parsed fields, the rule that matched, "
        "which condition matched what text, and the next rules that would also have matched.",
    )
    explain.add_argument("paths", nargs="+", metavar="FILE")
    explain.add_argument("--next", type=int, default=3, metavar="N", help="show up to N next matches")
    explain.set_defaults(handler=run_explain)


def _load(settings: Any) -> Any:
    from processor.classify import RulesError, load_classifier

    try:
        return load_classifier(settings.rules)
    except RulesError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        raise CommandError(
            f"{len(exc.problems)} problem(s) in the rule files; run 'bounce-processor rules check'", 1
        ) from None


# --- rules check ----------------------------------------------------------------------------------


def run_check(args: argparse.Namespace) -> int:
    from processor.classify import rule_directories
    from processor.classify.engine import CompiledRules
    from processor.classify.loader import load_rules, rule_files
    from processor.classify.schema import RulesError

    configured = rule_directories(settings_from(args).rules)
    directories = list(args.dirs) if args.dirs else configured
    rules, problems = load_rules(directories, phrase_directories=configured)
    if not problems:
        try:
            CompiledRules(rules)
        except RulesError as exc:
            problems = exc.problems
    for problem in problems:
        print(problem)
    files = sum(len(rule_files(d)) for d in directories if d.is_dir())
    where = ", ".join(str(d) for d in directories)
    if problems:
        print(f"{len(problems)} problem(s) in {files} rule file(s) ({where})")
        return 1
    print(f"{len(rules)} rules in {files} file(s) are valid ({where})")
    return 0


# --- rules suggest --------------------------------------------------------------------------------


def run_suggest(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from processor.classify.schema import PatternError, parse_ttl
    from processor.classify.suggest import group_events, render
    from processor.commands.suppress_cmd import opened

    try:
        since = datetime.now(UTC) - parse_ttl(args.since)
    except PatternError as exc:
        raise CommandError(f"--since {args.since!r}: {exc}", exit_code=2) from None
    with opened(args) as store:
        rows = store.events_to_review(since)
    groups = group_events(
        (
            (str(e.received_at)[:19], e.recipient, e.kind, e.status, e.diagnostic, correction)
            for e, correction in rows
        ),
        examples=max(0, args.examples),
    )
    sys.stdout.write(render(groups, max(1, args.limit)))
    return 0


# --- rules test -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Expectation:
    """What one labelled sample must produce for one recipient."""

    source: str
    path: Path
    recipient: str
    reason: str
    bounce_type: str
    own: bool
    """From the project's samples/expected.yaml (a mismatch fails the command)."""


def _bounce_type_of(label: dict[str, Any]) -> str:
    """The bounce type a corpus label implies (corpora label 'hard' as 0/1 beside a reason word)."""
    if label.get("bounce_type"):
        return str(label["bounce_type"])
    reason = label.get("reason") or ""
    fixed = {"feedback": "complaint", "vacation": "auto_reply", "delivered": "delivered"}
    if reason in fixed:
        return fixed[reason]
    if label.get("hard") == 1:
        return "hard"
    return "undetermined" if reason == "undefined" else "soft"


def _from_jsonl(corpus: Path) -> Iterator[Expectation]:
    with (corpus / "expected.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            row = json.loads(line)
            path = corpus / "messages" / f"{row['sample']}.eml"
            for label in row.get("events", []):
                if not label.get("reason"):
                    continue
                yield Expectation(
                    row["sample"], path, (label.get("recipient") or "").lower(),
                    label["reason"], _bounce_type_of(label), own=False,
                )


def _from_yaml(listing: Path, own: bool) -> Iterator[Expectation]:
    """Rows of an expected.yaml: a list (or a mapping with 'samples') of {file, events: [...]}."""
    import yaml

    with listing.open(encoding="utf-8") as fh:
        document = yaml.safe_load(fh) or []
    rows = document.get("samples", []) if isinstance(document, dict) else document
    for row in rows:
        name = str(row.get("file") or row.get("path") or row.get("sample") or "")
        if not name:
            continue
        path = (listing.parent / name).resolve()
        events = row.get("events")
        if events is None:
            events = [row]
        for label in events:
            if label.get("reason") is None and label.get("bounce_type") is None:
                continue
            yield Expectation(
                name, path, str(label.get("recipient") or "").lower(),
                str(label.get("reason") or ""), _bounce_type_of(label), own=own,
            )


def expectations(paths: list[Path], samples: Path | None) -> list[Expectation]:
    found: list[Expectation] = []
    if samples is not None and samples.is_file():
        found.extend(_from_yaml(samples, own=True))
        extra = samples.parent / "rules" / "expected.yaml"
        if extra.is_file():
            found.extend(_from_yaml(extra, own=True))
    for path in paths:
        if path.is_dir() and (path / "expected.jsonl").is_file():
            found.extend(_from_jsonl(path))
        elif path.is_file() and path.suffix in (".yaml", ".yml"):
            found.extend(_from_yaml(path, own=False))
        else:
            raise CommandError(f"{path}: not a labelled corpus (expected.jsonl + messages/) or expected.yaml")
    return found


def _table(title: str, pairs: Counter[tuple[str, str]]) -> list[str]:
    """Rows: expected value, count, correct, and what came out instead."""
    lines = [title, f"  {'expected':16} {'n':>5} {'ok':>5}  got instead"]
    expected_values = sorted({e for e, _ in pairs}, key=lambda e: (-sum(n for (x, _), n in pairs.items() if x == e), e))
    for wanted in expected_values:
        row = {got: n for (e, got), n in pairs.items() if e == wanted}
        total = sum(row.values())
        ok = row.get(wanted, 0)
        others = ", ".join(f"{got}:{n}" for got, n in sorted(row.items(), key=lambda x: -x[1]) if got != wanted)
        lines.append(f"  {wanted:16} {total:>5} {ok:>5}  {others}")
    return lines


def run_test(args: argparse.Namespace) -> int:
    from processor.config import DEFAULT_SAMPLES_DIR
    from processor.parse import ParseError, Parser

    settings = settings_from(args)
    samples = None if args.no_samples else DEFAULT_SAMPLES_DIR / "expected.yaml"
    wanted = expectations(list(args.corpora), samples)
    if not wanted:
        raise CommandError("nothing to test: no samples/expected.yaml and no corpus given")
    classifier = _load(settings)
    parser = Parser(settings.parse)

    verdicts: dict[Path, list[Any]] = {}
    reasons: Counter[tuple[str, str]] = Counter()
    types: Counter[tuple[str, str]] = Counter()
    misses: list[str] = []
    own_failures = 0
    for item in wanted:
        if item.path not in verdicts:
            try:
                events = parser.parse(item.path.read_bytes())
            except (OSError, ParseError) as exc:
                print(f"bounce-processor: {item.path}: {exc}", file=sys.stderr)
                events = []
            verdicts[item.path] = [classifier.classify(e) for e in events]
        found = verdicts[item.path]
        match = next((v for v in found if v.event.recipient.lower() == item.recipient), None)
        if match is None and (len(found) == 1 or not item.recipient):
            match = found[0] if found else None
        got_reason = match.reason if match else UNFOUND
        got_type = str(match.bounce_type) if match else UNFOUND
        reasons[(item.reason, got_reason)] += bool(item.reason)
        types[(item.bounce_type, got_type)] += 1
        wrong = (item.reason and got_reason != item.reason) or got_type != item.bounce_type
        if wrong:
            own_failures += item.own
            rule = f" rule {match.rule_id or '-'}" if match else ""
            misses.append(
                f"  {item.source} {item.recipient or '-'}: want {item.reason}/{item.bounce_type}, "
                f"got {got_reason}/{got_type}{rule}"
            )

    out = [*_table("reason", +reasons), "", *_table("bounce_type", types), ""]
    total = sum(types.values())
    reason_total = sum(n for (e, _), n in reasons.items() if e)
    reason_ok = sum(n for (e, g), n in reasons.items() if e and e == g)
    called_hard = sum(n for (_, g), n in types.items() if g == "hard")
    hard_ok = types[("hard", "hard")]
    labelled_hard = sum(n for (e, _), n in types.items() if e == "hard")
    out.append(
        f"{total} labelled events: reason {_pct(reason_ok, reason_total)}, "
        f"bounce_type {_pct(sum(n for (e, g), n in types.items() if e == g), total)}, "
        f"hard precision {_pct(hard_ok, called_hard)}, hard recall {_pct(hard_ok, labelled_hard)}"
    )
    if misses and args.misses:
        out.append(f"mismatches (first {min(args.misses, len(misses))} of {len(misses)}):")
        out.extend(misses[: args.misses])
    print("\n".join(out))
    if own_failures:
        print(f"{own_failures} sample(s) of samples/expected.yaml got another result", file=sys.stderr)
        return 1
    return 0


def _pct(hits: int, total: int) -> str:
    return f"{100 * hits / total:.1f}% ({hits}/{total})" if total else "n/a"


# --- explain --------------------------------------------------------------------------------------


def run_explain(args: argparse.Namespace) -> int:
    from processor.classify.explain import explain, render
    from processor.parse import ParseError, Parser
    from processor.sources.files import SourceError, iter_path

    settings = settings_from(args)
    classifier = _load(settings)
    parser = Parser(settings.parse)
    blocks: list[str] = []
    for given in args.paths:
        try:
            for message in iter_path(given):
                try:
                    events = parser.parse(message.data)
                except ParseError as exc:
                    blocks.append(f"{message.origin}: cannot parse: {exc}")
                    continue
                if not events:
                    blocks.append(f"{message.origin}: no events (not a bounce, complaint or auto-reply)")
                    continue
                parts = [f"{message.origin}: {len(events)} event(s)"]
                for index, event in enumerate(events, 1):
                    parts.append(render(explain(classifier.compiled, event, args.next), index))
                blocks.append("\n".join(parts))
        except SourceError as exc:
            raise CommandError(str(exc), exit_code=1) from None
    print("\n\n".join(blocks))
    return 0
