"""The rule engine: what each kind of condition matches, rule order, results, and reloading."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.classify import RulesError, RuleSet, load_classifier
from processor.classify.engine import CompiledRules
from processor.classify.explain import _holds
from processor.classify.loader import load_rules
from processor.config import DEFAULT_RULES_DIR, RulesSettings
from processor.records import Action, BounceType, Event
from tests.classify.helpers import make_event


def one_rule(match: str, reason: str = "blocked", result_extra: str = "") -> str:
    return (
        "rules:\n"
        "  - id: probe\n"
        "    description: The rule under test.\n"
        "    match:\n"
        + "".join(f"      {line}\n" for line in match.splitlines())
        + f"    result: {{reason: {reason}, bounce_type: soft{result_extra}}}\n"
    )


CONDITIONS: list[tuple[str, dict[str, str], bool]] = [
    ("status: '5.1.1'", {"status": "5.1.1"}, True),
    ("status: '5.1.1'", {"status": "5.1.10"}, False),
    ("status: '5.1.*'", {"status": "5.1.10"}, True),
    ("status: '5.1.*'", {"status": "5.2.1"}, False),
    ("status: '4.*.*'", {"status": "4.7.650"}, True),
    ("status: '*.2.2'", {"status": "4.2.2"}, True),
    ("status: '5.01.001'", {"status": "5.1.1"}, True),
    ("status: '5.*.*'", {"status": ""}, False),
    ("reply_code: '550'", {"reply_code": "550"}, True),
    ("reply_code: '55x'", {"reply_code": "554"}, True),
    ("reply_code: '5xx'", {"reply_code": "421"}, False),
    ("reply_code: '4**'", {"reply_code": "451"}, True),
    ("smtp_command: rcpt", {"smtp_command": "RCPT"}, True),
    ("smtp_command: [MAIL, DATA]", {"smtp_command": "RCPT"}, False),
    ("diagnostic: 'user (is )?unknown'", {"diagnostic": "550 5.1.1 <a@example.org>: User Unknown"}, True),
    ("diagnostic: '(?-i)User Unknown'", {"diagnostic": "550 user unknown"}, False),
    ("diagnostic: '(?-i)User Unknown'", {"diagnostic": "550 User Unknown"}, True),
    ("diagnostic: '^550 '", {"diagnostic": "note: 550 no"}, False),
    ("diagnostic: '^550 '", {"diagnostic": "host mx.example.net[192.0.2.1] said: 550 no"}, True),
    ("diagnostic: '\\barc\\b'", {"diagnostic": "host mx1.arc.example.net[192.0.2.1] said: 550 5.1.1 unknown"}, False),
    ("diagnostic: 'spam'", {"diagnostic": "550 5.1.1 no such user, see https://example.net/spam-faq"}, False),
    ("diagnostic: 'reputation'", {"diagnostic": "550 5.1.1 <a@reputation.example>: no such user"}, False),
    ("diagnostic: 'command'", {"diagnostic": "550 no such user (in reply to RCPT TO command)"}, False),
    ("diagnostic: '<address> does not exist'", {"diagnostic": "554 user <a@example.org> does not exist"}, True),
    ("mentioned_hosts: 'spamhaus'", {"diagnostic": "554 blocked using zen.spamhaus.org"}, True),
    ("mentioned_hosts: 'example'", {"diagnostic": "host mx.example.net[192.0.2.1] said: 550 no"}, False),
    ("remote_mta: 'mx.example.net'", {"diagnostic": "host mx.example.net[192.0.2.1] said: 550 no"}, True),
    ("diagnostic: ['mailbox full', 'over quota']", {"diagnostic": "452 user over quota"}, True),
    ("diagnostic: 'x'", {"diagnostic": ""}, False),
    ("diagnostic_type: X-Unix", {"diagnostic_type": "x-unix"}, True),
    ("notice: 'disk (is )?full'", {"notice": "Your message was rejected: disk is full"}, True),
    ("notice: 'disk (is )?full'", {"diagnostic": "550 disk full"}, False),
    ("diagnostic: 'disk full'", {"notice": "disk full"}, False),
    ("notice: 'full'\ndiagnostic: 'unknown'", {"notice": "mailbox full", "diagnostic": "user unknown"}, True),
    ("remote_mta: '*.google.com'", {"remote_mta": "gmail-smtp-in.l.google.com"}, True),
    ("remote_mta: '*.google.com'", {"remote_mta": "google.com"}, False),
    ("remote_mta: 'google.com'", {"remote_mta": "Google.COM."}, True),
    ("remote_mta: 'mx*.example.net'", {"remote_mta": "mx12.example.net"}, True),
    ("remote_mta: '192.0.2.1'", {"remote_mta": "[192.0.2.1]"}, True),
    ("reporting_mta: '*.example.org'", {"reporting_mta": "relay.example.org"}, True),
    ("recipient_domain: 'example.org'", {"recipient": "Alice@Example.ORG"}, True),
    ("recipient_domain: '*.example.org'", {"recipient": "alice@example.org"}, False),
    ("kind: delay", {"kind": "delay"}, True),
    ("kind: delay", {"kind": "failure"}, False),
    ("feedback_type: abuse", {"kind": "complaint", "feedback_type": "Abuse"}, True),
    ("mta: postfix", {"mta": "postfix"}, True),
    ("mta: postfix", {"mta": "exim"}, False),
    ("dsn_action: failed", {"dsn_action": "failed"}, True),
    ("names_recipient: true", {"recipient": "Ann@Example.org", "diagnostic": "550 <ann@example.org>: no"}, True),
    ("names_recipient: true", {"recipient": "ann@example.org", "diagnostic": "550 <bob@example.org>: no"}, False),
    ("names_recipient: no", {"recipient": "ann@example.org", "diagnostic": "550 user unknown"}, True),
    # a server naming its own user by local part alone ("User <ann> unknown")
    ("names_recipient: true", {"recipient": "ann@example.org", "diagnostic": "550 User <ann> unknown"}, True),
    ("names_recipient: true", {"recipient": "ann@example.org", "diagnostic": "550 User <anna> unknown"}, False),
    ("names_recipient: true", {"recipient": "ann@example.org", "diagnostic": "550 ann: not here"}, False),
    ("status: '5.1.1'\nsmtp_command: RCPT", {"status": "5.1.1", "smtp_command": "DATA"}, False),
    ("status: '5.1.1'\nsmtp_command: RCPT", {"status": "5.1.1", "smtp_command": "RCPT"}, True),
    ("any: [{status: '5.1.1'}, {smtp_command: RCPT}]", {"smtp_command": "RCPT"}, True),
    ("any: [{status: '5.1.1'}, {smtp_command: RCPT}]", {"smtp_command": "DATA"}, False),
    ("all: [{status: '5.*.*'}, {diagnostic: 'unknown'}]", {"status": "5.1.1", "diagnostic": "unknown"}, True),
    ("not: {status: '4.*.*'}", {"status": "4.4.1"}, False),
    ("not: {status: '4.*.*'}", {"status": ""}, True),
    ("not: {any: [{kind: delay}, {status: '4.*.*'}]}", {"status": "5.1.1"}, True),
    ("{}", {"kind": "delay"}, True),
]


@pytest.mark.parametrize(("match", "fields", "matches"), CONDITIONS)
def test_condition_matches_event(
    rule_dir: Callable[..., Path], match: str, fields: dict[str, str], matches: bool
) -> None:
    """Each condition matches exactly the events its pattern syntax promises."""
    rules = RuleSet([rule_dir(one_rule(match))])
    verdict = rules.classify(make_event(**fields))
    assert (verdict.rule_id == "probe") is matches


def test_first_matching_rule_wins(rule_dir: Callable[..., Path]) -> None:
    """Rules are tried top to bottom; the first that matches gives the verdict."""
    text = (
        "rules:\n"
        "  - {id: speeding, description: d, match: {diagnostic: 'too many recipients this hour'},"
        " result: {reason: speeding, bounce_type: soft}}\n"
        "  - {id: unknown, description: d, match: {status: '5.1.1'},"
        " result: {reason: userunknown, bounce_type: hard}}\n"
    )
    rules = RuleSet([rule_dir(text)])
    rate = rules.classify(make_event(status="5.1.1", diagnostic="550 5.1.1 has sent to too many recipients this hour"))
    unknown = rules.classify(make_event(status="5.1.1", diagnostic="550 5.1.1 no such user"))
    assert (rate.reason, rate.bounce_type, rate.rule_id) == ("speeding", BounceType.SOFT, "speeding")
    assert (unknown.reason, unknown.bounce_type, unknown.rule_id) == ("userunknown", BounceType.HARD, "unknown")


def test_files_are_read_in_name_order(rule_dir: Callable[..., Path]) -> None:
    """Rules of 10-a.yaml come before those of 20-b.yaml, whatever the order on disk."""
    directory = rule_dir(
        **{
            "20-b_yaml": one_rule("status: '5.1.*'", reason="filtered").replace("probe", "later"),
            "10-a_yaml": one_rule("status: '5.1.1'", reason="suspend").replace("probe", "earlier"),
        }
    )
    assert RuleSet([directory]).classify(make_event(status="5.1.1")).rule_id == "earlier"


def test_operator_rules_come_before_defaults(rule_dir: Callable[..., Path]) -> None:
    """An operator directory is consulted before the default rules."""
    mine = rule_dir(one_rule("remote_mta: '*.mx.acme.example'\ndiagnostic: 'box at capacity'", reason="mailboxfull"))
    rules = load_classifier(RulesSettings(dirs=[mine]))
    event = make_event(status="5.1.1", remote_mta="in1.mx.acme.example", diagnostic="550 5.1.1 box at capacity")
    verdict = rules.classify(event)
    assert (verdict.rule_id, verdict.reason, verdict.bounce_type) == ("probe", "mailboxfull", BounceType.SOFT)
    assert (
        rules.classify(make_event(status="5.1.1", diagnostic="550 5.1.1 user unknown")).bounce_type is BounceType.HARD
    )


def test_defaults_can_be_left_out(rule_dir: Callable[..., Path]) -> None:
    """include_defaults = false uses only the operator's rules."""
    mine = rule_dir(one_rule("kind: delay"))
    rules = load_classifier(RulesSettings(dirs=[mine], include_defaults=False))
    assert [r.id for r in rules.rules] == ["probe"]


