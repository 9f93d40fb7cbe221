"""Bearer tokens: stored hashed in the configuration, each with the scopes read and/or write.

    token = new_token()                  # give this to the client, once
    hash_token(token)                    # "sha256:..." goes into [[api.tokens]] hash = ...

Tokens are 256-bit random strings, so one SHA-256 is enough to store them safely (a slow
password hash would only slow every request). A request's token is hashed and looked up; the
token itself is never logged, kept, or echoed in an error.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from processor.api.errors import ApiError
from processor.config import ApiToken

__all__ = ["ANONYMOUS", "READ", "UI", "WRITE", "Principal", "TokenTable", "hash_token", "new_token"]

READ = "read"
WRITE = "write"
UI = "ui"
TOKEN_PREFIX = "bp_"
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="bounce-processor"'}
_INVALID = {"WWW-Authenticate": 'Bearer realm="bounce-processor", error="invalid_token"'}


def new_token() -> str:
    """A fresh random token (``bp_`` and 43 URL-safe characters)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The form a token is stored in the configuration."""
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: the token's name (for logs and the audit trail) and its scopes."""

    name: str
    scopes: frozenset[str]


ANONYMOUS = Principal("anonymous", frozenset({READ, WRITE, UI}))
"""Everyone, when no tokens are configured (allowed on a loopback address only)."""


class TokenTable:
    """The configured tokens, by digest."""

    def __init__(self, tokens: list[ApiToken]) -> None:
        self._by_digest = {t.hash.removeprefix("sha256:"): Principal(t.name, frozenset(t.scopes)) for t in tokens}
        self._by_name = {p.name: p for p in self._by_digest.values()}
        self.open = not tokens
        """No tokens configured: every request is ANONYMOUS with every scope."""

    def authenticate(self, token: str | None) -> Principal:
        """The principal a bearer token belongs to; ApiError 401 if there is none."""
        if self.open:
            return ANONYMOUS
        if not token:
            raise ApiError(401, "unauthorized", "a bearer token is required (Authorization: Bearer <token>)",
                           headers=_CHALLENGE)
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()
        principal = self._by_digest.get(digest)
        if principal is None:
            raise ApiError(401, "unauthorized", "the bearer token is not valid", headers=_INVALID)
        return principal

    def require(self, token: str | None, scope: str) -> Principal:
        """The principal, if it has ``scope``; ApiError 401 or 403 otherwise."""
        principal = self.authenticate(token)
        if scope not in principal.scopes:
            raise ApiError(403, "forbidden", f"the token {principal.name!r} lacks the {scope!r} scope")
        return principal

    def by_name(self, name: str) -> Principal | None:
        """The configured principal called ``name`` now (None once its token is gone), so that a
        console session ends when its token is removed, and follows changes to its scopes."""
        if self.open:
            return ANONYMOUS if name == ANONYMOUS.name else None
        return self._by_name.get(name)
