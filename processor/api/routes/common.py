"""What several routers share: the strict router factory, query parameter types, blocking calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal, ParamSpec, TypeVar

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor

from processor.api.errors import ERROR_RESPONSES, StrictQueryRoute
from processor.api.schemas import SCOPE_PATTERN, Rfc3339
from processor.store import EntryFilter

P = ParamSpec("P")
T = TypeVar("T")

ScopeQuery = Annotated[str, Query(pattern=SCOPE_PATTERN, description='"global", a sending domain or a list name')]
OptionalScopeQuery = Annotated[
    str | None, Query(pattern=SCOPE_PATTERN, description="Only this scope (default: every scope)")
]
SourceName = Literal["bounce", "complaint", "unsubscribe", "manual", "import"]


class AddressConvertor(Convertor[str]):
    """``{address:address}``: any text (slashes too, sent as %2F) except the fixed names beside it
    (export, check, import) and a trailing /events, so that those paths never fall through to the
    address routes (a PUT on /v1/suppressions/export is 405, not "invalid address 'export'")."""

    regex = r"(?!(?:export|check|import)\Z)(?![\s\S]*/events\Z)[\s\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


class AnyTextConvertor(AddressConvertor):
    """``{address:text}``: any text, line breaks included (Starlette's ``path`` stops at them, and
    an address with a line break must be answered "invalid", not "no such path")."""

    regex = r"[\s\S]*"


register_url_convertor("address", AddressConvertor())
register_url_convertor("text", AnyTextConvertor())


def v1_router(tag: str) -> APIRouter:
    """A router whose routes reject unknown query parameters and document the common errors."""
    return APIRouter(route_class=StrictQueryRoute, tags=[tag], responses=ERROR_RESPONSES)


async def blocking(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a store call in the thread pool (the store is synchronous; the event loop must not wait)."""
    return await run_in_threadpool(fn, *args, **kwargs)


async def entry_filter(
    *,
    reason: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    bounce_type: Annotated[str | None, Query(min_length=1, max_length=40, description="hard, soft, ...")] = None,
    source: SourceName | None = None,
    scope: OptionalScopeQuery = None,
    domain: Annotated[str | None, Query(min_length=1, max_length=255, description="Addresses at this domain")] = None,
    since: Annotated[Rfc3339 | None, Query(description="Suppressed at or after this time")] = None,
    until: Annotated[Rfc3339 | None, Query(description="Suppressed before this time")] = None,
    include_expired: Annotated[bool, Query(description="Also expired entries not purged yet")] = False,
) -> EntryFilter:
    """The filters of a listing or an export."""
    return EntryFilter(reason=reason, bounce_type=bounce_type, source=source, scope=scope, domain=domain,
                       since=since, until=until, include_expired=include_expired)
