"""Health, readiness, metrics, and errors that never leak a traceback or an internal detail."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from processor.api import create_app
from processor.config import DatabaseSettings, Settings
from processor.metrics import SUPPRESSIONS
from processor.store import Store, create_store_engine
from tests.api.conftest import ADMIN, READER, TOKENS, auth, make_settings


def test_healthz_and_readyz(client: TestClient) -> None:
    """/healthz answers while the process runs; /readyz when the database answers."""
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ok"}


def _unmigrated(tmp_path: Path) -> Store:
    """A store on a database without tables: every query fails inside the driver."""
    settings = Settings(database=DatabaseSettings(url=f"sqlite:///{tmp_path / 'empty.db'}"))
    return Store(create_store_engine(settings.database), settings)


def _unreachable() -> Store:
    """A store on a PostgreSQL port where nothing listens."""
    settings = Settings(database=DatabaseSettings(url="postgresql+psycopg://postgres@127.0.0.1:9/nothing"))
    return Store(create_store_engine(settings.database), settings)


@pytest.mark.parametrize("broken", ["unmigrated", "unreachable"])
def test_database_down_is_503_without_detail(broken: str, tmp_path: Path) -> None:
    """With the database unusable, /readyz and the operations answer 503 naming no internal detail."""
    store = _unmigrated(tmp_path) if broken == "unmigrated" else _unreachable()
    settings = make_settings(str(store.engine.url))
    try:
        with TestClient(create_app(settings, store), raise_server_exceptions=False) as client:
            assert client.get("/healthz").status_code == 200
            ready = client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["error"] == "unavailable"
            responses = [
                client.get("/v1/suppressions/a@example.org", headers=auth(ADMIN)),
                client.post("/v1/suppressions/check", json={"addresses": ["a@example.org"]}, headers=auth(ADMIN)),
                client.put("/v1/suppressions/a@example.org", headers=auth(ADMIN)),
                client.get("/v1/suppressions", headers=auth(ADMIN)),
                client.get("/v1/suppressions/export", headers=auth(ADMIN)),
                client.get("/v1/stats", headers=auth(ADMIN)),
            ]
            for response in responses:
                assert response.status_code == 503, response.request.url
                assert response.json() == {
                    "error": "unavailable",
                    "message": "the suppression database cannot be reached; try again later"}
                assert response.headers["retry-after"] == "5"
            head = client.head("/v1/suppressions/a@example.org", headers=auth(ADMIN))
            assert head.status_code == 503
    finally:
        store.close()


def test_unexpected_error_is_500_without_traceback(store: Store, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug answers 500 with a generic JSON body: no exception text, no traceback."""
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internal detail /etc/passwd")

    monkeypatch.setattr(store, "stats", broken)
    with TestClient(create_app(make_settings(db_url), store), raise_server_exceptions=False) as client:
        response = client.get("/v1/stats", headers=auth(READER))
    assert response.status_code == 500
    assert response.json() == {"error": "internal", "message": "internal error; it has been logged"}
    assert "secret" not in response.text and "Traceback" not in response.text


def test_unknown_paths_and_methods_are_json(client: TestClient) -> None:
    """Unknown paths (404) and methods (405) answer with the same JSON error shape."""
    missing = client.get("/v2/nothing")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    method = client.patch("/v1/suppressions/a@example.org", headers=auth(ADMIN))
    assert method.status_code == 405 and method.json()["error"] == "method_not_allowed"
    assert "PUT" in method.headers["allow"]


def test_metrics(client: TestClient) -> None:
    """/metrics exposes the request latency histogram by route template and the daemon's counters."""
    before = SUPPRESSIONS.labels(source="manual", action="add")._value.get()
    client.put("/v1/suppressions/m1@example.org", headers=auth(ADMIN))
    client.get("/v1/suppressions/m1@example.org", headers=auth(READER))
    client.get("/v1/suppressions/m2@example.org", headers=auth(READER))
    text = client.get("/metrics").text
    assert SUPPRESSIONS.labels(source="manual", action="add")._value.get() == before + 1
    assert ('bounce_processor_api_request_duration_seconds_count{method="GET",'
            'route="/v1/suppressions/{address}",status="404"}') in text
    assert 'route="/v1/suppressions/{address}",status="200"' in text
    assert "m1@example.org" not in text
    for name in ("messages_processed_total", "events_total", "suppressions_total", "imap_errors_total",
                 "api_request_duration_seconds"):
        assert f"# TYPE bounce_processor_{name.removesuffix('_total')}" in text, name


def test_app_opens_and_closes_its_own_store(db_url: str) -> None:
    """create_app(settings) without a store opens one from the settings and closes it at shutdown."""
    settings = Settings(database=DatabaseSettings(url=db_url), api={"tokens": TOKENS})  # type: ignore[arg-type]
    app = create_app(settings)
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200
    assert app.state.store.engine.pool.checkedout() == 0


def test_database_outage_is_logged_once_each_way_and_counted(postgres_url: str, log_output: Any) -> None:
    """While the database is unreachable the API answers 503 and logs the outage once when it
    begins and once when it ends (with the count), not once per request; each failed request is
    counted in bounce_processor_api_unavailable_total."""
    from processor.metrics import API_UNAVAILABLE
    from processor.store import open_store
    from tests.daemon.helpers import TcpProxy

    proxy = TcpProxy(("127.0.0.1", sa.make_url(postgres_url).port or 5432))
    proxy.up()
    url = sa.make_url(postgres_url).set(port=proxy.port).render_as_string(hide_password=False)
    settings = make_settings(url)
    store = open_store(settings)
    before = API_UNAVAILABLE._value.get()
    try:
        with TestClient(create_app(settings, store), raise_server_exceptions=False) as client:
            assert client.get("/v1/suppressions/a@example.org", headers=auth(ADMIN)).status_code == 404
            proxy.down()
            statuses = [client.get(f"/v1/suppressions/u{n}@example.org", headers=auth(ADMIN)).status_code
                        for n in range(12)]
            statuses.append(client.get("/readyz").status_code)
            assert statuses == [503] * 13
            proxy.up()
            deadline = time.monotonic() + 30
            while client.get("/v1/suppressions/a@example.org", headers=auth(ADMIN)).status_code != 404:
                assert time.monotonic() < deadline, "the API did not recover after the database returned"
                time.sleep(0.2)
    finally:
        store.close()
        proxy.down()
    failed = API_UNAVAILABLE._value.get() - before
    events = [json.loads(line) for line in log_output.getvalue().splitlines() if line.startswith("{")]
    names = [e["event"] for e in events if e["event"].startswith("api.")]
    assert names == ["api.database_unavailable", "api.database_available"], names
    assert events[-1]["failed_requests"] == failed == 13
