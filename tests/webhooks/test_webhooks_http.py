"""Provider webhooks through the real HTTP server: signed with keys the test makes, good requests
are stored once, every kind of forgery gets a 4xx and changes nothing."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable

import httpx
import pytest
import sqlalchemy as sa

from processor.config import WebhookSettings
from processor.store import Store
from processor.webhooks import WebhookError, WebhookRequest
from processor.webhooks.ses import SesReceiver
from tests.api.conftest import RunningServer
from tests.webhooks.conftest import CERT_PATH, CertHost
from tests.webhooks.payloads import (
    TOPIC,
    Keys,
    basic_header,
    mailgun_body,
    rsa_certificate,
    sample,
    sendgrid_headers,
    sns_envelope,
    standard_headers,
)


def post(api: RunningServer, name: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{api.base_url}/v1/webhooks/{name}", content=body, headers=headers or {}, timeout=10)


def rows(store: Store, table: str) -> int:
    with store.engine.connect() as conn:
        count: int = conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
    return count


def assert_nothing_stored(store: Store) -> None:
    assert (rows(store, "processed_message"), rows(store, "event"), rows(store, "suppression")) == (0, 0, 0)


def suppressed(store: Store, address: str) -> str | None:
    entry = store.is_suppressed(address)
    return None if entry is None else f"{entry.source}/{entry.bounce_type}/{entry.reason}"


def sns_body(envelope: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    return json.dumps(envelope).encode(), {"x-amz-sns-message-type": envelope["Type"],
                                           "x-amz-sns-message-id": envelope["MessageId"],
                                           "Content-Type": "text/plain; charset=UTF-8"}


# --------------------------------------------------------------------------- SES via SNS


@pytest.mark.parametrize("version", ["1", "2"])
def test_ses_notification_suppresses_every_bounced_recipient(
    api: RunningServer, store: Store, keys: Keys, cert_host: CertHost, version: str
) -> None:
    """A signed SES bounce (SignatureVersion 1 and 2) suppresses each bounced recipient, not the
    first destination; the certificate is fetched once and cached."""
    body, headers = sns_body(sns_envelope(sample("ses-bounce-two-recipients.json"), cert_host.cert_url,
                                          key=keys.sns_key, version=version))
    response = post(api, "ses", body, headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"recorded": 2, "duplicates": 0, "ignored": 0}
    assert suppressed(store, "gone.one@example.net") == "bounce/hard/userunknown"
    assert suppressed(store, "gone.two@example.net") == "bounce/hard/userunknown"
    assert suppressed(store, "fine@example.net") is None
    body, headers = sns_body(sns_envelope(sample("ses-complaint.json"), cert_host.cert_url, key=keys.sns_key,
                                          version=version))
    assert post(api, "ses", body, headers).json()["recorded"] == 1
    assert suppressed(store, "annoyed@example.com") == "complaint/complaint/feedback"
    assert cert_host.requests.count(CERT_PATH) == 1


def test_ses_redelivery_is_recorded_once(api: RunningServer, store: Store, keys: Keys, cert_host: CertHost) -> None:
    """SNS retrying the same message records nothing more: the answer counts duplicates."""
    body, headers = sns_body(sns_envelope(sample("ses-bounce-two-recipients.json"), cert_host.cert_url,
                                          key=keys.sns_key))
    assert post(api, "ses", body, headers).json()["recorded"] == 2
    again = post(api, "ses", body, headers)
    assert again.status_code == 200
    assert again.json() == {"recorded": 0, "duplicates": 2, "ignored": 0}
    assert rows(store, "event") == 2


def test_ses_event_publishing_form_and_transient_invalid_domain(
    api: RunningServer, store: Store, keys: Keys, cert_host: CertHost
) -> None:
    """An ``eventType`` message is read like a notification; SES's Transient 5.4.4 is hard here."""
    body, headers = sns_body(sns_envelope(sample("ses-transient-invalid-domain.json"), cert_host.cert_url,
                                          key=keys.sns_key))
    assert post(api, "ses", body, headers).status_code == 200
    assert suppressed(store, "someone@no-such-domain.example") == "bounce/hard/hostunknown"


