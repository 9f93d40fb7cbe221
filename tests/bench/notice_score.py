"""Score the parser and the default classifier on a group of rows of samples/expected.yaml, with
the figures of the shared corpus scorer (detected, recipient recall and precision, status, reason,
hard precision and recall, auto-replies, not-bounces), for a set of samples written to stand for
mail the rules were never tuned on.

    python -m tests.bench.notice_score [PREFIX ...] [--misses]

PREFIX selects rows by file path (default ``handwritten/notices/``). The last line is a one-line
``summary:``. Figures:

  detected        samples labelled with a failure or delay for which at least one event came out
  rcpt_recall     labelled (sample, recipient) pairs of those samples that came out
  rcpt_precision  (sample, recipient) pairs that came out and are labelled (no phantom addresses)
  status          exact enhanced status code, on matched pairs whose label gives one
  reason          same reason word, on matched failure pairs
  hard_precision  pairs called hard that are labelled hard
  hard_recall     pairs labelled hard that were called hard
  auto_replies    auto-reply samples reported as auto_reply and nothing harder
  not_bounces     samples labelled with no failure at all (nothing, a delivery, a read receipt)
                  that produced no hard, soft or complaint verdict
"""

from __future__ import annotations

import sys
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import yaml

from processor.classify import load_classifier
from processor.parse import parse
from tests.conftest import SAMPLES

ORDER = (
    "detected",
    "rcpt_recall",
    "rcpt_precision",
    "status",
    "reason",
    "hard_precision",
    "hard_recall",
    "auto_replies",
    "not_bounces",
)
BOUNCE_KINDS = {"failure", "delay"}


@dataclass
class Score:
    counts: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    misses: list[str] = field(default_factory=list)

    def tally(self, key: str, ok: bool, file: str = "", why: str = "") -> None:
        self.counts[key][1] += 1
        self.counts[key][0] += int(ok)
        if not ok and why:
            self.misses.append(f"MISS {file}: {why}")

    def summary(self) -> str:
        parts = []
        for key in ORDER:
            hits, total = self.counts.get(key, [0, 0])
            if total:
                parts.append(f"{key}={100 * hits / total:.1f}% ({hits}/{total})")
        return "summary: " + " ".join(parts)


def rows(prefixes: tuple[str, ...]) -> list[dict[str, Any]]:
    loaded = yaml.safe_load((SAMPLES / "expected.yaml").read_text(encoding="utf-8"))
    return [row for row in loaded if str(row["file"]).startswith(prefixes)]


def score(prefixes: tuple[str, ...]) -> Score:
    classifier = load_classifier()
    result = Score()
    for row in rows(prefixes):
        file = row["file"]
        want = row["events"]
        got = []
        for event in parse((SAMPLES / file).read_bytes()):
            verdict = classifier.classify(event)
            got.append(
                (event.recipient.lower(), str(event.kind), event.status, verdict.reason, str(verdict.bounce_type))
            )
        types = {g[4] for g in got}
        kinds = {str(w["kind"]) for w in want}
        if not kinds & BOUNCE_KINDS:
            if "auto_reply" in kinds:
                ok = "auto_reply" in types and not types & {"hard", "soft"}
                result.tally("auto_replies", ok, file, f"reported {got}")
            else:
                ok = not types & {"hard", "soft", "complaint"}
                result.tally("not_bounces", ok, file, f"reported {got}")
            continue
        result.tally("detected", bool(got), file, "nothing found")
        labelled = {str(w["recipient"]).lower(): w for w in want}
        have: dict[str, tuple[str, str, str, str, str]] = {}
        for g in got:
            have.setdefault(g[0], g)
        for address, label in labelled.items():
            hit = have.get(address)
            result.tally("rcpt_recall", hit is not None, file, f"{address} not found (got {sorted(have)})")
            if hit is None:
                continue
            if label.get("status"):
                result.tally(
                    "status", hit[2] == str(label["status"]), file, f"status {hit[2]!r} for {label['status']!r}"
                )
            if label["kind"] == "failure":
                result.tally("reason", hit[3] == label["reason"], file, f"reason {hit[3]!r} for {label['reason']!r}")
                if label["bounce_type"] == "hard":
                    result.tally("hard_recall", hit[4] == "hard", file, f"{address} is {hit[4]}, labelled hard")
        for address, hit in have.items():
            result.tally("rcpt_precision", address in labelled, file, f"phantom recipient {address}")
            if hit[4] == "hard" and address in labelled:
                ok = labelled[address].get("bounce_type") == "hard"
                result.tally(
                    "hard_precision", ok, file, f"{address} called hard, labelled {labelled[address].get('reason')}"
                )
    return result


def main(argv: list[str]) -> int:
    show_misses = "--misses" in argv
    prefixes = tuple(a for a in argv if not a.startswith("--")) or ("handwritten/notices/",)
    result = score(prefixes)
    if show_misses:
        print("\n".join(result.misses))
    print(f"samples: {len(rows(prefixes))}")
    print(result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
