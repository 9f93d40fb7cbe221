"""POST /v1/suppressions/check: many addresses in one request, with a configurable limit."""

from __future__ import annotations

from collections.abc import Callable

from starlette.testclient import TestClient

from processor.store import Store
from tests.api.conftest import READER, auth

CHECK = "/v1/suppressions/check"


def test_check_returns_suppressed_and_invalid_keyed_as_given(client: TestClient, store: Store) -> None:
    """Suppressed addresses come back with their entries, invalid ones with why, keyed as given."""
    store.add("a@example.org", reason="userunknown", bounce_type="hard")
    store.add("b@example.org", reason="complaint")
    given = ["A@Example.org", "b@example.org", "c@example.org", "no-at-sign", "<b@example.org>"]
    response = client.post(CHECK, json={"addresses": given}, headers=auth(READER))
    assert response.status_code == 200
    body = response.json()
    assert body["checked"] == 5
    assert set(body["suppressed"]) == {"A@Example.org", "b@example.org", "<b@example.org>"}
    assert body["suppressed"]["A@Example.org"]["reason"] == "userunknown"
    assert body["suppressed"]["<b@example.org>"]["address"] == "b@example.org"
    assert body["invalid"] == {"no-at-sign": "invalid address 'no-at-sign': no '@' in the address"}


def test_check_in_a_scope(client: TestClient, store: Store) -> None:
    """With a scope, entries of that scope and global ones count, other scopes' do not."""
    store.add("a@example.org", scope="list-a")
    store.add("b@example.org", scope="list-b")
    store.add("c@example.org")
    response = client.post(CHECK, json={"addresses": ["a@example.org", "b@example.org", "c@example.org"],
                                        "scope": "list-a"}, headers=auth(READER))
    assert set(response.json()["suppressed"]) == {"a@example.org", "c@example.org"}


def test_default_limit_is_10000(client: TestClient, store: Store) -> None:
    """10,000 addresses are checked in one request; 10,001 get 413."""
    store.add("user7@example.org")
    batch = [f"user{i}@example.org" for i in range(10_000)]
    ok = client.post(CHECK, json={"addresses": batch}, headers=auth(READER))
    assert ok.status_code == 200
    assert list(ok.json()["suppressed"]) == ["user7@example.org"]
    too_many = client.post(CHECK, json={"addresses": [*batch, "one@more.org"]}, headers=auth(READER))
    assert too_many.status_code == 413
    assert too_many.json() == {"error": "too_large", "message": "10001 addresses in one check; the limit is 10000"}


def test_limit_is_configurable(app_client: Callable[..., TestClient]) -> None:
    """api.batch_limit sets the largest batch."""
    small = app_client(batch_limit=3)
    assert small.post(CHECK, json={"addresses": ["a@x.org"] * 3}, headers=auth(READER)).status_code == 200
    assert small.post(CHECK, json={"addresses": ["a@x.org"] * 4}, headers=auth(READER)).status_code == 413


def test_malformed_bodies_are_422(client: TestClient) -> None:
    """A body that is not {"addresses": [strings]} answers 422 naming what is wrong."""
    cases = [
        ({"addresses": "a@example.org"}, "body.addresses"),
        ({"addresses": [1, 2]}, "body.addresses.0"),
        ({"addresses": [], "extra": 1}, "body.extra"),
        ({}, "body.addresses"),
        ({"addresses": [], "scope": "two words"}, "body.scope"),
    ]
    for body, location in cases:
        response = client.post(CHECK, json=body, headers=auth(READER))
        assert response.status_code == 422, body
        assert response.json()["problems"][0]["location"] == location, body
    broken = client.post(CHECK, content=b"{not json", headers={**auth(READER), "content-type": "application/json"})
    assert broken.status_code == 422
    assert "input" not in broken.text


def test_oversized_body_is_413(app_client: Callable[..., TestClient]) -> None:
    """A JSON body beyond the size limit is refused with 413 before it is parsed."""
    app = app_client(batch_limit=1)
    huge = b'{"addresses": ["' + b"a" * (17 * 1024 * 1024) + b'@x.org"]}'
    response = app.post(CHECK, content=huge, headers={**auth(READER), "content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
