"""Benchmark: parsing with classification, and the classification cost per event.

    python tests/bench/classify_bench.py [DIR ...] [--runs 5] [--synthetic 1000]

DIR: message files to use (default: samples/). Prints, as medians of --runs runs on this machine:

- rule loading time (YAML + checks + compilation), default rules and with N synthetic rules;
- classification cost per event (microseconds), default rules and with N synthetic rules;
- messages per second for parse + classify, default rules and with N synthetic rules;
- classification cost per event on replies the matcher has not seen: a fresh rule set classifies
  every other distinct reply (warm-up), then the rest are timed. RE2 builds its automata lazily,
  state by state, as new text arrives, so this is the cost in a daemon that keeps meeting new
  wordings; repeated events (the line above) cost less.

The synthetic rules sit in an operator directory, before the defaults, as an operator's would:
diagnostic regexes, remote-MTA and domain globs, status and reply patterns, any/not groups. They
almost never match real mail (like most provider-specific rules), so they measure what the rules
that do NOT match cost each event.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT))

from processor.classify import RuleSet  # noqa: E402
from processor.config import DEFAULT_RULES_DIR, DEFAULT_SAMPLES_DIR  # noqa: E402
from processor.parse import ParseError, Parser  # noqa: E402
from processor.records import Event  # noqa: E402
from processor.sources.files import iter_path  # noqa: E402

WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo")


def synthetic_rules(count: int, seed: int = 7) -> str:
    """A rule file of ``count`` varied rules that look like operator rules."""
    rng = random.Random(seed)
    out = ["rules:"]
    for i in range(count):
        a, b, c = rng.sample(WORDS, 3)
        shape = i % 6
        if shape == 0:
            match = f"      diagnostic: ['synthetic {a}[- ]{b} {i}', '{c} code {i}\\b']"
        elif shape == 1:
            match = f"      remote_mta: '*.mx{i}.{a}.example.net'\n      kind: failure"
        elif shape == 2:
            match = f"      status: '5.{i % 8}.{i % 30}'\n      diagnostic: '(?-i)X-{a.upper()}-{i}'"
        elif shape == 3:
            match = (
                f"      any:\n        - recipient_domain: '{a}{i}.example.org'\n"
                f"        - diagnostic: 'policy {b} #{i}'"
            )
        elif shape == 4:
            match = (
                f"      kind: failure\n      not:\n        status: '4.*.*'\n"
                f"      diagnostic: '{a} {b} (refused|denied) {i}'"
            )
        else:
            match = f"      reply_code: '5{i % 10}{(i // 10) % 10}'\n      diagnostic: 'quota {a} {i}'"
        out.append(
            f"  - id: synthetic-{i}\n    description: Synthetic benchmark rule {i}.\n    match:\n{match}\n"
            f"    result:\n      reason: {rng.choice(['blocked', 'filtered', 'policyviolation'])}\n"
            "      bounce_type: soft"
        )
    return "\n".join(out) + "\n"


def load_messages(paths: list[Path]) -> list[bytes]:
    messages = []
    for path in paths:
        messages.extend(m.data for m in iter_path(str(path)))
    return messages


def parse_all(parser: Parser, messages: list[bytes]) -> list[Event]:
    events: list[Event] = []
    for data in messages:
        with contextlib.suppress(ParseError):
            events.extend(parser.parse(data))
    return events


def median_time(fn: object, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="*", type=Path)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--synthetic", type=int, default=1000)
    args = ap.parse_args()

    messages = load_messages(args.dirs or [DEFAULT_SAMPLES_DIR])
    if not messages:
        print("no messages found; give a directory of .eml files", file=sys.stderr)
        return 2
    parser = Parser()
    events = parse_all(parser, messages)
    print(f"{len(messages)} messages, {len(events)} events; medians of {args.runs} runs")

    with tempfile.TemporaryDirectory() as tmp:
        extra = Path(tmp)
        (extra / "synthetic.yaml").write_text(synthetic_rules(args.synthetic), encoding="utf-8")
        setups = {
            "default rules": [DEFAULT_RULES_DIR],
            f"+{args.synthetic} synthetic": [extra, DEFAULT_RULES_DIR],
        }
        loaded = {label: RuleSet(dirs) for label, dirs in setups.items()}
        load_ms = {
            label: median_time(lambda dirs=dirs: RuleSet(dirs), args.runs) * 1000 for label, dirs in setups.items()
        }
        repeat = max(1, 20_000 // len(events)) if events else 1

        def classify_all(classify: Callable[[Event], object]) -> None:
            for _ in range(repeat):
                for event in events:
                    classify(event)

        def pipeline(classify: Callable[[Event], object] | None) -> None:
            for data in messages:
                with contextlib.suppress(ParseError):
                    for event in parser.parse(data):
                        if classify is not None:
                            classify(event)

        # Runs of every variant are interleaved so that load from other processes hits all alike.
        timings: dict[str, list[float]] = {"parse": []}
        for label in setups:
            timings[f"{label} classify"] = []
            timings[f"{label} pipeline"] = []
        for _ in range(args.runs):
            timings["parse"].append(median_time(lambda: pipeline(None), 1))
            for label, rules in loaded.items():
                timings[f"{label} classify"].append(median_time(lambda c=rules.classify: classify_all(c), 1))
                timings[f"{label} pipeline"].append(median_time(lambda c=rules.classify: pipeline(c), 1))
        unseen: dict[str, list[float]] = {label: [] for label in setups}
        by_text: dict[str, Event] = {}
        for event in events:
            by_text.setdefault(event.diagnostic or "", event)
        distinct = list(by_text.values())
        warm, timed = distinct[0::2], distinct[1::2]
        for _ in range(args.runs):
            for label, dirs in setups.items():
                fresh = RuleSet(dirs)
                for event in warm:
                    fresh.classify(event)
                start = time.perf_counter()
                for event in timed:
                    fresh.classify(event)
                unseen[label].append((time.perf_counter() - start) / max(1, len(timed)))
        parse_seconds = statistics.median(timings["parse"])
        print(f"parse only: {len(messages) / parse_seconds:7.0f} messages/s")
        for label, rules in loaded.items():
            per_event = statistics.median(timings[f"{label} classify"]) / (repeat * max(1, len(events)))
            both = statistics.median(timings[f"{label} pipeline"])
            print(
                f"{label:22} {len(rules.rules):5} rules: load {load_ms[label]:6.1f} ms, "
                f"classify {per_event * 1e6:5.1f} us/event, "
                f"parse+classify {len(messages) / both:6.0f} messages/s, "
                f"classify unseen replies {statistics.median(unseen[label]) * 1e6:5.1f} us/event"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