def _forged_ses(keys: Keys, cert_host: CertHost, forgery: str) -> tuple[bytes, dict[str, str]]:
    message = sample("ses-bounce-two-recipients.json")
    if forgery == "wrong key":
        other, _ = rsa_certificate()
        return sns_body(sns_envelope(message, cert_host.cert_url, key=other))
    if forgery == "changed body":
        envelope = sns_envelope(message, cert_host.cert_url, key=keys.sns_key)
        envelope["Message"] = envelope["Message"].replace("gone.two@example.net", "victim@example.net")
        return sns_body(envelope)
    if forgery == "unknown topic":
        return sns_body(sns_envelope(message, cert_host.cert_url, key=keys.sns_key,
                                     topic="arn:aws:sns:eu-west-1:999999999999:someone-else"))
    if forgery == "certificate from a foreign host":
        return sns_body(sns_envelope(message, "https://sns.eu-west-1.attacker.example/cert.pem", key=keys.sns_key))
    if forgery == "certificate over http":
        return sns_body(sns_envelope(message, cert_host.cert_url.replace("https:", "http:"), key=keys.sns_key))
    if forgery == "stale timestamp":
        return sns_body(sns_envelope(message, cert_host.cert_url, key=keys.sns_key, timestamp=time.time() - 3 * 3600))
    if forgery == "header disagrees":
        body, headers = sns_body(sns_envelope(message, cert_host.cert_url, key=keys.sns_key))
        return body, {**headers, "x-amz-sns-message-type": "SubscriptionConfirmation"}
    if forgery == "unsupported version":
        envelope = sns_envelope(message, cert_host.cert_url, key=keys.sns_key)
        envelope["SignatureVersion"] = "3"
        return sns_body(envelope)
    raise AssertionError(forgery)


SES_FORGERIES = ["wrong key", "changed body", "unknown topic", "certificate from a foreign host",
                 "certificate over http", "stale timestamp", "header disagrees", "unsupported version"]


@pytest.mark.parametrize("forgery", SES_FORGERIES)
def test_ses_forgeries_are_refused(
    api: RunningServer, store: Store, keys: Keys, cert_host: CertHost, forgery: str
) -> None:
    """Each forged SNS message gets a 4xx and changes nothing; a foreign certificate URL is never fetched."""
    body, headers = _forged_ses(keys, cert_host, forgery)
    response = post(api, "ses", body, headers)
    assert 400 <= response.status_code < 500, response.text
    assert_nothing_stored(store)
    if forgery in ("unknown topic", "certificate from a foreign host", "certificate over http", "stale timestamp"):
        assert cert_host.requests == []


def test_ses_certificate_host_must_present_a_trusted_tls_certificate(
    db_url: str, keys: Keys, cert_host: CertHost
) -> None:
    """The certificate host's TLS is verified: with a CA that did not sign it, the message is refused."""
    receiver = SesReceiver("ses", WebhookSettings(topic_arns=[TOPIC], cert_host_pattern=r"localhost:\d+",
                                                  cert_ca_file=cert_host.other_ca_file))
    body, headers = sns_body(sns_envelope(sample("ses-complaint.json"), cert_host.cert_url, key=keys.sns_key))
    with pytest.raises(WebhookError) as refused:
        receiver.verify(WebhookRequest(body, headers, time.time()))
    assert refused.value.code == "bad_certificate"


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem", True),
        ("https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem", True),
        ("https://sns.us-east-1.amazonaws.com.attacker.example/x.pem", False),
        ("https://evilsns.us-east-1.amazonaws.com/x.pem", False),
        ("https://sns.us-east-1.amazonaws.com:8443/x.pem", False),
        ("https://user:pw@sns.us-east-1.amazonaws.com/x.pem", False),
        ("http://sns.us-east-1.amazonaws.com/x.pem", False),
        ("https://localhost:4443/SimpleNotificationService-abc.pem", False),
    ],
)
def test_production_default_allows_only_the_sns_host_pattern(url: str, allowed: bool) -> None:
    """By default only https://sns.<region>.amazonaws.com(.cn) may serve certificates or confirmations."""
    assert SesReceiver("ses", WebhookSettings(topic_arns=[TOPIC])).allowed_url(url) is allowed


