"""The receivers' pure parse on the provider payloads in samples/webhooks/, one table row per file."""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml

from processor.classify import load_classifier
from processor.config import WebhookSettings
from processor.records import Event
from processor.webhooks import RECEIVERS, WebhookError, WebhookRequest
from tests.webhooks.payloads import SAMPLES, provider_of, unsigned_request

ROWS: list[dict[str, Any]] = yaml.safe_load((SAMPLES / "expected.yaml").read_text(encoding="utf-8"))
RULES = load_classifier()


def parse_sample(name: str) -> tuple[list[Event], dict[str, int]]:
    body, headers = unsigned_request(name)
    receiver = RECEIVERS[provider_of(name)]("sample", WebhookSettings())
    parsed = receiver.parse(WebhookRequest(body, headers, time.time()))
    return parsed.events, parsed.ignored


def test_every_sample_is_listed() -> None:
    """Each payload file in samples/webhooks/ has a row in its expected.yaml, and each row a file."""
    assert sorted(p.name for p in SAMPLES.glob("*.json")) == sorted(row["file"] for row in ROWS)


@pytest.mark.parametrize("row", ROWS, ids=[row["file"] for row in ROWS])
def test_payload_events_and_verdicts(row: dict[str, Any]) -> None:
    """A provider payload yields the listed events (one per recipient) and the rules' verdicts."""
    events, ignored = parse_sample(row["file"])
    got = []
    for event in events:
        verdict = RULES.classify(event)
        got.append({"recipient": event.recipient, "kind": str(event.kind), "status": event.status,
                    "reply_code": event.reply_code, "provider_category": event.provider_category,
                    "reason": verdict.reason, "bounce_type": str(verdict.bounce_type), "rule_id": verdict.rule_id})
        assert event.provider == provider_of(row["file"])
        assert event.provider_event_id
    assert got == row["events"]
    assert ignored == row.get("ignored", {})


def test_provider_category_is_evidence_not_the_verdict() -> None:
    """SES calls a 5.4.4 invalid-domain bounce Transient; the status code decides: hard."""
    events, _ = parse_sample("ses-transient-invalid-domain.json")
    verdict = RULES.classify(events[0])
    assert events[0].provider_category == "transient/general"
    assert (verdict.reason, str(verdict.bounce_type)) == ("hostunknown", "hard")


def test_ses_names_every_bounced_recipient_not_the_first_destination() -> None:
    """Every bouncedRecipients entry is an event; a destination that did not bounce is none."""
    events, _ = parse_sample("ses-bounce-two-recipients.json")
    assert [e.recipient for e in events] == ["gone.one@example.net", "gone.two@example.net"]
    assert {e.original.message_id for e in events} == {"<april-letter-7@sender.example>"}


@pytest.mark.parametrize(
    ("provider", "body"),
    [
        ("sendgrid", b'{"event": "bounce"}'),
        ("sendgrid", b"[1, 2]"),
        ("mailgun", b"[]"),
        ("postmark", b'{"RecordType": "Bounce", "TypeCode": "x", "Email": "a@example.org"}'),
        ("sparkpost", b'[{"msys": {"a": {}, "b": {}}}]'),
        ("brevo", b"not json"),
        ("standard", b'{"type": "email.bounced", "data": {}}'),
        ("ses", b'{"Type": "Notification", "Message": "{\\"notificationType\\": \\"Bounce\\"}"}'),
    ],
)
def test_malformed_bodies_are_refused_with_400(provider: str, body: bytes) -> None:
    """A body that is not the provider's shape is a WebhookError 400 that says what is wrong."""
    receiver = RECEIVERS[provider]("t", WebhookSettings())
    with pytest.raises(WebhookError) as raised:
        receiver.parse(WebhookRequest(body, {}, time.time()))
    assert raised.value.status == 400
    assert raised.value.message


@pytest.mark.parametrize(
    ("provider", "message"),
    [("sendgrid", "a SendGrid event is a JSON object"), ("brevo", "a Brevo event is a JSON object")],
)
def test_an_array_element_that_is_not_an_object_is_named(provider: str, message: str) -> None:
    """An element of an event array that is not a JSON object is a 400 in the provider's words."""
    receiver = RECEIVERS[provider]("t", WebhookSettings())
    with pytest.raises(WebhookError) as raised:
        receiver.parse(WebhookRequest(b'[{"event": "open"}, 7]', {}, time.time()))
    assert (raised.value.status, raised.value.code, raised.value.message) == (400, "malformed", message)


@pytest.mark.parametrize("provider", ["brevo", "postmark", "sparkpost"])
def test_providers_that_sign_nothing_refuse_everything_without_credentials(provider: str) -> None:
    """Brevo, Postmark and SparkPost with neither basic_auth nor bearer_tokens set refuse every
    request (401 not_configured): an open receiver would let anyone suppress any address."""
    receiver = RECEIVERS[provider]("t", WebhookSettings())
    with pytest.raises(WebhookError) as raised:
        receiver.verify(WebhookRequest(b"[]", {"authorization": "Basic dXNlcjpwYXNz"}, time.time()))
    assert (raised.value.status, raised.value.code) == (401, "not_configured")


@pytest.mark.parametrize(
    ("webhooks", "message"),
    [
        ({"Bad Name": {"provider": "ses"}}, "invalid webhook name"),
        ({"billing": {}}, "set provider = one of"),
    ],
)
def test_webhook_configuration_is_checked(webhooks: dict[str, Any], message: str) -> None:
    """A webhook name that cannot be a URL segment, or a name that is no provider without a
    provider setting, is a configuration error naming the problem."""
    from processor.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match=message):
        load_settings(None, webhooks=webhooks)
