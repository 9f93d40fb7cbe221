"""Fixtures for the webhook tests: keys made here, an HTTPS server with a generated CA standing in
for the SNS certificate host, and the API (uvicorn, a free loopback port) with every receiver
configured on the test's database (SQLite and PostgreSQL)."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from processor.config import ApiSettings, DatabaseSettings, Settings, WebhookSettings
from processor.store import Store
from tests.api.conftest import RunningServer, start_server
from tests.servers import generate_tls
from tests.webhooks.payloads import TOPIC, Keys, rsa_certificate

CERT_PATH = "/SimpleNotificationService-0123456789abcdef.pem"


@dataclass
class CertHost:
    """An HTTPS server (certificate from a CA made for the test) that serves SNS's signing
    certificate and answers SubscribeURL GETs, recording every path asked for."""

    base_url: str
    ca_file: Path
    other_ca_file: Path
    requests: list[str] = field(default_factory=list)

    @property
    def cert_url(self) -> str:
        return self.base_url + CERT_PATH


@pytest.fixture(scope="session")
def keys() -> Keys:
    key, cert = rsa_certificate()
    return Keys(sns_key=key, sns_cert=cert)


@pytest.fixture(scope="session")
def cert_host_server(keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CertHost]:
    tls = generate_tls(tmp_path_factory.mktemp("sns-tls"))
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            if self.path == CERT_PATH:
                body = keys.sns_cert
            elif self.path.startswith("/confirm"):
                body = b"<ConfirmSubscriptionResponse/>"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.cert, tls.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host = CertHost(f"https://localhost:{server.server_address[1]}", tls.ca_cert, tls.other_ca_cert, seen)
    yield host
    server.shutdown()
    server.server_close()


@pytest.fixture
def cert_host(cert_host_server: CertHost) -> CertHost:
    cert_host_server.requests.clear()
    return cert_host_server


def webhook_settings(keys: Keys, cert_host: CertHost, **ses: Any) -> dict[str, WebhookSettings]:
    """Every receiver, configured with the test's keys; the SNS certificate host is the local one."""
    ses_settings: dict[str, Any] = {"topic_arns": [TOPIC], "cert_host_pattern": r"localhost:\d+",
                                    "cert_ca_file": cert_host.ca_file, **ses}
    return {
        "ses": WebhookSettings(**ses_settings),
        "sendgrid": WebhookSettings(secret=keys.sendgrid_public),
        "mailgun": WebhookSettings(secret=keys.mailgun_key),
        "postmark": WebhookSettings(basic_auth=[keys.basic]),
        "sparkpost": WebhookSettings(basic_auth=[keys.basic]),
        "brevo": WebhookSettings(bearer_tokens=["brevo-" + keys.basic.replace(":", "-")]),
        "standard": WebhookSettings(secret=keys.standard_secret),
        "fbl-only": WebhookSettings(provider="standard", secret=keys.standard_secret, kind="fbl"),
    }


@pytest.fixture
def settings(db_url: str, keys: Keys, cert_host: CertHost) -> Settings:
    return Settings(database=DatabaseSettings(url=db_url), api=ApiSettings(tokens=[]),
                    webhooks=webhook_settings(keys, cert_host))


@pytest.fixture
def api(settings: Settings, store: Store) -> Iterator[RunningServer]:
    """The API served by uvicorn with every receiver configured."""
    server = start_server(settings, store)
    try:
        yield server
    finally:
        server.shutdown()
    assert not server.errors, server.errors
