"""/v1/suppressions: look-ups (GET, HEAD, batch check), the listing, manual changes, history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Body, Depends, Query, Request
from starlette.responses import Response

from processor.api.deps import ReadAccess, StoreDep, WriteAccess
from processor.api.errors import ApiError, ErrorBody
from processor.api.json import json_response
from processor.api.routes.common import ScopeQuery, blocking, entry_filter, v1_router
from processor.api.schemas import (
    CheckRequest,
    CheckResponse,
    History,
    Page,
    RemoveResponse,
    Suppression,
    SuppressRequest,
    entry_json,
    event_json,
)
from processor.metrics import SUPPRESSIONS
from processor.store import EntryFilter
from processor.store.suppressions import MAX_ROW_ID

router = v1_router("suppressions")

Responses = dict[int | str, dict[str, Any]]
_NOT_FOUND: Responses = {404: {"model": ErrorBody, "description": "The address is not suppressed"}}
_TOO_LARGE: Responses = {413: {"model": ErrorBody, "description": "More addresses than api.batch_limit"}}
_NOT_SUPPRESSED = b'{"error":"not_found","message":"the address is not suppressed"}'


def _not_found() -> Response:
    return Response(_NOT_SUPPRESSED, 404, media_type="application/json")


@router.get("/v1/suppressions/{address:text}/events", response_model=History, summary="Why is this suppressed?")
async def address_events(
    address: str,
    store: StoreDep,
    _: ReadAccess,
    scope: Annotated[str | None, Query(max_length=255, description="Only this scope")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_ROW_ID, description="Only events older than this id (paging)")
    ] = None,
) -> Response:
    """The address's events (reports and changes to the list), newest first."""
    normal = store.normalise(address)
    events = await blocking(store.history, normal, scope=scope, limit=limit, before_id=before)
    next_before = events[-1].id if len(events) == limit else None
    return json_response({"address": normal, "events": [event_json(e) for e in events], "next_before": next_before})


@router.get("/v1/suppressions/{address:address}", response_model=Suppression, responses=_NOT_FOUND,
            summary="Is this address suppressed?")
async def get_suppression(address: str, store: StoreDep, _: ReadAccess, scope: ScopeQuery = "global") -> Response:
    """200 with the entry in force (a global entry counts in every scope), or 404."""
    entry = store.is_suppressed(address, scope)
    if entry is None:
        return _not_found()
    return json_response(entry_json(entry))


@router.head("/v1/suppressions/{address:address}", summary="Is this address suppressed? (no body)",
             responses={200: {"description": "Suppressed"}, 404: {"description": "Not suppressed"}})
async def head_suppression(address: str, store: StoreDep, _: ReadAccess, scope: ScopeQuery = "global") -> Response:
    """The cheapest check: 200 if suppressed, 404 if not, and no body."""
    entry = store.is_suppressed(address, scope)
    return Response(status_code=404 if entry is None else 200)


@router.post("/v1/suppressions/check", response_model=CheckResponse, responses=_TOO_LARGE,
             summary="Which of these addresses are suppressed?")
async def check_addresses(request: Request, store: StoreDep, _: ReadAccess, body: CheckRequest) -> Response:
    """The suppressed addresses among those given (keyed as given), and the invalid ones with
    why. At most ``api.batch_limit`` addresses (10,000 by default); more get 413."""
    limit: int = request.app.state.settings.api.batch_limit
    if len(body.addresses) > limit:
        raise ApiError(413, "too_large", f"{len(body.addresses)} addresses in one check; the limit is {limit}")
    result = await blocking(store.check_many, body.addresses, body.scope)
    return json_response({
        "checked": len(body.addresses),
        "suppressed": {given: entry_json(entry) for given, entry in result.suppressed.items()},
        "invalid": result.invalid,
    })


@router.get("/v1/suppressions", response_model=Page, summary="List entries")
async def list_suppressions(
    request: Request,
    store: StoreDep,
    _: ReadAccess,
    filters: Annotated[EntryFilter, Depends(entry_filter)],
    limit: Annotated[int, Query(ge=1, description="Page size (reduced to api.page_limit)")] = 100,
    cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")] = None,
) -> Response:
    """Entries in a stable order, one page at a time: entries added while paging come after the
    cursor, so paging never skips or repeats one."""
    size = min(limit, request.app.state.settings.api.page_limit)
    page = await blocking(store.list_entries, filters, cursor=cursor or None, limit=size)
    return json_response({"entries": [entry_json(e) for e in page.entries], "next_cursor": page.next_cursor})


@router.put("/v1/suppressions/{address:address}", response_model=Suppression, summary="Suppress an address by hand",
            responses={201: {"model": Suppression, "description": "Suppressed (it was not before)"}})
async def put_suppression(
    address: str,
    store: StoreDep,
    caller: WriteAccess,
    body: Annotated[SuppressRequest | None, Body()] = None,
) -> Response:
    """Add (201) or update (200) a manual entry; recorded as an event with the token's name."""
    request = body or SuppressRequest()
    if request.expires_at is not None and request.ttl_days is not None:
        raise ApiError(422, "invalid_request", "give expires_at or ttl_days, not both")
    expires = request.expires_at
    if request.ttl_days is not None:
        expires = datetime.now(UTC) + timedelta(days=request.ttl_days)
    entry = await blocking(
        store.add, address, reason=request.reason, scope=request.scope, expires_at=expires, note=request.note,
        actor=f"api:{caller.name}", bounce_type=request.bounce_type,
    )
    SUPPRESSIONS.labels(source=entry.source, action="add").inc()
    created = entry.event_count == 1 and entry.first_seen == entry.last_seen
    return json_response(entry_json(entry), 201 if created else 200)


@router.delete("/v1/suppressions/{address:address}", response_model=RemoveResponse, summary="Unsuppress an address")
async def delete_suppression(
    *,
    address: str,
    store: StoreDep,
    caller: WriteAccess,
    scope: ScopeQuery = "global",
    note: Annotated[str, Query(max_length=2000)] = "",
    allow_days: Annotated[int | None, Query(ge=0, le=36_500, description="Ignore bounces for this long")] = None,
) -> Response:
    """Remove the entry by hand. The removal is an event even if nothing was suppressed: older
    reports never re-suppress the address, nor do bounces within ``allow_days``."""
    normal = store.normalise(address)
    removed = await blocking(store.remove, normal, scope=scope, note=note, actor=f"api:{caller.name}",
                             allow_days=allow_days)
    if removed is not None:
        SUPPRESSIONS.labels(source=removed.source, action="remove").inc()
    body: dict[str, Any] = {"address": normal, "scope": scope, "removed": removed is not None,
                            "entry": entry_json(removed) if removed is not None else None}
    return json_response(body)


__all__ = ["router"]
