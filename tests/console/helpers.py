"""Helpers for the console's tests: tokens, recorded reports (through the real recording path)
and a signed-in test client."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from bs4 import BeautifulSoup
from starlette.testclient import TestClient

from processor.api.auth import hash_token, new_token
from processor.config import ApiSettings, ApiToken, DatabaseSettings, Settings
from processor.records import BounceType, Event, EventKind, OriginalMessage, Verdict
from processor.store import MessageRef, Store
from tests.api.conftest import start_server

OPERATOR = new_token()
VIEWER = new_token()
MAILER = new_token()
TOKENS = [
    ApiToken(name="operator", hash=hash_token(OPERATOR), scopes=["ui", "read", "write"]),
    ApiToken(name="viewer", hash=hash_token(VIEWER), scopes=["ui", "read"]),
    ApiToken(name="mailer", hash=hash_token(MAILER), scopes=["read", "write"]),
]
_uids = itertools.count(1)


def make_settings(url: str) -> Settings:
    return Settings(database=DatabaseSettings(url=url), api=ApiSettings(tokens=TOKENS))


def report(
    store: Store,
    recipient: str,
    *,
    kind: EventKind = EventKind.FAILURE,
    bounce_type: BounceType = BounceType.HARD,
    reason: str = "userunknown",
    rule_id: str = "test-rule",
    diagnostic: str = "550 5.1.1 user unknown",
    sender: str = "news@sender.example",
    at: datetime | None = None,
    mailbox: str = "bounces/INBOX",
    raw: bytes | None = None,
) -> None:
    """Record one report about ``recipient`` as the daemon does (ledger, event, policy, counts)."""
    uid = next(_uids)
    event = Event(kind=kind, recipient=recipient, status="5.1.1" if bounce_type == "hard" else "4.2.2",
                  reply_code="550" if bounce_type == "hard" else "452", diagnostic=diagnostic,
                  dsn_action="delayed" if kind is EventKind.DELAY else "failed", mta="rfc3464",
                  original=OriginalMessage(message_id=f"<m{uid}@sender.example>", from_addr=sender))
    verdict = Verdict(event, reason, bounce_type, rule_id)
    ref = MessageRef.for_bytes(raw or f"report {uid} {recipient}".encode(), mailbox=mailbox, uidvalidity=1, uid=uid,
                               received_at=at)
    store.record_message(ref, [verdict], now=at)


def sign_in(client: TestClient, token: str) -> str:
    """Sign in; returns the session's form token (read from a page)."""
    answer = client.post("/ui/login", data={"token": token, "next": "/ui/"}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    return form_token(client.get("/ui/search").text)


def form_token(html: str) -> str:
    field = BeautifulSoup(html, "html.parser").select_one("input[name=csrf_token]")
    assert field is not None, "no form token on the page"
    return str(field["value"])


def soup(html: str) -> BeautifulSoup:
    return BeautifulSoup(html, "html.parser")


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()



@contextmanager
def served(settings: Settings, store: Store) -> Iterator[str]:
    """The API (with the console) under uvicorn on a free loopback port (tests.api's
    start_server); yields its base URL and stops the server at the end."""
    server = start_server(settings, store)
    try:
        yield server.base_url
    finally:
        server.shutdown()
    assert not server.errors, server.errors