def test_unmatched_event_is_undetermined_not_dropped(rule_dir: Callable[..., Path]) -> None:
    """An event no rule matches still gets a verdict: undefined / undetermined, no rule id."""
    rules = RuleSet([rule_dir(one_rule("status: '5.1.1'"))])
    event = make_event(status="5.9.9", diagnostic="something new")
    verdict = rules.classify(event)
    assert verdict.event is event
    assert (verdict.reason, verdict.bounce_type, verdict.rule_id) == ("undefined", BounceType.UNDETERMINED, "")


def test_result_carries_action_and_ttl(rule_dir: Callable[..., Path]) -> None:
    """A rule's action override and ttl reach the verdict."""
    rules = RuleSet([rule_dir(one_rule("kind: failure", result_extra=", action: ignore, ttl: 36h"))])
    verdict = rules.classify(make_event())
    assert verdict.action is Action.IGNORE
    assert verdict.ttl is not None and verdict.ttl.total_seconds() == 36 * 3600


def test_invalid_rules_refuse_to_load(rule_dir: Callable[..., Path]) -> None:
    """Loading invalid rules raises RulesError listing every problem with file and line."""
    with pytest.raises(RulesError) as caught:
        RuleSet([rule_dir(one_rule("status: '5.1'\nkind: bounce"))])
    assert [p.location.line for p in caught.value.problems] == [5, 6]
    assert "rules.yaml:5: rule 'probe': invalid status pattern '5.1'" in str(caught.value)


