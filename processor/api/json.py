"""JSON bodies rendered with orjson (the hot paths build plain dicts and skip response models)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse, Response

__all__ = ["FastJSONResponse", "json_response"]


class FastJSONResponse(JSONResponse):
    """A JSONResponse rendered by orjson: datetimes as RFC 3339, about ten times faster."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A ready JSON response (no validation, no second serialisation)."""
    return Response(orjson.dumps(content), status, headers, media_type="application/json")
