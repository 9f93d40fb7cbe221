"""Malformed requests get a 4xx with the usual JSON error, never a 500, and change nothing.

Each row below is one request a probe of the API once answered with ``500 {"error":"internal"}``
or accepted although its address was not one (invalid UTF-8, invisible characters). The
hypothesis test then throws arbitrary text at every endpoint that takes an address.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from processor.store import Store
from tests.api.conftest import ADMIN, auth


@dataclass(frozen=True)
class BadRequest:
    name: str
    method: str
    url: str
    status: int
    error: str
    body: bytes | None = None
    content_type: str = "application/json"


SURROGATE_CHECK = b'{"addresses": ["\\ud800@x.com"]}'
BAD_REQUESTS = [
    BadRequest("lone surrogate in a check", "POST", "/v1/suppressions/check", 422, "invalid_request",
               SURROGATE_CHECK),
    BadRequest("lone surrogate in a check, scope too", "POST", "/v1/suppressions/check", 422, "invalid_request",
               b'{"addresses": ["ok@x.com", "\\udfff@x.com"], "scope": "global"}'),
    BadRequest("cursor of 2**63", "GET", "/v1/suppressions?cursor=czkyMjMzNzIwMzY4NTQ3NzU4MDg", 422,
               "invalid_request"),
    BadRequest("cursor of 2**64 and more", "GET",
               "/v1/suppressions?cursor=czk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5", 422, "invalid_request"),
    BadRequest("events before 10**23", "GET", "/v1/suppressions/a@x.com/events?before=99999999999999999999999",
               422, "invalid_request"),
    BadRequest("events before 2**63", "GET", "/v1/suppressions/a@x.com/events?before=9223372036854775808",
               422, "invalid_request"),
    BadRequest("PUT of a path that is not UTF-8", "PUT", "/v1/suppressions/%ED%A0%80@x.com", 422,
               "invalid_address"),
    BadRequest("GET of a path that is not UTF-8", "GET", "/v1/suppressions/%FF%FE@x.com", 422, "invalid_address"),
    BadRequest("DELETE of a path that is not UTF-8", "DELETE", "/v1/suppressions/%C3@x.com", 422,
               "invalid_address"),
    BadRequest("PUT with a zero-width space", "PUT", "/v1/suppressions/us%E2%80%8Ber@x.com", 422, "invalid_address"),
    BadRequest("PUT with a right-to-left mark", "PUT", "/v1/suppressions/user%E2%80%8F@x.com", 422,
               "invalid_address"),
    BadRequest("PUT with a no-break space", "PUT", "/v1/suppressions/us%C2%A0er@x.com", 422, "invalid_address"),
    BadRequest("PUT with a control character", "PUT", "/v1/suppressions/us%01er@x.com", 422, "invalid_address"),
    BadRequest("events of an address that is not UTF-8", "GET", "/v1/suppressions/%ED%A0%80@x.com/events", 422,
               "invalid_address"),
    BadRequest("reason with a lone surrogate", "PUT", "/v1/suppressions/a@x.com", 422, "invalid_request",
               b'{"reason": "\\ud800"}'),
    BadRequest("note with a lone surrogate", "PUT", "/v1/suppressions/a@x.com", 422, "invalid_request",
               b'{"note": "x\\udc80"}'),
]


def _send(client: TestClient, request: BadRequest) -> tuple[int, dict[str, object]]:
    headers = {**auth(ADMIN), "Content-Type": request.content_type}
    response = client.request(request.method, request.url, content=request.body, headers=headers)
    return response.status_code, response.json()


@pytest.mark.parametrize("request_", BAD_REQUESTS, ids=[r.name for r in BAD_REQUESTS])
def test_malformed_request_is_a_json_4xx(client: TestClient, store: Store, request_: BadRequest) -> None:
    """Each malformed request is answered with its 4xx status and error code, and stores nothing."""
    status, body = _send(client, request_)
    assert (status, body["error"]) == (request_.status, request_.error), body
    assert isinstance(body["message"], str) and body["message"]
    assert store.count_active() == 0


def test_surrogate_check_names_the_address_index(client: TestClient) -> None:
    """The 422 for a lone surrogate says which address of the list it is in."""
    body = client.post("/v1/suppressions/check", content=b'{"addresses": ["a@x.com", "\\ud800@x.com"]}',
                       headers={**auth(ADMIN), "Content-Type": "application/json"}).json()
    assert [p["location"] for p in body["problems"]] == ["body.addresses.1"]
    assert "lone surrogate" in body["problems"][0]["message"]


@pytest.mark.parametrize("line", [
    b'{"email": "\\ud800@x.com"}',
    b'{"email": "ok@x.com", "reason": "\\udc80"}',
    b'{"email": "us\\u200ber@x.com"}',
    b'"\\ufffd@x.com"',
])
def test_import_rejects_unusable_text_per_row(client: TestClient, store: Store, line: bytes) -> None:
    """A JSON-lines row with a lone surrogate or an invisible character is rejected with its line
    number (the answer is JSON, not a 500), and the next row is still imported."""
    body = line + b'\n{"email": "good@x.com"}\n'
    response = client.post("/v1/suppressions/import", content=body,
                           headers={**auth(ADMIN), "Content-Type": "application/x-ndjson"})
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["added"], report["rejected_count"]) == (1, 1)
    assert report["rejected"][0]["line"] == 1
    assert store.is_suppressed("good@x.com") is not None
    assert store.count_active() == 1


# Arbitrary text, weighted towards what breaks parsers: surrogates, controls, format characters.
_AWKWARD = st.sampled_from(["\ud800", "\udfff", "\x00", "\x7f", "\u200b", "\u202e", "\ufeff", "\ufffd", "@", ".",
                            '"', "\\", "/", "%", "?", "#", " ", "\n", "\u00a0", "é", "☃"])
ADDRESS_TEXT = st.lists(st.one_of(st.characters(), _AWKWARD), max_size=40).map("".join) | st.builds(
    lambda local, domain: f"{local}@{domain}", st.text(max_size=12), st.text(max_size=12))


def _path_segment(text: str) -> str:
    """The text as a URL path segment (invalid UTF-8 bytes for lone surrogates, as a client might send)."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="@")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=ADDRESS_TEXT)
def test_arbitrary_text_at_every_address_endpoint_is_never_5xx(client: TestClient, text: str) -> None:
    """Any text as the address of a look-up, HEAD, PUT, DELETE, history, batch check or import gets
    an answer below 500."""
    headers = auth(ADMIN)
    segment = _path_segment(text)
    answers = [
        client.get(f"/v1/suppressions/{segment}", headers=headers),
        client.head(f"/v1/suppressions/{segment}", headers=headers),
        client.put(f"/v1/suppressions/{segment}", headers=headers),
        client.delete(f"/v1/suppressions/{segment}", headers=headers),
        client.get(f"/v1/suppressions/{segment}/events", headers=headers),
        client.post("/v1/suppressions/check",
                    content=json.dumps({"addresses": [text]}).encode(),
                    headers={**headers, "Content-Type": "application/json"}),
        client.post("/v1/suppressions/import",
                    content=json.dumps({"email": text}).encode() + b"\n",
                    headers={**headers, "Content-Type": "application/x-ndjson"}),
        client.post("/v1/suppressions/import",
                    content=b"email\n" + text.encode("utf-8", "surrogatepass") + b"\n",
                    headers={**headers, "Content-Type": "text/csv"}),
    ]
    for answer in answers:
        assert answer.status_code < 500, (answer.request.method, answer.request.url, answer.text)