def test_failed_reload_keeps_previous_rules(rule_dir: Callable[..., Path]) -> None:
    """A reload that finds a problem returns it and keeps classifying with the old rules."""
    directory = rule_dir(one_rule("status: '5.1.1'", reason="suspend"))
    rules = RuleSet([directory])
    assert not rules.changed()
    (directory / "rules.yaml").write_text(one_rule("status: '5.1.1'\ndiagnostic: 'a(b'"), encoding="utf-8")
    assert rules.changed()
    problems = rules.reload()
    assert [p.location.line for p in problems] == [6]
    assert "invalid diagnostic pattern 'a(b'" in problems[0].message
    assert rules.classify(make_event(status="5.1.1")).reason == "suspend"
    assert not rules.changed()


def test_successful_reload_switches_rules(rule_dir: Callable[..., Path]) -> None:
    """A valid reload replaces the rules; new files in the directory are picked up."""
    directory = rule_dir(one_rule("status: '5.*.*'", reason="suspend"))
    rules = RuleSet([directory])
    (directory / "00-first.yaml").write_text(
        one_rule("status: '5.1.1'", reason="filtered").replace("probe", "first"), encoding="utf-8"
    )
    assert rules.changed()
    assert rules.reload() == []
    verdict = rules.classify(make_event(status="5.1.1"))
    assert (verdict.rule_id, verdict.reason) == ("first", "filtered")


