"""Manual changes, history and listing: PUT, DELETE, /events and GET /v1/suppressions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from starlette.testclient import TestClient

from processor.store import Store
from tests.api.conftest import ADMIN, auth
from tests.store.helpers import message, verdict


def test_put_creates_then_updates(client: TestClient, store: Store) -> None:
    """PUT suppresses (201), PUT again updates (200); the actor is the token's name."""
    first = client.put("/v1/suppressions/Ann@Example.org", json={"reason": "asked", "note": "phone call"},
                       headers=auth(ADMIN))
    assert first.status_code == 201
    assert (first.json()["address"], first.json()["reason"], first.json()["source"]) == (
        "ann@example.org", "asked", "manual")
    again = client.put("/v1/suppressions/ann@example.org", json={"reason": "asked twice"}, headers=auth(ADMIN))
    assert again.status_code == 200
    assert again.json()["event_count"] == 2
    entry = store.is_suppressed("ann@example.org")
    assert entry is not None and entry.reason == "asked twice"
    assert [e.actor for e in store.history("ann@example.org")] == ["api:admin", "api:admin"]


def test_put_without_body_uses_defaults(client: TestClient) -> None:
    """PUT with no body suppresses permanently with reason "manual"."""
    response = client.put("/v1/suppressions/bo@example.org", headers=auth(ADMIN))
    assert response.status_code == 201
    assert (response.json()["reason"], response.json()["expires_at"]) == ("manual", None)


def test_put_expiry(client: TestClient) -> None:
    """ttl_days or expires_at set the expiry; both at once, or a past expiry, answer 422."""
    ttl = client.put("/v1/suppressions/c1@example.org", json={"ttl_days": 2}, headers=auth(ADMIN))
    expires = datetime.fromisoformat(ttl.json()["expires_at"])
    assert timedelta(days=2) - timedelta(minutes=1) < expires - datetime.now(UTC) <= timedelta(days=2)
    when = (datetime.now(UTC) + timedelta(hours=5)).replace(microsecond=0)
    at = client.put("/v1/suppressions/c2@example.org", json={"expires_at": when.isoformat()}, headers=auth(ADMIN))
    assert datetime.fromisoformat(at.json()["expires_at"]) == when
    both = client.put("/v1/suppressions/c3@example.org", json={"ttl_days": 1, "expires_at": when.isoformat()},
                      headers=auth(ADMIN))
    assert (both.status_code, both.json()["message"]) == (422, "give expires_at or ttl_days, not both")
    past = client.put("/v1/suppressions/c4@example.org", json={"expires_at": "2001-01-01T00:00:00Z"},
                      headers=auth(ADMIN))
    assert past.status_code == 422 and "not in the future" in past.json()["message"]


def test_put_invalid_address_is_422(client: TestClient, store: Store) -> None:
    """PUT of something that is not an address answers 422 and stores nothing."""
    response = client.put("/v1/suppressions/not-an-address", json={"reason": "x"}, headers=auth(ADMIN))
    assert response.status_code == 422 and response.json()["error"] == "invalid_address"
    assert store.list_entries().entries == []


def test_delete_removes_and_is_recorded(client: TestClient, store: Store) -> None:
    """DELETE unsuppresses, says whether an entry was in force, and records the removal."""
    store.add("dee@example.org", reason="userunknown")
    response = client.delete("/v1/suppressions/dee@example.org", params={"note": "fixed"}, headers=auth(ADMIN))
    assert response.status_code == 200
    body = response.json()
    assert (body["address"], body["removed"], body["entry"]["reason"]) == ("dee@example.org", True, "userunknown")
    assert client.get("/v1/suppressions/dee@example.org", headers=auth(ADMIN)).status_code == 404
    latest = store.history("dee@example.org")[0]
    assert (latest.kind, latest.actor, latest.explanation) == ("manual_remove", "api:admin", "fixed")
    nothing = client.delete("/v1/suppressions/dee@example.org", headers=auth(ADMIN))
    assert nothing.json() == {"address": "dee@example.org", "scope": "global", "removed": False, "entry": None}
    assert len(store.history("dee@example.org")) == 3


