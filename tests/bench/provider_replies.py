"""The default rules on a held-out table of SMTP replies written from providers' published docs.

    python tests/bench/provider_replies.py [TABLE] [--rules DIR ...] [--quiet]

TABLE (default tests/classify/provider_replies.yaml) lists replies as receiving servers send them
(reply code, enhanced status, text, and the SMTP stage where it matters), each labelled with the
expected reason and bounce type. The wording comes from what providers and MTAs document about
their own error codes, not from the training corpora, so the figures say how the rules do on
replies they were not tuned on. Prints one line

    provider_replies: rows=N reason=..% hard_precision=..% hard_recall=..%

and then every row whose verdict differs from its label (a row the rules cannot fix yet says so
in its ``known`` entry; it is listed among the misses all the same).

Each row becomes an Event the way the parser builds one (processor/parse/__init__.py, _complete):
the status is the row's ``status`` or the first enhanced code in the reply, else "<class>.0.0"
from the reply code; the reply code and the SMTP stage come from the reply unless the row gives
them; the recipient is the first address of the reply, else ``user@<domain>`` of the row's source.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PROJECT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT))

from processor.classify import RuleSet  # noqa: E402
from processor.config import DEFAULT_RULES_DIR  # noqa: E402
from processor.parse.text import addresses, find_command, find_reply_code, find_status  # noqa: E402
from processor.records import Event, EventKind, Verdict  # noqa: E402

TABLE = PROJECT / "tests" / "classify" / "provider_replies.yaml"
ROW_KEYS = {"reply", "reason", "type", "stage", "status", "kind", "remote_mta", "domain", "known", "note"}


@dataclass(frozen=True, slots=True)
class Row:
    """One labelled reply of the table."""

    source: str
    reply: str
    reason: str
    bounce_type: str
    event: Event
    known: dict[str, str] | None
    """For a row the rules do not get right yet: what they give today and why it is not fixed."""

    @property
    def label(self) -> str:
        return f"{self.reason}/{self.bounce_type}"


def _event(source: dict[str, Any], row: dict[str, Any]) -> Event:
    reply = " ".join(str(row["reply"]).split())
    kind = EventKind(row.get("kind", "failure"))
    reply_code = find_reply_code(reply)
    status = str(row.get("status", "")) or find_status(reply)
    if not status and reply_code and kind in (EventKind.FAILURE, EventKind.DELAY):
        status = f"{reply_code[0]}.0.0"
    found = addresses(reply)
    domain = row.get("domain", source.get("domain", "example.org"))
    return Event(
        kind=kind,
        recipient=found[0] if found else f"user@{domain}",
        status=status,
        reply_code=reply_code,
        smtp_command=str(row.get("stage", "")) or find_command(reply),
        diagnostic=reply,
        diagnostic_type="smtp" if reply_code else "",
        remote_mta=str(row.get("remote_mta", source.get("remote_mta", ""))),
        mta="rfc3464",
    )


def load_table(path: Path = TABLE) -> list[Row]:
    """The rows of the table, each with the Event it stands for."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    rows: list[Row] = []
    for source in data["sources"]:
        for row in source["replies"]:
            unknown = set(row) - ROW_KEYS
            if unknown:
                raise ValueError(f"{source['source']}: unknown keys {sorted(unknown)} in {row}")
            rows.append(
                Row(
                    source=source["source"],
                    reply=str(row["reply"]),
                    reason=row["reason"],
                    bounce_type=row["type"],
                    event=_event(source, row),
                    known=row.get("known"),
                )
            )
    return rows


@dataclass(frozen=True, slots=True)
class Score:
    rows: int
    reason_ok: int
    predicted_hard: int
    true_hard: int
    labelled_hard: int

    def line(self) -> str:
        def pct(a: int, b: int) -> str:
            return f"{100 * a / b:.1f}%" if b else "-"

        return (
            f"provider_replies: rows={self.rows} reason={pct(self.reason_ok, self.rows)} "
            f"hard_precision={pct(self.true_hard, self.predicted_hard)} "
            f"hard_recall={pct(self.true_hard, self.labelled_hard)}"
        )


def classify(rows: Sequence[Row], rules: RuleSet) -> Iterator[tuple[Row, Verdict]]:
    for row in rows:
        yield row, rules.classify(row.event)


def score(results: Sequence[tuple[Row, Verdict]]) -> Score:
    return Score(
        rows=len(results),
        reason_ok=sum(v.reason == r.reason for r, v in results),
        predicted_hard=sum(v.bounce_type == "hard" for _, v in results),
        true_hard=sum(v.bounce_type == "hard" and r.bounce_type == "hard" for r, v in results),
        labelled_hard=sum(r.bounce_type == "hard" for r, _ in results),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", nargs="?", type=Path, default=TABLE)
    parser.add_argument("--rules", nargs="*", type=Path, default=[DEFAULT_RULES_DIR], help="rule directories")
    parser.add_argument("--quiet", action="store_true", help="print the summary line only")
    args = parser.parse_args(argv)
    results = list(classify(load_table(args.table), RuleSet(args.rules)))
    print(score(results).line())
    if not args.quiet:
        for row, verdict in results:
            got = f"{verdict.reason}/{verdict.bounce_type}"
            if got != row.label:
                mark = " (known)" if row.known else ""
                print(f"MISS{mark} [{row.source}] want {row.label} got {got} ({verdict.rule_id}): {row.reply}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