def test_many_rules_share_one_regex_pass(rule_dir: Callable[..., Path]) -> None:
    """Thousands of regex rules compile into a few RE2 sets and still pick the right rule."""
    body = "".join(
        f"  - {{id: r{i}, description: d, match: {{diagnostic: 'code {i}\\b'}},"
        f" result: {{reason: blocked, bounce_type: soft}}}}\n"
        for i in range(1500)
    )
    rules = RuleSet([rule_dir("rules:\n" + body)])
    assert rules.classify(make_event(diagnostic="550 refused, code 1234 see docs")).rule_id == "r1234"
    assert rules.classify(make_event(diagnostic="550 refused, code 12345")).rule_id == ""


# --- the indexed matcher agrees with plain in-order evaluation -----------------------------------

STATUSES = ["", "5.1.1", "5.1.10", "4.4.7", "5.7.1", "5.2.2", "4.2.2", "5.0.0", "5.4.4", "4.0.0", "5.7.26"]
REPLIES = ["", "550", "554", "421", "452", "501", "552"]
COMMANDS = ["", "CONN", "EHLO", "MAIL", "RCPT", "DATA"]
PHRASES = [
    "User unknown",
    "no such user here",
    "Mailbox full",
    "blocked using zen.spamhaus.org",
    "Relay access denied",
    "sender address rejected",
    "Message expired",
    "over quota",
    "DMARC policy",
    "spam",
    "Connection timed out",
    "Host or domain name not found",
    "rate limited due to IP reputation",
    "account disabled",
    "<a@example.org>",
    "PTR record",
    "too many recipients this hour",
    "Header error",
    "virus found",
    "On hold",
    "<someone@example.org>",
]
HOSTS = ["", "mx.example.com", "gmail-smtp-in.l.google.com", "route1.mx.cloudflare.net", "mx01.mail.icloud.com"]

events = st.builds(
    lambda kind, status, reply, command, words, host, mta: make_event(
        kind,
        status=status,
        reply_code=reply,
        smtp_command=command,
        diagnostic=" ".join(words),
        remote_mta=host,
        mta=mta,
        recipient="someone@example.org",
    ),
    st.sampled_from(["failure", "failure", "delay", "complaint", "auto_reply", "delivered"]),
    st.sampled_from(STATUSES),
    st.sampled_from(REPLIES),
    st.sampled_from(COMMANDS),
    st.lists(st.sampled_from(PHRASES), max_size=3),
    st.sampled_from(HOSTS),
    st.sampled_from(["", "postfix", "exim", "googlegroups", "verizon"]),
)


def _plain_first_match(compiled: CompiledRules, event: Event) -> str:
    for rule in compiled.rules:
        if _holds(rule.condition, event):
            return rule.id
    return ""


@settings(max_examples=400, deadline=None)
@given(event=events)
def test_indexed_matching_agrees_with_plain_evaluation(event: Event) -> None:
    """The trigger index and combined regex sets pick the same rule as checking every rule in order."""
    compiled = _default_rules()
    assert compiled.classify(event).rule_id == _plain_first_match(compiled, event)


_CACHE: dict[str, CompiledRules] = {}


def _default_rules() -> CompiledRules:
    if "default" not in _CACHE:
        rules, problems = load_rules([DEFAULT_RULES_DIR])
        assert problems == []
        _CACHE["default"] = CompiledRules(rules)
    return _CACHE["default"]


