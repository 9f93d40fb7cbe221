"""The default rules in rules/: valid, safe about 'hard', and right on typical replies."""

from __future__ import annotations

import pytest
import yaml

from processor.classify import RuleSet
from processor.classify.loader import load_rules
from processor.classify.schema import ADDRESS_REASONS, AllOf, FieldTest
from processor.cli import main
from processor.config import DEFAULT_RULES_DIR
from processor.parse import parse
from processor.records import BounceType
from tests.classify.helpers import make_event
from tests.conftest import SAMPLES

DEFAULTS = RuleSet([DEFAULT_RULES_DIR])


def test_default_rules_pass_rules_check(capsys: pytest.CaptureFixture[str]) -> None:
    """`bounce-processor rules check rules/` finds no problem in the default rules."""
    assert main(["rules", "check", str(DEFAULT_RULES_DIR)]) == 0
    assert "are valid" in capsys.readouterr().out


def test_every_default_rule_is_documented() -> None:
    """Every default rule has a one-line description."""
    rules, problems = load_rules([DEFAULT_RULES_DIR])
    assert problems == []
    assert all(r.description and "\n" not in r.description for r in rules)


def test_default_hard_rules_are_about_the_address_and_need_a_failure() -> None:
    """Only address reasons are hard, and only for failures (a delay is never hard)."""
    for rule in DEFAULTS.rules:
        if rule.result.bounce_type is not BounceType.HARD:
            continue
        assert rule.result.reason in ADDRESS_REASONS, rule.id
        tests = rule.condition.children if isinstance(rule.condition, AllOf) else (rule.condition,)
        assert FieldTest("kind", ("failure",), tests[0].location) in tests, rule.id


HARD, SOFT = BounceType.HARD, BounceType.SOFT

# (event fields, expected reason, expected bounce type): typical replies of real MTAs and providers,
# written for this table.
BEHAVIOUR: list[tuple[dict[str, str], str, BounceType]] = [
    (
        {"status": "5.1.1", "smtp_command": "RCPT",
         "diagnostic": "550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown in local table"},
        "userunknown", HARD,
    ),
    ({"status": "5.1.1", "diagnostic": "550-5.1.1 The email account that you tried to reach does not exist."},
     "userunknown", HARD),
    ({"status": "5.1.10", "diagnostic": "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found"},
     "userunknown", HARD),
    ({"status": "5.0.0", "recipient": "carol@example.org", "diagnostic": "550 <carol@example.org>... No such user"},
     "userunknown", HARD),
    (
        {"status": "4.1.1", "smtp_command": "RCPT",
         "diagnostic": "450 4.1.1 <dan@example.org>: Recipient address rejected: User unknown in virtual alias table"},
        "userunknown", HARD,
    ),
    ({"status": "5.1.2", "diagnostic": "Host or domain name not found. Name service error for name=nowhere.example"},
     "hostunknown", HARD),
    ({"status": "5.1.6", "diagnostic": "551 5.1.6 user has moved"}, "hasmoved", HARD),
    ({"status": "5.4.4", "diagnostic": "an MX or SRV record indicated no SMTP service"}, "notaccept", HARD),
    ({"status": "4.0.0", "diagnostic": "The domain example.net doesn't receive email: returned Null MX"},
     "notaccept", SOFT),
    # 5xx for reasons on OUR side or in the message: never hard.
    ({"status": "5.7.1", "diagnostic": "554 5.7.1 Client host [192.0.2.1] blocked using zen.spamhaus.org"},
     "blocked", SOFT),
    ({"status": "5.1.1", "diagnostic": "550 5.1.1 <eve@example.org> - has sent to too many recipients this hour"},
     "speeding", SOFT),
    ({"status": "5.7.1", "smtp_command": "RCPT", "diagnostic": "554 5.7.1 Helo command rejected: Host not found"},
     "blocked", SOFT),
    ({"status": "5.7.26", "diagnostic": "550-5.7.26 Unauthenticated email from example.com is not accepted (DMARC)"},
     "authfailure", SOFT),
    ({"status": "5.7.1", "diagnostic": "550 5.7.1 Our system has detected that this message is unsolicited mail"},
     "spamdetected", SOFT),
    ({"status": "4.7.650", "diagnostic": "451 4.7.650 The mail server has been rate limited due to IP reputation"},
     "badreputation", SOFT),
    ({"status": "5.7.1", "diagnostic": "550 5.7.1 Connections not accepted from servers without valid reverse DNS"},
     "requireptr", SOFT),
    ({"status": "5.2.2", "diagnostic": "552 5.2.2 <gina@example.org>: user is over quota"}, "mailboxfull", SOFT),
    ({"status": "5.2.1", "diagnostic": "550 5.2.1 The email account that you tried to reach is disabled"},
     "suspend", SOFT),
    ({"status": "5.1.8", "smtp_command": "MAIL", "diagnostic": "553 5.1.8 <news@example.com>: Sender address rejected"},
     "rejected", SOFT),
    ({"smtp_command": "CONN", "reply_code": "554", "diagnostic": "554 mx.example.net ESMTP not accepting"},
     "blocked", SOFT),
    ({"status": "5.7.1", "diagnostic": "554 5.7.1 <helen@example.org>: Relay access denied"}, "norelaying", SOFT),
    ({"status": "5.3.4", "diagnostic": "552 5.3.4 Message size exceeds fixed limit"}, "mesgtoobig", SOFT),
    ({"status": "5.7.1", "diagnostic": "550 5.7.1 Message rejected: virus found in attachment"}, "virusdetected", SOFT),
    ({"status": "5.4.6", "diagnostic": "554 5.4.6 Hop count exceeded - possible mail loop"}, "networkerror", SOFT),
    # A filter's "user unknown": after DATA, or bare with no status, stage or address.
    ({"status": "5.0.0", "smtp_command": "DATA", "diagnostic": "550 Unknown user ivan@example.org"}, "filtered", SOFT),
    ({"status": "5.0.0", "diagnostic": "550 user unknown"}, "filtered", SOFT),
    # the reporting MTA's own router: no remote server, no reply code, no SMTP stage
    ({"status": "5.0.0", "diagnostic": "Unknown user"}, "userunknown", HARD),
    ({"status": "5.0.0", "diagnostic": "Unknown user", "remote_mta": "mx.example.net"}, "filtered", SOFT),
    ({"status": "4.0.0", "diagnostic": "Unknown user"}, "filtered", SOFT),
    ({"status": "5.0.0", "diagnostic": "550 : User unknown"}, "filtered", SOFT),
    # Delays and temporary failures are soft whatever they say.
    ({"kind": "delay", "status": "4.1.1", "diagnostic": "450 4.1.1 <judy@example.org>: User unknown"}, "expired", SOFT),
    ({"kind": "delay", "status": "4.4.1", "diagnostic": "connect to mx.example.net: Connection timed out"},
     "expired", SOFT),
    ({"status": "4.7.1", "diagnostic": "451 4.7.1 greylisted, please try again later"}, "expired", SOFT),
    # Reports that are not failures.
    ({"kind": "complaint", "feedback_type": "abuse"}, "feedback", BounceType.COMPLAINT),
    ({"kind": "auto_reply", "diagnostic": "I am out of the office until Monday"}, "vacation", BounceType.AUTO_REPLY),
    ({"kind": "delivered", "status": "2.0.0"}, "delivered", BounceType.DELIVERED),
    # Nothing recognisable: undetermined, not hard.
    ({"status": "5.0.0", "reply_code": "550", "diagnostic": "550 Requested action not taken"},
     "undefined", BounceType.UNDETERMINED),
]


