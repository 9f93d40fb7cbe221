"""`rules suggest` on both engines: undecided and hand-corrected stored replies become proposed rules."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from processor.classify import RuleSet
from processor.classify.suggest import normal_form
from processor.cli import main
from processor.records import BounceType
from processor.store import Store
from tests.store.helpers import message, verdict


def _undecided(recipient: str, diagnostic: str) -> object:
    made = verdict(recipient, BounceType.UNDETERMINED, reason="undefined", status="5.0.0", rule_id="")
    return replace(made, event=replace(made.event, diagnostic=diagnostic))


def test_normal_form_masks_what_varies() -> None:
    """Addresses, hosts, IPs, numbers and ids vanish from the normal form; the wording stays."""
    one = normal_form("host mx1.a.example[192.0.2.1] said: 550 <a@x.example> quota 1024 ref A1B2C3D4E5F6G7 gone")
    two = normal_form("host mx9.b.example[198.51.100.7] said: 550 <b@y.example> quota 77 ref Z9Y8X7W6V5U4T3 gone")
    assert one == two == "550 <address> quota <n> ref <id> gone"


def test_rules_suggest_groups_ranks_and_proposes_rules(
    store: Store, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Undecided replies are grouped by normal form, largest group first, each with a rule that
    passes `rules check` and matches the events it came from; a hand-corrected address counts too."""
    wording = "host mx{n}.mail.example[192.0.2.{n}] said: 550 Recipient {r} is parked in the attic (ticket {n}00)"
    for n, rcpt in enumerate(("ann@a.example", "ben@b.example", "cy@c.example"), 1):
        store.record_message(message(), [_undecided(rcpt, wording.format(n=n, r=rcpt))])  # type: ignore[list-item]
    store.record_message(message(), [_undecided("dee@d.example", "554 Odd one out")])  # type: ignore[list-item]
    corrected = verdict("eve@e.example", BounceType.SOFT, reason="filtered", status="5.7.1")
    corrected = replace(corrected, event=replace(corrected.event, diagnostic="550 5.7.1 Mailbox is a ghost town"))
    store.record_message(message(), [corrected])
    store.add("eve@e.example", reason="userunknown")

    assert main(["--log-level", "WARNING", "rules", "suggest", "--since", "1d", "--database", db_url]) == 0
    out = capsys.readouterr().out
    assert out.index("# 3 event(s)") < out.index("# 1 event(s)")
    assert "ann@a.example" in out and "ben@b.example" in out and "cy@c.example" in out
    assert "manual_add:userunknown" in out

    proposed = yaml.safe_load(out)["rules"]
    by_id = {rule["id"]: rule for rule in proposed}
    assert len(by_id) == 3
    attic = next(r for r in proposed if "attic" in r["match"]["diagnostic"])
    ghost = next(r for r in proposed if "ghost" in r["match"]["diagnostic"])
    assert (ghost["result"]["reason"], ghost["result"]["bounce_type"]) == ("userunknown", "hard")

    directory = tmp_path / "operator"
    directory.mkdir()
    (directory / "suggested.yaml").write_text(out, encoding="utf-8")
    assert main(["rules", "check", str(directory)]) == 0
    rules = RuleSet([directory])
    again = _undecided("zed@z.example", wording.format(n=7, r="zed@z.example"))
    assert rules.classify(again.event).rule_id == attic["id"]  # type: ignore[attr-defined]


def test_rules_suggest_refuses_a_bad_period(capsys: pytest.CaptureFixture[str]) -> None:
    """`--since` that is not a duration is a one-line error (exit 2), not a traceback."""
    assert main(["--log-level", "WARNING", "rules", "suggest", "--since", "lately"]) == 2
    assert "--since 'lately'" in capsys.readouterr().err
