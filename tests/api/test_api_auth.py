"""Bearer tokens (hashed in the configuration, scopes read and write) and the open loopback mode."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from processor import logs
from processor.api import create_app
from processor.api.auth import hash_token, new_token
from processor.api.server import ApiStartError, check_exposure, is_loopback
from processor.config import ApiSettings, ConfigError, DatabaseSettings, Settings, load_settings
from processor.store import Store
from tests.api.conftest import ADMIN, READER, TOKENS, WRITER, auth, start_server

OPERATIONS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("read", "GET", "/v1/suppressions/a@example.org", {}),
    ("read", "HEAD", "/v1/suppressions/a@example.org", {}),
    ("read", "POST", "/v1/suppressions/check", {"json": {"addresses": ["a@example.org"]}}),
    ("read", "GET", "/v1/suppressions", {}),
    ("read", "GET", "/v1/suppressions/a@example.org/events", {}),
    ("read", "GET", "/v1/suppressions/export", {}),
    ("read", "GET", "/v1/stats", {}),
    ("write", "PUT", "/v1/suppressions/a@example.org", {"json": {"reason": "x"}}),
    ("write", "DELETE", "/v1/suppressions/a@example.org", {}),
    ("write", "POST", "/v1/suppressions/import", {"content": b"a@example.org\n",
                                                  "headers": {"content-type": "text/csv"}}),
]


def _call(client: TestClient, method: str, path: str, options: dict[str, Any], token: str | None) -> int:
    extra = dict(options)
    headers = {**extra.pop("headers", {}), **(auth(token) if token else {})}
    status: int = client.request(method, path, headers=headers, **extra).status_code
    return status


def test_every_operation_needs_a_token(client: TestClient) -> None:
    """Without a token, or with an unknown one, every /v1 operation answers 401 as JSON."""
    for _, method, path, options in OPERATIONS:
        assert _call(client, method, path, options, None) == 401, (method, path)
        assert _call(client, method, path, options, "bp_not-a-real-token") == 401, (method, path)
    response = client.get("/v1/suppressions", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_scopes_are_enforced(client: TestClient) -> None:
    """A read token cannot write (403), a write-only token cannot read (403), admin does both."""
    for scope, method, path, options in OPERATIONS:
        allowed, refused = (READER, WRITER) if scope == "read" else (WRITER, READER)
        assert _call(client, method, path, options, allowed) in (200, 201, 404), (method, path)
        assert _call(client, method, path, options, refused) == 403, (method, path)
        assert _call(client, method, path, options, ADMIN) in (200, 201, 404), (method, path)
    body = client.put("/v1/suppressions/a@example.org", headers=auth(READER)).json()
    assert body == {"error": "forbidden", "message": "the token 'reader' lacks the 'write' scope"}


def test_health_is_public(client: TestClient) -> None:
    """/healthz, /readyz, /metrics and /openapi.json need no token (metrics: by default)."""
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert client.get(path).status_code == 200, path


def test_metrics_can_require_a_token(app_client: Callable[..., TestClient]) -> None:
    """With api.public_metrics false, /metrics needs a read token."""
    private = app_client(public_metrics=False)
    assert private.get("/metrics").status_code == 401
    assert private.get("/metrics", headers=auth(WRITER)).status_code == 403
    assert private.get("/metrics", headers=auth(READER)).status_code == 200


def test_open_mode_without_tokens(app_client: Callable[..., TestClient]) -> None:
    """With no tokens configured every operation is allowed and the schema asks for none."""
    open_api = app_client(tokens=[])
    for _, method, path, options in OPERATIONS:
        assert _call(open_api, method, path, options, None) in (200, 201, 404), (method, path)
    schema = open_api.get("/openapi.json").json()
    assert "securitySchemes" not in schema.get("components", {})
    assert all("security" not in op for ops in schema["paths"].values() for op in ops.values())


def test_tokens_are_stored_hashed() -> None:
    """A token is configured by its SHA-256; a plain token in the hash field is a clear error."""
    token = new_token()
    assert token.startswith("bp_") and len(token) > 40
    assert hash_token(token) == hash_token(token) != hash_token(new_token())
    ApiSettings(tokens=[{"name": "ok", "hash": hash_token(token)}])  # type: ignore[list-item]
    with pytest.raises(ConfigError) as caught:
        load_settings(None, api={"tokens": [{"name": "oops", "hash": token}]})
    assert "api.tokens.0.hash" in str(caught.value)
    assert token not in str(caught.value)


def test_without_tokens_only_on_loopback() -> None:
    """No tokens: loopback only (ApiStartError otherwise); with tokens any address is allowed."""
    for host in ("127.0.0.1", "::1", "localhost", "127.5.5.5"):
        assert is_loopback(host)
        check_exposure(ApiSettings(host=host))
    for host in ("0.0.0.0", "::", "192.0.2.10", "api.example.org"):
        assert not is_loopback(host)
        with pytest.raises(ApiStartError, match=r"no api\.tokens are configured"):
            check_exposure(ApiSettings(host=host))
        check_exposure(ApiSettings(host=host, tokens=TOKENS))


def test_tokens_never_reach_the_logs(db_url: str, store: Store) -> None:
    """With the access log on, neither valid nor invalid tokens appear in any log line."""
    out = io.StringIO()
    logs.configure("json", "DEBUG", stream=out)
    bogus = "bp_this-is-a-guess-" + new_token()
    try:
        settings = Settings(database=DatabaseSettings(url=db_url), api=ApiSettings(tokens=TOKENS, access_log=True))
        server = start_server(settings, store)
        try:
            import httpx

            for token in (READER, WRITER, ADMIN, bogus):
                httpx.get(f"{server.base_url}/v1/suppressions/a@example.org", headers=auth(token))
                httpx.put(f"{server.base_url}/v1/suppressions/a@example.org", headers=auth(token))
                httpx.get(f"{server.base_url}/v1/suppressions", headers=auth(token))
        finally:
            server.shutdown()
        with TestClient(create_app(settings, store)) as test_client:
            test_client.get("/v1/suppressions/x@example.org", headers=auth(bogus))
    finally:
        logs.configure("console", "INFO")
    text = out.getvalue()
    assert "api.request" in text and "api.listening" in text
    for token in (READER, WRITER, ADMIN, bogus):
        assert token not in text
        assert token[3:20] not in text