@pytest.mark.parametrize(("fields", "reason", "bounce_type"), BEHAVIOUR)
def test_default_rules_classify_typical_replies(
    fields: dict[str, str], reason: str, bounce_type: BounceType
) -> None:
    """Typical replies get the reason and bounce type the default rules promise."""
    verdict = DEFAULTS.classify(make_event(**fields))
    assert (verdict.reason, verdict.bounce_type) == (reason, bounce_type), verdict.rule_id


def _listed_samples() -> list[str]:
    """Sample files listed in samples/expected.yaml, samples/mta/expected.yaml (paths relative to
    samples/) and, if present, samples/rules/expected.yaml (relative to samples/rules/)."""
    files: list[str] = []
    for listing, base in (
        (SAMPLES / "expected.yaml", SAMPLES),
        (SAMPLES / "mta" / "expected.yaml", SAMPLES),
        (SAMPLES / "rules" / "expected.yaml", SAMPLES / "rules"),
    ):
        if listing.is_file():
            rows = yaml.safe_load(listing.read_text(encoding="utf-8")) or []
            files.extend(str((base / row["file"]).relative_to(SAMPLES)) for row in rows)
    return files


def test_every_default_rule_is_hit_by_a_sample() -> None:
    """Each default rule decides at least one sample listed in the samples' expected.yaml files."""
    hit: set[str] = set()
    for name in _listed_samples():
        for event in parse((SAMPLES / name).read_bytes()):
            hit.add(DEFAULTS.classify(event).rule_id)
    hit |= _webhook_rule_ids()
    never = [rule.id for rule in DEFAULTS.rules if rule.id not in hit]
    assert never == []


def _webhook_rule_ids() -> set[str]:
    """The rules that decide the provider payloads of samples/webhooks/expected.yaml (the rules
    about providers' categories can only be reached by a webhook)."""
    listing = SAMPLES / "webhooks" / "expected.yaml"
    rows = yaml.safe_load(listing.read_text(encoding="utf-8")) or []
    return {event["rule_id"] for row in rows for event in row["events"]}
