"""The OpenAPI schema, and a schemathesis run against it: no 5xx, no response that breaks it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance
from starlette.testclient import TestClient

from processor.api import create_app
from processor.store import Store
from tests.api.conftest import ADMIN, auth, make_settings


@pytest.fixture
def api_schema(db_url: str, store: Store) -> Iterator[Any]:
    """The app's own schema, loaded by schemathesis from /openapi.json over ASGI."""
    store.add("known@example.org", reason="userunknown", bounce_type="hard")
    app = create_app(make_settings(db_url), store)
    with TestClient(app):
        yield schemathesis.openapi.from_asgi("/openapi.json", app)


# Every built-in check runs but these: positive_data_acceptance expects any request the schema
# allows to succeed, while addresses and import files are validated beyond what a JSON schema can
# say ("0" is a string but not an address): those answer a documented 422 by design. And an
# import body is a file: a "number" that negative generation sends as text/csv is a CSV line,
# read and reported as a rejected row, not a schema violation.
EXCLUDED = [positive_data_acceptance]
FILE_BODY_EXCLUDED = [positive_data_acceptance, negative_data_rejection]


def _call_and_validate(case: Any, mode: GenerationMode) -> None:
    if case.query:
        # The HTTP client drops a parameter whose value is None, so a generated extra (or
        # mistyped) parameter would silently not be sent; send it empty so the API sees it.
        case.query = {name: "" if value is None else value for name, value in case.query.items()}
    excluded = FILE_BODY_EXCLUDED if case.operation.path == "/v1/suppressions/import" else EXCLUDED
    # A negative case may leave out the Authorization header the operation requires: sent as
    # generated (no token), it must be refused. Any other case gets a valid token, so that the
    # API's answer to the rest of the request is what is checked.
    dropped_auth = mode is GenerationMode.NEGATIVE and "Authorization" not in (case.headers or {})
    case.call_and_validate(headers=None if dropped_auth else auth(ADMIN), excluded_checks=excluded)


def _has_inputs(operation: Any) -> bool:
    return bool(list(operation.iter_parameters()) or operation.get_request_payload_content_types())


# schemathesis' pytest plugin (schemathesis.pytest.from_fixture) reaches into pytest's private
# node attributes and broke with pytest 9.2; its plain API (operations as hypothesis strategies)
# does not depend on pytest at all, so the run survives releases of either.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_api_conforms_to_its_schema(api_schema: Any, mode: GenerationMode) -> None:
    """Generated requests (valid and invalid) to every operation never get a 5xx or a response the
    schema does not allow."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10, [op.label for op in operations]
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and not _has_inputs(operation):
            continue  # nothing the request carries can be made invalid (/healthz, /metrics, ...)
        strategy = operation.as_strategy(generation_mode=mode)

        @given(case=strategy)
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case: Any) -> None:
            _call_and_validate(case, mode)

        try:
            run()
        except Exception as exc:
            exc.add_note(f"operation: {operation.label} ({mode})")
            raise


def test_schema_documents_the_operations(client: TestClient) -> None:
    """/openapi.json lists every operation with its errors and the bearer scheme."""
    document = client.get("/openapi.json").json()
    paths = document["paths"]
    assert set(paths["/v1/suppressions/{address}"]) == {"get", "head", "put", "delete"}
    for path in ("/v1/suppressions", "/v1/suppressions/check", "/v1/suppressions/{address}/events",
                 "/v1/suppressions/export", "/v1/suppressions/import", "/v1/stats", "/healthz", "/readyz",
                 "/metrics"):
        assert path in paths, path
    get = paths["/v1/suppressions/{address}"]["get"]
    assert {"200", "400", "401", "403", "404", "422", "503"} <= set(get["responses"])
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