def test_regex_memo_gives_the_matched_answer_and_stays_bounded(
    rule_dir: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reply seen before (for another recipient) is answered from the memo with what matching
    gives; the memo never holds more than MEMO_ENTRIES texts, nor a text over MEMO_CHARACTERS."""
    from processor.classify import engine

    monkeypatch.setattr(engine, "MEMO_ENTRIES", 3)
    monkeypatch.setattr(engine, "MEMO_CHARACTERS", 200)
    rules = RuleSet([rule_dir(one_rule("diagnostic: 'user (unknown|gone)'"))])
    compiled = rules.compiled
    texts = [entry for _, entry in compiled._texts]
    assert len(texts) == 1
    memo = texts[0]._memo
    for i in range(10):
        event = make_event(diagnostic=f"550 <user{i}@example.org>: user unknown", recipient=f"user{i}@example.org")
        assert rules.classify(event).rule_id == "probe"
        assert rules.classify(make_event(diagnostic=f"550 mailbox {i} full")).rule_id == ""
        assert len(memo) <= 3
    assert "550 <address>: user unknown" in memo  # the masked reply, not one recipient's
    long = "550 " + "x" * 300 + " user gone"
    assert rules.classify(make_event(diagnostic=long)).rule_id == "probe"
    assert rules.classify(make_event(diagnostic=long)).rule_id == "probe"
    assert all(len(text) <= 200 for text in memo)


def _problems(directories: list[Path]) -> list[str]:
    with pytest.raises(RulesError) as caught:
        RuleSet(directories)
    return [str(p) for p in caught.value.problems]


def test_regexes_checked_by_compiling_report_what_the_full_check_reports(
    rule_dir: Callable[..., Path], tmp_path: Path
) -> None:
    """``RuleSet`` reads the files without compiling each regex alone (the rule engine compiles
    them): a regex RE2 refuses is still reported as ``load_rules`` reports it, at its file:line,
    whether a rule uses it, an operator's rule replaces the rule that has it, or it is in a phrase
    family that no rule cites; with the other problems of the files."""
    broken = rule_dir(one_rule("diagnostic: 'a(b'"))
    problems = _problems([broken])
    assert problems == [str(p) for p in load_rules([broken])[1]] and len(problems) == 1
    assert "rules.yaml:5: rule 'probe': invalid diagnostic pattern 'a(b'" in problems[0]

    replaced = rule_dir(one_rule("status: '5.1.1'"))
    problems = _problems([replaced, broken])
    assert problems == [str(p) for p in load_rules([replaced, broken])[1]] and len(problems) == 1

    both = rule_dir(one_rule("diagnostic: 'a(b'\nstatus: '5.1'"))
    problems = _problems([both])
    assert problems == [str(p) for p in load_rules([both])[1]] and len(problems) == 2

    uncited = rule_dir(one_rule("status: '5.1.1'"))
    (uncited / "phrases").mkdir()
    (uncited / "phrases" / "odd.yaml").write_text(
        "family: odd\ndescription: d\nphrases:\n  - 'fine'\n  - 'user(?= unknown)'\n", encoding="utf-8"
    )
    problems = _problems([uncited])
    assert problems == [str(p) for p in load_rules([uncited])[1]] and len(problems) == 1
    assert "odd.yaml:5:" in problems[0] and "invalid diagnostic pattern 'user(?= unknown)'" in problems[0]

    fine = rule_dir(one_rule("diagnostic: 'user (unknown|gone)'"))
    (fine / "phrases").mkdir()
    (fine / "phrases" / "spare.yaml").write_text("family: spare\ndescription: d\nphrases: ['spare (one|two)']\n")
    assert RuleSet([fine]).classify(make_event(diagnostic="550 user gone")).rule_id == "probe"


def test_unchecked_regexes_are_collected_not_compiled(rule_dir: Callable[..., Path]) -> None:
    unchecked: set[str] = set()
    rules, problems = load_rules([rule_dir(one_rule("diagnostic: ['a(b', 'c d']"))], unchecked=unchecked)
    assert problems == [] and unchecked == {"a(b", "c d"} and len(rules) == 1


def test_every_field_has_a_reader() -> None:
    from processor.classify.schema import FIELD_GETTERS, FIELDS, field_value

    assert set(FIELD_GETTERS) == set(FIELDS)
    with pytest.raises(KeyError):
        field_value(make_event(), "no_such_field")