def test_ses_subscription_is_confirmed_and_unsubscription_only_noted(
    api: RunningServer, store: Store, keys: Keys, cert_host: CertHost
) -> None:
    """A SubscriptionConfirmation GETs its SubscribeURL; an UnsubscribeConfirmation never does."""
    confirm = cert_host.base_url + "/confirm?Action=ConfirmSubscription&Token=t1"
    extra = {"SubscribeURL": confirm, "Token": "t1"}
    body, headers = sns_body(sns_envelope("You have chosen to subscribe.", cert_host.cert_url, key=keys.sns_key,
                                          kind="SubscriptionConfirmation", extra=extra))
    response = post(api, "ses", body, headers)
    assert response.status_code == 200, response.text
    assert response.json()["note"] == "subscription confirmed"
    assert "/confirm?Action=ConfirmSubscription&Token=t1" in cert_host.requests
    cert_host.requests.clear()
    body, headers = sns_body(sns_envelope("You have unsubscribed.", cert_host.cert_url, key=keys.sns_key,
                                          kind="UnsubscribeConfirmation",
                                          extra={"SubscribeURL": confirm.replace("t1", "t2"), "Token": "t2"}))
    assert post(api, "ses", body, headers).status_code == 200
    assert [p for p in cert_host.requests if p.startswith("/confirm")] == []
    assert_nothing_stored(store)


def test_ses_subscription_to_a_foreign_url_is_refused(
    api: RunningServer, store: Store, keys: Keys, cert_host: CertHost
) -> None:
    """A SubscribeURL outside the allowed hosts is not fetched: 400."""
    extra = {"SubscribeURL": "https://attacker.example/confirm", "Token": "t3"}
    body, headers = sns_body(sns_envelope("subscribe", cert_host.cert_url, key=keys.sns_key,
                                          kind="SubscriptionConfirmation", extra=extra))
    response = post(api, "ses", body, headers)
    assert response.status_code == 400
    assert response.json()["error"] == "bad_subscribe_url"


# --------------------------------------------------------------------------- SendGrid


def test_sendgrid_batch_is_recorded_once(api: RunningServer, store: Store, keys: Keys) -> None:
    """A signed batch records each deliverability event once; a redelivery only counts duplicates."""
    body = json.dumps(sample("sendgrid-batch.json")).encode()
    response = post(api, "sendgrid", body, sendgrid_headers(body, keys.sendgrid_key))
    assert response.json() == {"recorded": 5, "duplicates": 0, "ignored": 1}
    assert suppressed(store, "ghost@example.net") == "bounce/hard/userunknown"
    assert suppressed(store, "angry@example.net") == "complaint/complaint/feedback"
    assert suppressed(store, "known@example.net") is None  # SendGrid's own list: no new evidence
    again = post(api, "sendgrid", body, sendgrid_headers(body, keys.sendgrid_key))
    assert again.json() == {"recorded": 0, "duplicates": 5, "ignored": 1}
    assert rows(store, "event") == 5


@pytest.mark.parametrize("forgery", ["wrong key", "changed body", "stale timestamp", "no signature"])
def test_sendgrid_forgeries_are_refused(api: RunningServer, store: Store, keys: Keys, forgery: str) -> None:
    """A SendGrid batch with a wrong key, a changed body, an old timestamp or no signature: 400."""
    from cryptography.hazmat.primitives.asymmetric import ec

    body = json.dumps(sample("sendgrid-batch.json")).encode()
    headers = sendgrid_headers(body, keys.sendgrid_key)
    if forgery == "wrong key":
        headers = sendgrid_headers(body, ec.generate_private_key(ec.SECP256R1()))
    elif forgery == "changed body":
        body = body.replace(b"walled@example.net", b"victim@example.net")
    elif forgery == "stale timestamp":
        headers = sendgrid_headers(body, keys.sendgrid_key, timestamp=int(time.time()) - 3600)
    else:
        headers = {"Content-Type": "application/json"}
    response = post(api, "sendgrid", body, headers)
    assert response.status_code == 400
    assert_nothing_stored(store)


