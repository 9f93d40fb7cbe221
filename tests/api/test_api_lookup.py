"""Single look-ups: GET and HEAD /v1/suppressions/{address}, the lean path and the route alike."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from processor.store import Store
from tests.api.conftest import ADMIN, READER, WRITER, auth

ENTRY_FIELDS = {"address", "scope", "source", "reason", "bounce_type", "since", "last_seen", "expires_at",
                "event_count", "note"}


def url(address: str, suffix: str = "") -> str:
    return f"/v1/suppressions/{quote(address, safe='@')}{suffix}"


def test_get_suppressed_returns_the_entry(client: TestClient, store: Store) -> None:
    """A suppressed address answers 200 with reason, type, source, since, expiry and scope."""
    expires = datetime.now(UTC) + timedelta(days=3)
    store.add("alice@example.org", reason="userunknown", bounce_type="hard", expires_at=expires, note="n1")
    response = client.get(url("alice@example.org"), headers=auth(READER))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == ENTRY_FIELDS
    assert (body["address"], body["reason"], body["bounce_type"], body["source"], body["scope"], body["note"]) == (
        "alice@example.org", "userunknown", "hard", "manual", "global", "n1")
    assert datetime.fromisoformat(body["expires_at"]) == expires
    assert datetime.fromisoformat(body["since"]) <= datetime.now(UTC)


def test_get_not_suppressed_is_404_json(client: TestClient) -> None:
    """An address not on the list answers 404 with a JSON error body."""
    response = client.get(url("bob@example.org"), headers=auth(READER))
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "message": "the address is not suppressed"}


def test_head_answers_by_status_only(client: TestClient, store: Store) -> None:
    """HEAD says 200 (suppressed) or 404 (not), with no body."""
    store.add("carol@example.org")
    hit = client.head(url("carol@example.org"), headers=auth(READER))
    miss = client.head(url("dave@example.org"), headers=auth(READER))
    assert (hit.status_code, hit.content) == (200, b"")
    assert (miss.status_code, miss.content) == (404, b"")


def test_lookup_normalises_the_address(client: TestClient, store: Store) -> None:
    """The address is normalised as everywhere else: case, brackets, mailto: and IDNA."""
    store.add("erin@xn--bcher-kva.example")
    for given in ("Erin@Bücher.Example", "<erin@BÜCHER.example>", "mailto:erin@bücher.example"):
        response = client.get(url(given), headers=auth(READER))
        assert response.status_code == 200, given
        assert response.json()["address"] == "erin@xn--bcher-kva.example"


def test_scopes(client: TestClient, store: Store) -> None:
    """A scoped entry counts only in its scope; a global entry counts in every scope."""
    store.add("frank@example.org", scope="news.example")
    store.add("grace@example.org")
    headers = auth(READER)
    assert client.get(url("frank@example.org"), headers=headers).status_code == 404
    scoped = client.get(url("frank@example.org"), params={"scope": "news.example"}, headers=headers)
    assert scoped.status_code == 200 and scoped.json()["scope"] == "news.example"
    assert client.get(url("grace@example.org"), params={"scope": "news.example"}, headers=headers).json()[
        "scope"] == "global"


def test_expired_entry_is_not_suppressed(client: TestClient, store: Store) -> None:
    """An entry past its expiry stops counting at once, before any purge."""
    store.add("heidi@example.org", expires_at=datetime.now(UTC) + timedelta(days=1))
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE suppression SET expires_at = :t"), {"t": datetime(2000, 1, 1)})
    assert client.get(url("heidi@example.org"), headers=auth(READER)).status_code == 404
    assert client.head(url("heidi@example.org"), headers=auth(READER)).status_code == 404


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("plainaddress", "no '@' in the address"),
        ("@example.org", "empty local part before '@'"),
        ("user@", "empty domain after '@'"),
        ("a b@example.org", "not a valid email address"),
        ("x" * 1100 + "@example.org", "longer than 1024 characters"),
    ],
)
def test_invalid_address_is_422_naming_the_problem(client: TestClient, address: str, problem: str) -> None:
    """An invalid address answers 422 whose message names the input and the problem."""
    response = client.get(url(address), headers=auth(READER))
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_address"
    assert problem in body["message"]
    assert body["message"].startswith("invalid address '" + address[:20])
    assert body["problems"][0]["location"] == "path.address"
    assert client.head(url(address), headers=auth(READER)).status_code == 422


def test_unknown_query_parameter_is_400(client: TestClient) -> None:
    """A query parameter the operation does not declare answers 400 naming it."""
    response = client.get(url("ivan@example.org"), params={"scop": "global"}, headers=auth(READER))
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "unknown_parameter"
    assert "'scop'" in body["message"] and "scope" in body["message"]


def test_invalid_scope_is_422(client: TestClient) -> None:
    """A scope that cannot be one (spaces, empty) answers 422, not a silent miss."""
    for scope in ("two words", ""):
        response = client.get(url("judy@example.org"), params={"scope": scope}, headers=auth(READER))
        assert response.status_code == 422, scope
        assert response.json()["problems"][0]["location"] == "query.scope"


LOOKUPS: list[tuple[str, str, dict[str, str] | None, str | None]] = [
    ("GET", "kate@example.org", None, READER),
    ("GET", "nobody@example.org", None, READER),
    ("HEAD", "kate@example.org", None, READER),
    ("HEAD", "nobody@example.org", None, READER),
    ("GET", "Kate@Example.ORG", {"scope": "global"}, READER),
    ("GET", "kate@example.org", {"scope": "list-1"}, ADMIN),
    ("GET", "kate@example.org", {"scope": "bad scope"}, READER),
    ("GET", "kate@example.org", {"scope": "a+b"}, READER),
    ("GET", "kate@example.org", {"scope": ""}, READER),
    ("GET", "kate@example.org", {"scope": "a", "x": "1"}, READER),
    ("GET", "kate@example.org", {"limit": "1"}, READER),
    ("GET", "not-an-address", None, READER),
    ("HEAD", "not-an-address", None, READER),
    ("GET", "kate@example.org", None, None),
    ("GET", "kate@example.org", None, "bp_wrong"),
    ("GET", "kate@example.org", None, WRITER),
    ("HEAD", "kate@example.org", None, WRITER),
]


def test_lean_path_answers_exactly_as_the_route(app_client: Callable[..., TestClient], store: Store) -> None:
    """The lean look-up path gives the same status, headers and body as the documented route."""
    store.add("kate@example.org", reason="r", note="n")
    lean, full = app_client(lean_lookups=True), app_client(lean_lookups=False)
    for method, address, params, token in LOOKUPS:
        headers = auth(token) if token else {}
        a = lean.request(method, url(address), params=params, headers=headers)
        b = full.request(method, url(address), params=params, headers=headers)
        case = (method, address, params, token and token[:3])
        assert a.status_code == b.status_code, case
        assert a.content == b.content, case
        for name in ("content-type", "content-length", "www-authenticate"):
            assert a.headers.get(name) == b.headers.get(name), (case, name)
