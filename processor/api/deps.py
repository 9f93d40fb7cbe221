"""FastAPI dependencies: the store, the settings and the caller, injected into route functions.

    async def handler(store: StoreDep, caller: ReadAccess) -> ...

All are ``async def``: they never block, and FastAPI would run plain ``def`` dependencies in
its thread pool, which costs more than the work they do.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from processor.api.auth import READ, WRITE, Principal, TokenTable
from processor.config import Settings
from processor.store import Store

__all__ = ["ReadAccess", "SettingsDep", "StoreDep", "WriteAccess", "bearer"]

bearer = HTTPBearer(auto_error=False, description="A token from [[api.tokens]] (stored there hashed).")


async def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _token(credentials: HTTPAuthorizationCredentials | None) -> str | None:
    return credentials.credentials if credentials is not None else None


async def read_access(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
) -> Principal:
    tokens: TokenTable = request.app.state.tokens
    return tokens.require(_token(credentials), READ)


async def write_access(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
) -> Principal:
    tokens: TokenTable = request.app.state.tokens
    return tokens.require(_token(credentials), WRITE)


StoreDep = Annotated[Store, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ReadAccess = Annotated[Principal, Depends(read_access)]
WriteAccess = Annotated[Principal, Depends(write_access)]