def test_events_explain_a_suppression(client: TestClient, store: Store) -> None:
    """/events lists the address's reports and changes, newest first, with paging."""
    store.record_message(message(), [verdict("eve@example.org")])
    store.add("eve@example.org", reason="manual too")
    response = client.get("/v1/suppressions/eve@example.org/events", headers=auth(ADMIN))
    assert response.status_code == 200
    events = response.json()["events"]
    assert [e["kind"] for e in events] == ["manual_add", "failure"]
    assert events[1]["status"] == "5.1.1" and events[1]["rule_id"] == "test-rule"
    assert events[1]["decision"] == "suppress"
    first = client.get("/v1/suppressions/EVE@example.org/events", params={"limit": 1}, headers=auth(ADMIN)).json()
    assert first["address"] == "eve@example.org" and len(first["events"]) == 1
    older = client.get("/v1/suppressions/eve@example.org/events", params={"limit": 1, "before": first["next_before"]},
                       headers=auth(ADMIN)).json()
    assert [e["kind"] for e in older["events"]] == ["failure"]


def test_list_filters(client: TestClient, store: Store) -> None:
    """Listing filters by reason, source, scope and domain."""
    store.add("a@one.example", reason="r1")
    store.add("b@two.example", reason="r2")
    store.add("c@one.example", reason="r2", scope="list-1")
    store.record_message(message(), [verdict("d@two.example")])

    def addresses(**params: str) -> list[str]:
        response = client.get("/v1/suppressions", params=params, headers=auth(ADMIN))
        assert response.status_code == 200, response.text
        return [e["address"] for e in response.json()["entries"]]

    assert addresses() == ["a@one.example", "b@two.example", "c@one.example", "d@two.example"]
    assert addresses(reason="r2") == ["b@two.example", "c@one.example"]
    assert addresses(domain="one.example") == ["a@one.example", "c@one.example"]
    assert addresses(scope="list-1") == ["c@one.example"]
    assert addresses(source="bounce") == ["d@two.example"]
    assert addresses(bounce_type="hard") == ["d@two.example"]
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert addresses(since=future) == []
    assert len(addresses(until=future)) == 4


def test_pagination_is_stable_while_entries_are_added(client: TestClient, store: Store) -> None:
    """Paging with the cursor sees every entry once even when entries are added between pages."""
    for i in range(10):
        store.add(f"p{i}@example.org")
    seen: list[str] = []
    cursor: str | None = None
    added = 0
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/suppressions", params=params, headers=auth(ADMIN)).json()
        seen += [e["address"] for e in page["entries"]]
        if added < 4:
            store.add(f"new{added}@example.org")
            added += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    assert {f"p{i}@example.org" for i in range(10)} <= set(seen)
    assert seen[:10] == [f"p{i}@example.org" for i in range(10)]


def test_page_size_is_capped(app_client: Callable[..., TestClient], store: Store) -> None:
    """A limit above api.page_limit is reduced to it; limit 0 is 422; a bad cursor is 422."""
    for i in range(5):
        store.add(f"q{i}@example.org")
    capped = app_client(page_limit=2)
    page = capped.get("/v1/suppressions", params={"limit": "50"}, headers=auth(ADMIN)).json()
    assert len(page["entries"]) == 2 and page["next_cursor"]
    assert capped.get("/v1/suppressions", params={"limit": "0"}, headers=auth(ADMIN)).status_code == 422
    bad = capped.get("/v1/suppressions", params={"cursor": "!!!"}, headers=auth(ADMIN))
    assert (bad.status_code, bad.json()["message"]) == (422, "invalid cursor '!!!'")


def test_list_rejects_unknown_filters(client: TestClient) -> None:
    """A misspelt filter answers 400 instead of listing everything."""
    response = client.get("/v1/suppressions", params={"reasons": "x"}, headers=auth(ADMIN))
    assert response.status_code == 400
    assert "'reasons'" in response.json()["message"]


def test_stats_over_a_window(client: TestClient, store: Store) -> None:
    """/v1/stats counts events by bounce type, reason, domain and mailbox in the window."""
    store.record_message(message("bounces"), [verdict("s1@one.example")])
    store.record_message(message("bounces"), [verdict("s2@two.example", reason="mailboxfull")])
    store.record_message(message("fbl"), [verdict("s3@two.example")])
    body = client.get("/v1/stats", headers=auth(ADMIN)).json()
    assert body["events_by_bounce_type"] == {"hard": 3}
    assert body["events_by_reason"] == {"userunknown": 2, "mailboxfull": 1}
    assert body["events_by_domain"] == {"two.example": 2, "one.example": 1}
    assert body["events_by_mailbox"] == {"bounces": 2, "fbl": 1}
    assert body["active_total"] == 3
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    empty = client.get("/v1/stats", params={"since": later}, headers=auth(ADMIN))
    assert empty.status_code == 422 and "since is after until" in empty.json()["message"]