# --------------------------------------------------------------------------- Mailgun


def test_mailgun_events_and_replayed_token(api: RunningServer, store: Store, keys: Keys) -> None:
    """Signed Mailgun events are recorded; the same token again is a replay (400)."""
    body = mailgun_body(sample("mailgun-permanent.json"), keys.mailgun_key)
    assert post(api, "mailgun", body).json()["recorded"] == 1
    assert suppressed(store, "vanished@example.org") == "bounce/hard/userunknown"
    replay = post(api, "mailgun", body)
    assert (replay.status_code, replay.json()["error"]) == (400, "replayed")
    assert post(api, "mailgun", mailgun_body(sample("mailgun-temporary.json"), keys.mailgun_key)).status_code == 200
    assert suppressed(store, "brimful@example.org") is None  # one temporary failure: counted, not suppressed
    assert post(api, "mailgun", mailgun_body(sample("mailgun-complaint.json"), keys.mailgun_key)).status_code == 200
    assert suppressed(store, "unhappy@example.org") == "complaint/complaint/feedback"


@pytest.mark.parametrize("forgery", ["wrong key", "stale timestamp", "changed signature"])
def test_mailgun_forgeries_are_refused(api: RunningServer, store: Store, keys: Keys, forgery: str) -> None:
    """A wrong signing key, an old timestamp or an edited signature: 400, nothing stored."""
    event = sample("mailgun-permanent.json")
    if forgery == "wrong key":
        body = mailgun_body(event, "a-different-signing-key")
    elif forgery == "stale timestamp":
        body = mailgun_body(event, keys.mailgun_key, timestamp=int(time.time()) - 3600)
    else:
        signed = json.loads(mailgun_body(event, keys.mailgun_key))
        signed["signature"]["signature"] = "0" * 64
        body = json.dumps(signed).encode()
    response = post(api, "mailgun", body)
    assert response.status_code == 400
    assert_nothing_stored(store)


# --------------------------------------------------------------------------- HTTP credentials


CREDENTIAL_CASES: dict[str, tuple[str, Callable[[Keys], dict[str, str]]]] = {
    "postmark": ("postmark-hard.json", lambda k: basic_header(k.basic)),
    "sparkpost": ("sparkpost-batch.json", lambda k: basic_header(k.basic)),
    "brevo": ("brevo-hard.json", lambda k: {"Authorization": "Bearer brevo-" + k.basic.replace(":", "-")}),
}


@pytest.mark.parametrize("name", list(CREDENTIAL_CASES))
def test_unsigned_providers_need_their_credentials(api: RunningServer, store: Store, keys: Keys, name: str) -> None:
    """Postmark, SparkPost and Brevo: no or wrong credentials get 401 (nothing stored); right ones are recorded."""
    file, credentials = CREDENTIAL_CASES[name]
    body = json.dumps(sample(file)).encode()
    for wrong in ({}, basic_header("provider:wrong"), {"Authorization": "Bearer wrong"}):
        response = post(api, name, body, wrong)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Basic")
    assert_nothing_stored(store)
    response = post(api, name, body, credentials(keys))
    assert response.status_code == 200
    assert response.json()["recorded"] >= 1


# --------------------------------------------------------------------------- Standard Webhooks


def test_standard_webhooks_receiver(api: RunningServer, store: Store, keys: Keys) -> None:
    """A Standard Webhooks request with a valid v1 signature is recorded once per webhook-id."""
    body = json.dumps(sample("standard-bounce.json")).encode()
    headers = standard_headers(body, keys.standard_secret)
    assert post(api, "standard", body, headers).json()["recorded"] == 1
    assert suppressed(store, "moved-away@example.net") == "bounce/hard/userunknown"
    retry = standard_headers(body, keys.standard_secret, message_id=headers["webhook-id"])
    assert post(api, "standard", body, retry).json()["duplicates"] == 1


