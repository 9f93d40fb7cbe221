"""The default rules on the held-out table of providers' and MTAs' documented replies.

Each row of tests/classify/provider_replies.yaml is classified as tests/bench/provider_replies.py
does. A row gets its labelled reason and bounce type; a row marked ``known`` (the rules do not get
it right yet, and why) still gets what it got when it was marked, so that any change to it is
noticed: fixed (then drop the mark) or broken differently.
"""

from __future__ import annotations

import pytest

from processor.classify import RuleSet
from processor.config import DEFAULT_RULES_DIR
from processor.records import BounceType
from tests.bench.provider_replies import Row, classify, load_table, score

ROWS = load_table()
DEFAULTS = RuleSet([DEFAULT_RULES_DIR])


def _id(row: Row) -> str:
    return f"{row.source.split(' ')[0]}:{row.reply[:60]}"


@pytest.mark.parametrize("row", ROWS, ids=[_id(r) for r in ROWS])
def test_row(row: Row) -> None:
    verdict = DEFAULTS.classify(row.event)
    got = (verdict.reason, verdict.bounce_type)
    if row.known:
        assert got != (row.reason, BounceType(row.bounce_type)), "fixed: drop the row's 'known' mark"
        assert got == (row.known["reason"], BounceType(row.known["type"])), verdict.rule_id
    else:
        assert got == (row.reason, BounceType(row.bounce_type)), verdict.rule_id


def test_table_is_labelled_sensibly() -> None:
    """Hard only for address reasons, every known row says why, and the table is large enough."""
    assert len(ROWS) >= 300
    address = {"userunknown", "hostunknown", "hasmoved", "notaccept"}
    for row in ROWS:
        assert row.bounce_type in ("hard", "soft"), row.reply
        assert row.bounce_type == "soft" or row.reason in address, row.reply
        assert not row.known or row.known.get("why"), row.reply


def test_no_hard_verdict_for_a_soft_row() -> None:
    """The headline safety figure: no row labelled soft comes out hard (hard precision 100%)."""
    result = score(list(classify(ROWS, DEFAULTS)))
    assert result.true_hard == result.predicted_hard
