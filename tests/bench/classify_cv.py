"""Generalisation of the rules: training figures and leave-one-family-out cross-validated figures.

    python tests/bench/classify_cv.py [CORPUS ...] [--families] [--single] [--misses]
        [--unit pattern|alternative] [--own-support yes|no]

CORPUS: labelled corpora (messages/*.eml + expected.jsonl); default: ../shared/corpus/sisimai-train
and ../shared/corpus/crisp-train next to the project. Prints per corpus and overall:

    training  reason=..% hard_precision=..% hard_recall=..%   (all rules, all samples)
    cv        reason=..% hard_precision=..% hard_recall=..%   (leave one family out)

The procedure ("tuning" for a hand-written rule system):

1. Every labelled sample gets a FAMILY: the MTA or provider that wrote the reply. For the Sisimai
   collection it is the name's MTA/provider part (lhost-postfix-03 -> postfix, rhost-google-02 ->
   google); otherwise the registered domain of the host that gave the reply (mx1.mail.ru ->
   mail.ru), else the parser's format. Provider aliases are merged (gmail, googleworkspace, gsuite
   -> google; outlook, office365, exchange, hotmail -> microsoft; yahoo, aol -> yahoo).
2. SUPPORT: classify every labelled event (both corpora and samples/expected.yaml, whose family is
   "own") with all rules. A rule is supported by a family when it decides one of its events with
   the labelled reason; each regex pattern of the deciding rule that matched is supported likewise.
3. For each family F: drop every rule and every pattern whose support is non-empty and comes only
   from F (it exists because of F's samples), then score F's events with what is left. A rule or
   pattern that no sample supports is kept: it was written from documentation or our own servers,
   not fitted to F. So is a rule without any text condition (a status or reply code read as RFC
   3463 / 5321 define it, a report kind): it has no wording to fit. Our own samples never count
   as held out.
4. CV figures add up the held-out scores over all families.

Scoring follows ../shared/tools/bounce_accuracy.py: a reason or hard label left empty, a
"debatable" event and Sisimai's X.0.9NN pseudo status are not scored; events are paired by recipient.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT))

from processor.classify.engine import CompiledRules  # noqa: E402
from processor.classify.loader import load_rules  # noqa: E402
from processor.classify.reply import split_reply  # noqa: E402
from processor.classify.schema import (  # noqa: E402
    FIELDS,
    AllOf,
    Condition,
    FieldKind,
    FieldTest,
    Not,
    Rule,
    compile_regex,
    field_value,
)
from processor.config import DEFAULT_RULES_DIR, DEFAULT_SAMPLES_DIR  # noqa: E402
from processor.parse import ParseError, parse  # noqa: E402
from processor.records import BounceType, Event  # noqa: E402

SHARED = PROJECT.parent.parent / "shared" if (PROJECT.parent.parent / "shared").is_dir() else PROJECT.parent / "shared"
DEFAULT_CORPORA = (SHARED / "corpus" / "sisimai-train", SHARED / "corpus" / "crisp-train")
OWN = "own"
ALIASES = {
    "gmail": "google", "googleworkspace": "google", "gsuite": "google", "googlegroups": "google",
    "google.com": "google", "googlemail.com": "google",
    "outlook": "microsoft", "office365": "microsoft", "exchange": "microsoft", "exchange2003": "microsoft",
    "exchange2007": "microsoft", "hotmail": "microsoft", "outlook.com": "microsoft", "microsoft": "microsoft",
    "yahoo": "yahoo", "yahooinc": "yahoo", "aol": "yahoo", "yahoodns.net": "yahoo", "yahoo.com": "yahoo",
    "aol.com": "yahoo",
    "amazonses": "amazon", "receivingses": "amazon", "amazonworkmail": "amazon", "amazonaws.com": "amazon",
    "sendmail": "sendmail", "v5sendmail": "sendmail",
}
_SISIMAI_NAME = re.compile(r"^(?:lhost|rhost)-([a-z0-9]+)-\d+$")
_PSEUDO_STATUS = re.compile(r"^\d\.0\.9\d\d$")


@dataclass
class Labelled:
    family: str
    corpus: str
    event: Event
    reason: str | None
    hard: int | None
    sample: str = ""


@dataclass
class Score:
    reason_hit: int = 0
    reason_all: int = 0
    hard_tp: int = 0
    called_hard: int = 0
    labelled_hard: int = 0

    def add(self, item: Labelled, reason: str, bounce_type: BounceType) -> None:
        if item.reason:
            self.reason_all += 1
            self.reason_hit += reason == item.reason
        if item.hard is not None:
            called = bounce_type is BounceType.HARD
            self.called_hard += called
            self.labelled_hard += item.hard == 1
            self.hard_tp += called and item.hard == 1

    def merge(self, other: Score) -> None:
        for name in ("reason_hit", "reason_all", "hard_tp", "called_hard", "labelled_hard"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def line(self) -> str:
        def pct(a: int, b: int) -> str:
            return f"{100 * a / b:.1f}% ({a}/{b})" if b else "n/a"

        return (
            f"reason={pct(self.reason_hit, self.reason_all)} "
            f"hard_precision={pct(self.hard_tp, self.called_hard)} "
            f"hard_recall={pct(self.hard_tp, self.labelled_hard)}"
        )


def registered_domain(host: str) -> str:
    labels = host.lower().strip(".[]").split(".")
    if len(labels) < 2 or labels[-1].isdigit():
        return ""
    if len(labels) >= 3 and len(labels[-1]) == 2 and len(labels[-2]) <= 3:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def family_of(sample: str, event: Event) -> str:
    m = _SISIMAI_NAME.match(sample)
    if m:
        name = m.group(1)
    else:
        host = event.remote_mta or split_reply(event.diagnostic).remote_host
        name = registered_domain(host) or event.mta or "unknown"
        if name.endswith(("outlook.com", "hotmail.com")):
            name = "microsoft"
        elif "google" in name or name.endswith("gmail.com"):
            name = "google"
    return ALIASES.get(name, name)


def _pair(expected: list[dict[str, object]], events: list[Event]) -> Iterable[tuple[dict[str, object], Event]]:
    by_rcpt = {e.recipient.lower(): e for e in events}
    for label in expected:
        found = by_rcpt.get(str(label.get("recipient") or "").lower())
        if found is None and len(expected) == 1 and len(events) == 1:
            found = events[0]
        if found is not None:
            yield label, found


def read_corpus(directory: Path) -> list[Labelled]:
    items: list[Labelled] = []
    with open(directory / "expected.jsonl", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    for row in rows:
        path = directory / "messages" / f"{row['sample']}.eml"
        try:
            events = parse(path.read_bytes())
        except ParseError:
            continue
        for label, event in _pair(row["events"], events):
            debatable = bool(label.get("debatable"))
            reason = None if debatable else (str(label.get("reason") or "") or None)
            hard = None if debatable or label.get("hard") is None else int(label["hard"])  # type: ignore[call-overload]
            if _PSEUDO_STATUS.match(str(label.get("status") or "")) and reason is None and hard is None:
                continue
            items.append(
                Labelled(family_of(row["sample"], event), directory.name, event, reason, hard, row["sample"])
            )
    return items


def read_own_samples() -> list[Labelled]:
    table = yaml.safe_load((DEFAULT_SAMPLES_DIR / "expected.yaml").read_text(encoding="utf-8"))
    items: list[Labelled] = []
    for row in table:
        try:
            events = parse((DEFAULT_SAMPLES_DIR / row["file"]).read_bytes())
        except (OSError, ParseError):
            continue
        for label, event in _pair(row.get("events") or [], events):
            if "reason" in label or "bounce_type" in label:
                hard = int(label.get("bounce_type") == "hard") if "bounce_type" in label else None
                reason = str(label["reason"]) if "reason" in label else None
                items.append(Labelled(OWN, OWN, event, reason, hard, str(row["file"])))
    return items


# --- support and pruning ------------------------------------------------------------------------


@dataclass
class Support:
    rules: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    patterns: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    alternatives: dict[tuple[str, str, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    """(field, pattern, top-level alternative) -> families: the stricter unit of ``--unit alternative``."""


_FLAGS = re.compile(r"^\(\?[a-zA-Z-]+\)")


def alternatives(pattern: str) -> tuple[str, ...]:
    """The top-level alternatives of a regex (``a|b(c|d)`` -> ``a``, ``b(c|d)``); a leading flag
    group such as ``(?-i)`` is carried to each. A search for the pattern matches where one of them does."""
    flags = m.group(0) if (m := _FLAGS.match(pattern)) else ""
    body = pattern[len(flags):]
    parts: list[str] = []
    depth, start, i, in_class = 0, 0, 0, False
    while i < len(body):
        char = body[i]
        if char == "\\":
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            if body[i + 1 : i + 2] == "^":
                i += 1
            if body[i + 1 : i + 2] == "]":
                i += 1
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            parts.append(body[start:i])
            start = i + 1
        i += 1
    parts.append(body[start:])
    return tuple(flags + part for part in parts)


def _matched_patterns(condition: Condition, event: Event, out: list[tuple[str, str]]) -> None:
    """Regex patterns of the positive part of ``condition`` that match ``event``."""
    if isinstance(condition, FieldTest):
        if FIELDS[condition.field] is FieldKind.REGEX:
            value = field_value(event, condition.field)
            out.extend(
                (condition.field, p) for p in condition.patterns if value and compile_regex(p).search(value)
            )
    elif not isinstance(condition, Not):
        for child in condition.children:
            _matched_patterns(child, event, out)


def support(compiled: CompiledRules, items: Sequence[Labelled]) -> Support:
    found = Support()
    for item in items:
        position = compiled.first_match(item.event)
        if position is None:
            continue
        rule = compiled.rules[position]
        if item.reason is not None and rule.result.reason != item.reason:
            continue
        if item.reason is None and item.hard is not None and (rule.result.bounce_type is BounceType.HARD) != (
            item.hard == 1
        ):
            continue
        found.rules[rule.id].add(item.family)
        matched: list[tuple[str, str]] = []
        _matched_patterns(rule.condition, item.event, matched)
        for key in matched:
            found.patterns[key].add(item.family)
            value = field_value(item.event, key[0])
            for alternative in alternatives(key[1]):
                if compile_regex(alternative).search(value):
                    found.alternatives[(key[0], key[1], alternative)].add(item.family)
    return found


def _prune(
    condition: Condition, dropped: set[tuple[str, str]], dropped_alternatives: set[tuple[str, str, str]]
) -> Condition | None:
    """``condition`` without the dropped patterns (and alternatives) in its positive part; None when
    it can no longer match."""
    if isinstance(condition, FieldTest):
        kept_patterns: list[str] = []
        for pattern in condition.patterns:
            if (condition.field, pattern) in dropped:
                continue
            kept_pattern = pattern
            if dropped_alternatives:
                alts = alternatives(pattern)
                kept_alts = [a for a in alts if (condition.field, pattern, a) not in dropped_alternatives]
                if not kept_alts:
                    continue
                if len(kept_alts) != len(alts):
                    kept_pattern = "|".join(kept_alts)
            kept_patterns.append(kept_pattern)
        kept = tuple(kept_patterns)
        if not kept:
            return None
        return replace(condition, patterns=kept) if kept != condition.patterns else condition
    if isinstance(condition, Not):
        return condition
    children = [_prune(c, dropped, dropped_alternatives) for c in condition.children]
    if isinstance(condition, AllOf):
        if any(c is None for c in children):
            return None
        return replace(condition, children=tuple(c for c in children if c is not None))
    kept_children = tuple(c for c in children if c is not None)
    return replace(condition, children=kept_children) if kept_children else None


def rules_without(rules: Sequence[Rule], found: Support, family: str, unit: str = "pattern") -> list[Rule]:
    only = {family}
    dropped = {key for key, families in found.patterns.items() if families and families <= only}
    dropped_alternatives = (
        {key for key, families in found.alternatives.items() if families and families <= only}
        if unit == "alternative"
        else set()
    )
    out: list[Rule] = []
    for rule in rules:
        families = found.rules.get(rule.id)
        if families and families <= only and any(True for _ in _regex_tests(rule.condition)):
            continue
        condition = _prune(rule.condition, dropped, dropped_alternatives)
        if condition is not None:
            out.append(replace(rule, condition=condition))
    return out


def _regex_tests(condition: Condition) -> Iterable[FieldTest]:
    if isinstance(condition, FieldTest):
        if FIELDS[condition.field] is FieldKind.REGEX:
            yield condition
    elif isinstance(condition, Not):
        yield from _regex_tests(condition.child)
    else:
        for child in condition.children:
            yield from _regex_tests(child)


def count_patterns(rules: Sequence[Rule]) -> int:
    return len({(t.field, p) for r in rules for t in _regex_tests(r.condition) for p in t.patterns})


def single_file_patterns(
    rules: Sequence[Rule], items: Sequence[Labelled], own: Sequence[Labelled]
) -> list[tuple[tuple[str, str], str]]:
    """(rule id, pattern) of text patterns that match the events of exactly one training file and of
    no own sample, with that file's family: the patterns most likely written for one sample."""
    found: list[tuple[tuple[str, str], str]] = []
    seen: set[tuple[str, str]] = set()
    for rule in rules:
        for test in _regex_tests(rule.condition):
            for pattern in test.patterns:
                if (test.field, pattern) in seen:
                    continue
                seen.add((test.field, pattern))
                regex = compile_regex(pattern)
                if any(regex.search(field_value(i.event, test.field) or "\0") for i in own):
                    continue
                files = {
                    (i.corpus, i.family, i.event.diagnostic)
                    for i in items
                    if (value := field_value(i.event, test.field)) and regex.search(value)
                }
                if len({(c, f) for c, f, _ in files}) == 1 and len(files) == 1:
                    corpus, family, _ = next(iter(files))
                    found.append(((rule.id, pattern), f"{corpus}:{family}"))
    return found


