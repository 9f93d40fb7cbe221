"""The `rules check`, `rules test` and `explain` commands, run through the real command line."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from processor import config
from processor.cli import main
from tests.conftest import SAMPLES

VALID = (
    "rules:\n"
    "  - id: acme-quota\n"
    "    description: ACME says box at capacity for a full mailbox.\n"
    "    match: {diagnostic: 'box at capacity'}\n"
    "    result: {reason: mailboxfull, bounce_type: soft}\n"
)
RULE_SAMPLE = SAMPLES / "rules" / "userunknown-named.eml"
"""A hand-written report whose one event the default rules call userunknown / hard."""


def test_check_reports_each_problem_with_file_and_line(
    rule_dir: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """`rules check DIR` prints every problem as file:line and exits with 1."""
    broken = VALID.replace("box at capacity", "box (at capacity").replace("mailboxfull", "fullmailbox")
    directory = rule_dir(broken)
    assert main(["rules", "check", str(directory)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith(
        "rules.yaml:4: rule 'acme-quota': invalid diagnostic pattern 'box (at capacity': "
        "not a valid RE2 regular expression: missing ): box (at capacity"
    )
    assert lines[1].endswith("rules.yaml:5: rule 'acme-quota': unknown reason 'fullmailbox' (see rules/README.md)")
    assert lines[2].startswith("2 problem(s) in 1 rule file(s)")


def test_check_accepts_valid_directory(rule_dir: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    """`rules check DIR` on valid rules says how many and exits with 0."""
    assert main(["rules", "check", str(rule_dir(VALID))]) == 0
    assert capsys.readouterr().out.startswith("1 rules in 1 file(s) are valid")


def _corpus(root: Path, label: dict[str, object]) -> Path:
    """A labelled corpus (expected.jsonl + messages/) holding one sample with ``label``."""
    (root / "messages").mkdir(parents=True)
    shutil.copy(RULE_SAMPLE, root / "messages" / "one.eml")
    (root / "expected.jsonl").write_text(json.dumps({"sample": "one", "events": [label]}) + "\n")
    return root


def test_test_prints_confusion_tables_for_a_corpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`rules test CORPUS` tables expected against got; a corpus mismatch is listed but not fatal."""
    corpus = _corpus(tmp_path / "corpus", {"recipient": "olga@example.com", "reason": "filtered", "hard": 0})
    assert main(["rules", "test", "--no-samples", str(corpus)]) == 0
    out = capsys.readouterr().out
    assert "  filtered             1     0  userunknown:1" in out
    assert "  soft                 1     0  hard:1" in out
    assert "1 labelled events: reason 0.0% (0/1), bounce_type 0.0% (0/1), hard precision 0.0% (0/1)" in out
    assert "one olga@example.com: want filtered/soft, got userunknown/hard rule userunknown-named" in out


def test_test_fails_when_a_project_sample_disagrees(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`rules test` exits with 1 when a row of samples/expected.yaml gets another verdict."""
    samples = tmp_path / "samples"
    samples.mkdir()
    shutil.copy(RULE_SAMPLE, samples / "one.eml")
    (samples / "expected.yaml").write_text(
        "- file: one.eml\n  events:\n    - {recipient: olga@example.com, reason: suspend, bounce_type: soft}\n"
    )
    monkeypatch.setattr(config, "DEFAULT_SAMPLES_DIR", samples)
    assert main(["rules", "test"]) == 1
    captured = capsys.readouterr()
    assert "want suspend/soft, got userunknown/hard" in captured.out
    assert "1 sample(s) of samples/expected.yaml got another result" in captured.err


def test_project_samples_all_agree(capsys: pytest.CaptureFixture[str]) -> None:
    """`rules test` on the project's own samples finds no disagreement."""
    assert main(["rules", "test"]) == 0
    assert "mismatches" not in capsys.readouterr().out


def test_explain_shows_rule_reasons_and_next_matches(capsys: pytest.CaptureFixture[str]) -> None:
    """`explain FILE` names the rule with file:line, what matched what, and the rules after it."""
    assert main(["explain", str(RULE_SAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "event 1: failure olga@example.com" in out
    assert "  verdict: userunknown (hard)" in out
    assert "  rule: userunknown-named (rules/60-address.yaml:" in out
    assert '    says userunknown: /user ?(name )?(<address> )?(is )?unknown/ on "User unknown"' in out
    assert "  decided by: text (userunknown), address" in out
    assert "  would also match:\n    userunknown-bare (rules/60-address.yaml:" in out


def test_explain_says_when_nothing_matched(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An event that no rule matches is explained as undetermined and kept."""
    text = RULE_SAMPLE.read_text().replace("550 <olga@example.com>... User unknown", "599 something new")
    (tmp_path / "new.eml").write_text(text)
    assert main(["explain", str(tmp_path / "new.eml")]) == 0
    out = capsys.readouterr().out
    assert "  verdict: undefined (undetermined)" in out
    assert "  rule: none matched, so the event is undetermined (it is kept, never dropped)" in out


def test_explain_refuses_invalid_rules_in_one_line(
    rule_dir: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With an invalid operator rule directory, explain prints the problems and a one-line error."""
    directory = rule_dir(VALID.replace("mailboxfull", "fullmailbox"))
    monkeypatch.setenv("BOUNCE_RULES__DIRS", json.dumps([str(directory)]))
    assert main(["explain", str(RULE_SAMPLE)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].endswith("rules.yaml:5: rule 'acme-quota': unknown reason 'fullmailbox' (see rules/README.md)")
    assert err[-1] == (
        "bounce-processor: error: 1 problem(s) in the rule files; run 'bounce-processor rules check'"
    )