@pytest.mark.parametrize("forgery", ["wrong secret", "changed body", "stale timestamp", "future timestamp",
                                     "missing id"])
def test_standard_webhooks_forgeries_are_refused(api: RunningServer, store: Store, keys: Keys, forgery: str) -> None:
    """Wrong secret, edited body, timestamps 10 minutes off either way, missing headers: 400."""
    body = json.dumps(sample("standard-bounce.json")).encode()
    headers = standard_headers(body, keys.standard_secret)
    if forgery == "wrong secret":
        headers = standard_headers(body, "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=")
    elif forgery == "changed body":
        body = body.replace(b"moved-away", b"victim")
    elif forgery == "stale timestamp":
        headers = standard_headers(body, keys.standard_secret, timestamp=int(time.time()) - 600)
    elif forgery == "future timestamp":
        headers = standard_headers(body, keys.standard_secret, timestamp=int(time.time()) + 600)
    else:
        del headers["webhook-id"]
    assert post(api, "standard", body, headers).status_code == 400
    assert_nothing_stored(store)


def test_webhook_kind_guards_what_may_suppress(api: RunningServer, store: Store, keys: Keys) -> None:
    """A bounce arriving at a webhook configured kind = "fbl" is recorded but suppresses nothing."""
    body = json.dumps(sample("standard-bounce.json")).encode()
    assert post(api, "fbl-only", body, standard_headers(body, keys.standard_secret)).json()["recorded"] == 1
    assert suppressed(store, "moved-away@example.net") is None
    assert rows(store, "event") == 1


# --------------------------------------------------------------------------- the route itself


def test_unknown_webhook_and_probe(api: RunningServer) -> None:
    """An unconfigured name is 404; HEAD on a configured one is 200 (providers probe URLs)."""
    assert post(api, "nosuch", b"{}").status_code == 404
    assert httpx.head(f"{api.base_url}/v1/webhooks/postmark").status_code == 200
    assert httpx.head(f"{api.base_url}/v1/webhooks/nosuch").status_code == 404


def test_refusals_are_counted_and_logged_without_secrets(
    api: RunningServer, store: Store, keys: Keys, log_output: io.StringIO
) -> None:
    """A refused request is counted in /metrics by reason and logged without credentials or signatures."""
    body = mailgun_body(sample("mailgun-permanent.json"), "not-the-key")
    signature = json.loads(body)["signature"]["signature"]
    assert post(api, "mailgun", body).status_code == 400
    assert post(api, "postmark", b"{}", basic_header("provider:guessed-password")).status_code == 401
    metrics = httpx.get(f"{api.base_url}/metrics").text
    assert 'bounce_processor_webhook_requests_total{outcome="bad_signature",webhook="mailgun"}' in metrics
    assert 'bounce_processor_webhook_requests_total{outcome="bad_credentials",webhook="postmark"}' in metrics
    logged = log_output.getvalue()
    assert "webhook.refused" in logged
    for secret in (keys.mailgun_key, signature, "guessed-password", keys.basic.split(":")[1]):
        assert secret not in logged




def test_ses_basic_auth_challenges_first(keys: Keys, cert_host: CertHost) -> None:
    """With basic_auth set for SES, a request without credentials gets a 401 Basic challenge (SNS
    sends credentials only after one); with them, the signed message passes."""
    receiver = SesReceiver("ses", WebhookSettings(topic_arns=[TOPIC], cert_host_pattern=r"localhost:\d+",
                                                  cert_ca_file=cert_host.ca_file, basic_auth=[keys.basic]))
    body, headers = sns_body(sns_envelope(sample("ses-complaint.json"), cert_host.cert_url, key=keys.sns_key))
    with pytest.raises(WebhookError) as refused:
        receiver.verify(WebhookRequest(body, headers, time.time()))
    assert (refused.value.status, refused.value.headers["WWW-Authenticate"]) == (401, 'Basic realm="ses"')
    receiver.verify(WebhookRequest(body, {**headers, **{k.lower(): v for k, v in basic_header(keys.basic).items()}},
                                   time.time()))
