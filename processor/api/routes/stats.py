"""/v1/stats: what the processor has seen over a time window."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from processor.api.deps import ReadAccess, StoreDep, WriteAccess
from processor.api.json import json_response
from processor.api.routes.common import blocking, v1_router
from processor.api.schemas import Rfc3339, StatsResponse, stats_json
from processor.store.console import record_sent
from processor.store.daily import SentReport

router = v1_router("stats")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = rf"^{_LABEL}(?:\.{_LABEL})*\.?$"


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


class SentDay(BaseModel):
    """How many messages one sending domain sent on one day."""

    model_config = ConfigDict(extra="forbid")

    day: date = Field(description="The UTC day, YYYY-MM-DD")
    sending_domain: str = Field(min_length=1, max_length=253, pattern=_DOMAIN,
                                description="The domain of the From address the messages were sent with")
    sent: int = Field(ge=0, le=10**12, description="Messages sent that day (a later report for the day replaces it)")


class SentCounts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    counts: list[SentDay] = Field(min_length=1, max_length=10_000)


class SentStored(BaseModel):
    stored: int


@router.post("/v1/stats/sent", response_model=SentStored, summary="Report messages sent per day and sending domain")
async def post_sent(store: StoreDep, _: WriteAccess, body: SentCounts) -> Response:
    """The denominators of the console's complaint and hard-bounce rates. A report for a (day,
    sending domain) replaces the earlier one, so a sender may send a running total during the
    day and a retried request changes nothing."""
    reports = [SentReport(item.day, item.sending_domain.lower().rstrip("."), item.sent) for item in body.counts]
    stored = await blocking(record_sent, store, reports)
    return json_response({"stored": stored})
