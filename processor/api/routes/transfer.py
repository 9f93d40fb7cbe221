"""/v1/suppressions/export and /v1/suppressions/import: the list as CSV or JSON lines, streamed
both ways (neither side of the API holds the file)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Annotated, Literal

import structlog
from anyio import from_thread
from fastapi import Depends, Request
from starlette.requests import ClientDisconnect
from starlette.responses import Response, StreamingResponse

from processor.api.deps import ReadAccess, SettingsDep, StoreDep, WriteAccess
from processor.api.errors import ApiError, ErrorBody
from processor.api.json import json_response
from processor.api.routes.common import blocking, entry_filter, v1_router
from processor.api.schemas import ImportResponse, import_json
from processor.metrics import SUPPRESSIONS
from processor.store import EntryFilter, Page, Store, StoreError
from processor.store.transfer import Format, read_rows, write_entries

router = v1_router("transfer")
log = structlog.get_logger(__name__)

EXPORT_BATCH = 2000
_MEDIA = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
_FORMAT_OF_MEDIA: dict[str, Format] = {
    "text/csv": "csv",
    "text/plain": "csv",
    "application/csv": "csv",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/json-lines": "jsonl",
    "application/x-jsonlines": "jsonl",
}
_TEXT = {"schema": {"type": "string"}}
_BODY = {"schema": {"type": "string", "minLength": 1}}


def _export_chunks(store: Store, filters: EntryFilter, first: Page, fmt: Format, now: datetime) -> Iterator[str]:
    """The export, one batch of entries at a time (CSV: one header line, at the top)."""
    page = first
    header = True
    while True:
        buffer = io.StringIO()
        write_entries(page.entries, buffer, fmt)
        text = buffer.getvalue()
        if fmt == "csv" and not header:
            text = text[text.index("\n") + 1 :]
        header = False
        if text:
            yield text
        if page.next_cursor is None:
            return
        try:
            page = store.list_entries(filters, cursor=page.next_cursor, limit=EXPORT_BATCH, now=now)
        except StoreError as exc:
            log.error("api.export_failed", error=str(exc))
            raise


@router.get(
    "/v1/suppressions/export",
    summary="Export the list (streamed)",
    response_class=StreamingResponse,
    responses={200: {"description": "The entries, CSV with a header line or one JSON object per line",
                     "content": {"text/csv": _TEXT, "application/x-ndjson": _TEXT}}},
)
async def export_suppressions(
    store: StoreDep,
    _: ReadAccess,
    filters: Annotated[EntryFilter, Depends(entry_filter)],
    format: Literal["csv", "jsonl"] = "csv",
) -> Response:
    """Every matching entry, streamed in a stable order; the columns are those ``import`` reads."""
    now = datetime.now(UTC)
    # The first batch before the response starts: a bad filter or an unreachable database is
    # still a proper error rather than a cut-off download.
    first = await blocking(store.list_entries, filters, limit=EXPORT_BATCH, now=now)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    headers = {"Content-Disposition": f'attachment; filename="suppressions-{stamp}.{format}"'}
    return StreamingResponse(_export_chunks(store, filters, first, format, now), media_type=_MEDIA[format],
                             headers=headers)


def _format(request: Request, given: str | None) -> Format:
    if given is not None:
        return "jsonl" if given == "jsonl" else "csv"
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    found = _FORMAT_OF_MEDIA.get(media)
    if found is None:
        raise ApiError(415, "unsupported_media_type",
                       "send text/csv or application/x-ndjson (or name the format: ?format=csv|jsonl)")
    return found


class _TooLarge(Exception):
    pass


async def _next_chunk(stream: AsyncIterator[bytes]) -> bytes | None:
    try:
        while True:
            chunk = await stream.__anext__()
            if chunk:
                return chunk
    except StopAsyncIteration:
        return None


class _BodyLines:
    """The request body's lines, pulled from the event loop as the importer (in a worker thread)
    asks for them: the body is never held whole. ``size`` counts the bytes read."""

    def __init__(self, stream: AsyncIterator[bytes], limit: int) -> None:
        self.stream = stream
        self.limit = limit
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        pending = b""
        while True:
            chunk = from_thread.run(_next_chunk, self.stream)
            if chunk is None:
                break
            self.size += len(chunk)
            if self.size > self.limit:
                raise _TooLarge
            *complete, pending = (pending + chunk).split(b"\n")
            for line in complete:
                yield line + b"\n"
        if pending:
            yield pending


@router.post(
    "/v1/suppressions/import",
    response_model=ImportResponse,
    summary="Import entries (streamed)",
    openapi_extra={"requestBody": {"required": True, "content": {
        "text/csv": _BODY, "application/x-ndjson": _BODY, "text/plain": _BODY}}},
    responses={413: {"model": ErrorBody, "description": "Larger than api.max_import_bytes"},
               415: {"model": ErrorBody, "description": "Neither CSV nor JSON lines"}},
)
async def import_suppressions(
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    caller: WriteAccess,
    format: Literal["csv", "jsonl"] | None = None,
) -> Response:
    """Read CSV (our export's columns, or a provider's: email/address, reason, created) or JSON
    lines. New addresses are suppressed, active entries left as they are; each rejected row is
    reported with its line number and the rows after it are still read."""
    fmt = _format(request, format)
    limit = settings.api.max_import_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "too_large", f"the body is larger than api.max_import_bytes ({limit} bytes)")
    body = _BodyLines(request.stream(), limit)
    rows = read_rows(body, fmt)
    try:
        report = await blocking(store.import_rows, rows, actor=f"api:{caller.name}", keep_rejected=100)
    except _TooLarge:
        raise ApiError(413, "too_large",
                       f"the body is larger than api.max_import_bytes ({limit} bytes); batches before the limit "
                       "may have been imported (importing the same rows again is safe)") from None
    except ClientDisconnect:
        raise ApiError(400, "invalid_request", "the client went away before the body was complete") from None
    if body.size == 0:
        raise ApiError(422, "invalid_file", "the body is empty: send the CSV or JSON lines to import")
    if report.added:
        SUPPRESSIONS.labels(source="import", action="add").inc(report.added)
    log.info("api.imported", caller=caller.name, read=report.read, added=report.added,
             rejected=report.rejected_count)
    return json_response(import_json(report))
