"""Real reports through parse, the real rules and the store: what the daemon will do per message."""

from __future__ import annotations

import pytest

from processor.classify import load_classifier
from processor.cli import main
from processor.parse import Parser
from processor.records import Action, BounceType
from processor.store import MessageRef, Store
from tests.conftest import SAMPLES

CASES = [
    ("generated/postfix/postfix-local-unknown-user.eml", "nosuchuser@local.example.net", Action.SUPPRESS, None),
    ("generated/postfix/postfix-over-quota.eml", "full@mail.example.com", Action.COUNT, None),
    ("handwritten/arf-abuse.eml", None, Action.SUPPRESS, "complaint"),
    ("handwritten/autoreply-auto-submitted.eml", None, Action.IGNORE, None),
]


def _record(store: Store, relative: str, uid: int) -> list[tuple[str, Action]]:
    data = (SAMPLES / relative).read_bytes()
    classifier = load_classifier(store.settings.rules)
    verdicts = [classifier.classify(event) for event in Parser(store.settings.parse).parse(data)]
    result = store.record_message(MessageRef.for_bytes(data, "INBOX", 1, uid), verdicts)
    return [(d.address, d.action) for d in result.decisions]


@pytest.mark.parametrize(("relative", "address", "action", "source"), CASES)
def test_sample_reports_are_recorded_with_the_expected_decision(
    store: Store, *, relative: str, address: str | None, action: Action, source: str | None
) -> None:
    """A genuine bounce, a complaint and an auto-reply each get their decision and entry."""
    decisions = _record(store, relative, 1)
    assert decisions, relative
    recorded_address, recorded_action = decisions[0]
    if address is not None:
        assert recorded_address == address
    assert recorded_action is action
    entry = store.is_suppressed(recorded_address) if recorded_address else None
    assert (entry is not None) is (action is Action.SUPPRESS)
    if source is not None and entry is not None:
        assert entry.source == source
    assert _record(store, relative, 2) == []  # the same bytes again: a duplicate, nothing counted


def test_reprocess_command_with_the_real_rules(store: Store, db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """An event stored with an outdated verdict is shown by `reprocess` and fixed by `--apply`."""
    data = (SAMPLES / "generated/postfix/postfix-local-unknown-user.eml").read_bytes()
    classifier = load_classifier(store.settings.rules)
    [verdict] = [classifier.classify(e) for e in Parser().parse(data)]
    assert verdict.bounce_type is BounceType.HARD
    stale = type(verdict)(verdict.event, "oldrule", BounceType.UNDETERMINED, "old-rule")
    store.record_message(MessageRef.for_bytes(data, "INBOX", 1, 1), [stale])
    assert store.is_suppressed("nosuchuser@local.example.net") is None

    capsys.readouterr()
    assert main(["--log-level", "WARNING", "reprocess", "--database", db_url]) == 0
    out = capsys.readouterr().out
    assert "suppress   nosuchuser@local.example.net [global]: not suppressed -> bounce/hard/userunknown" in out
    assert out.rstrip().endswith("1 suppression changes would apply (use --apply to write them)")
    assert store.is_suppressed("nosuchuser@local.example.net") is None

    assert main(["--log-level", "WARNING", "reprocess", "--apply", "--database", db_url]) == 0
    assert capsys.readouterr().out.rstrip().endswith("1 suppression changes applied")
    entry = store.is_suppressed("nosuchuser@local.example.net")
    assert entry is not None and (entry.reason, entry.bounce_type) == ("userunknown", "hard")