def _missed(item: Labelled, reason: str, bounce_type: BounceType) -> bool:
    if item.reason is not None and reason != item.reason:
        return True
    return item.hard is not None and (bounce_type is BounceType.HARD) != (item.hard == 1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpora", nargs="*", type=Path, default=list(DEFAULT_CORPORA))
    parser.add_argument("--families", action="store_true", help="print the held-out score of each family")
    parser.add_argument(
        "--unit",
        choices=("pattern", "alternative"),
        default="pattern",
        help="what is dropped when one family alone supports it: a whole pattern (default), or each "
        "top-level alternative of a pattern (stricter: merging wordings into one pattern gains nothing)",
    )
    parser.add_argument(
        "--own-support",
        choices=("yes", "no"),
        default="yes",
        help="whether the project's own samples (samples/expected.yaml) count as support (default yes). "
        "With 'no', a pattern that only one training family and our own samples support is dropped for "
        "that family too: the strictest figure, since an own sample written after a training wording "
        "would otherwise protect it",
    )
    parser.add_argument("--rules", type=Path, default=DEFAULT_RULES_DIR, help="rule directory (default: rules/)")
    parser.add_argument(
        "--misses",
        action="store_true",
        help="list the held-out events scored wrong (reason or hard), with the training verdict and the reply",
    )
    parser.add_argument(
        "--single", action="store_true", help="list patterns that match exactly one training file and no own sample"
    )
    args = parser.parse_args(argv)

    rules, problems = load_rules([args.rules])
    if problems:
        print("\n".join(str(p) for p in problems), file=sys.stderr)
        return 1
    full = CompiledRules(rules)
    items = [item for corpus in args.corpora for item in read_corpus(corpus)]
    found = support(full, [*items, *(read_own_samples() if args.own_support == "yes" else [])])

    training: dict[str, Score] = defaultdict(Score)
    held_out: dict[str, Score] = defaultdict(Score)
    per_family: dict[str, Score] = defaultdict(Score)
    by_family: dict[str, list[Labelled]] = defaultdict(list)
    for item in items:
        verdict = full.classify(item.event)
        training[item.corpus].add(item, verdict.reason, verdict.bounce_type)
        by_family[item.family].append(item)
    dropped_rules = 0
    misses: list[str] = []
    for family, members in sorted(by_family.items()):
        pruned = rules_without(rules, found, family, args.unit)
        dropped_rules += len(rules) - len(pruned)
        compiled = CompiledRules(pruned)
        for item in members:
            verdict = compiled.classify(item.event)
            held_out[item.corpus].add(item, verdict.reason, verdict.bounce_type)
            per_family[family].add(item, verdict.reason, verdict.bounce_type)
            if _missed(item, verdict.reason, verdict.bounce_type):
                trained = full.classify(item.event)
                misses.append(
                    f"  {item.corpus}/{item.sample} [{family}] want {item.reason or '-'}/"
                    f"{'-' if item.hard is None else ('hard' if item.hard else 'not-hard')}: "
                    f"cv {verdict.reason}/{verdict.bounce_type.value} ({verdict.rule_id or '-'}), "
                    f"training {trained.reason}/{trained.bounce_type.value} ({trained.rule_id or '-'})\n"
                    f"      {split_reply(item.event.diagnostic).text[:220]!r}"
                )

    print(f"{len(items)} labelled events, {len(by_family)} families, {len(rules)} rules "
          f"({dropped_rules} rule drops over all folds)")
    total_train, total_cv = Score(), Score()
    for corpus in sorted(training):
        print(f"{corpus:15} training  {training[corpus].line()}")
        print(f"{corpus:15} cv        {held_out[corpus].line()}")
        total_train.merge(training[corpus])
        total_cv.merge(held_out[corpus])
    print(f"{'all':15} training  {total_train.line()}")
    print(f"{'all':15} cv        {total_cv.line()}")
    if args.single:
        single = single_file_patterns(rules, items, read_own_samples())
        total = count_patterns(rules)
        print(f"{len(single)} of {total} text patterns match exactly one training file and no own sample:")
        for (rule_id, pattern), where in single:
            print(f"  {rule_id:32} {where:40} /{pattern}/")
    if args.misses:
        print(f"{len(misses)} held-out events scored wrong:")
        print("\n".join(misses))
    if args.families:
        for family, score in sorted(per_family.items()):
            print(f"  {family:28} {score.line()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
