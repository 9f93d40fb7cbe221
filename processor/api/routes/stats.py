"""/v1/stats: what the processor has seen over a time window."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from starlette.responses import Response

from processor.api.deps import ReadAccess, StoreDep
from processor.api.json import json_response
from processor.api.routes.common import blocking, v1_router
from processor.api.schemas import Rfc3339, StatsResponse, stats_json

router = v1_router("stats")


@router.get("/v1/stats", response_model=StatsResponse, summary="Counts over a time window")
async def get_stats(
    store: StoreDep,
    _: ReadAccess,
    since: Annotated[Rfc3339 | None, Query(description="Default: 7 days before until")] = None,
    until: Annotated[Rfc3339 | None, Query(description="Default: now")] = None,
    top: Annotated[int, Query(ge=1, le=1000, description="Largest groups shown by reason and domain")] = 20,
) -> Response:
    """Events in [since, until) by bounce type, reason, domain, mailbox and decision; entries in
    force by source and bounce type."""
    stats = await blocking(store.stats, since, until, top=top)
    return json_response(stats_json(stats))
