"""Console sessions and CSRF protection.

Sign-in swaps an API token (POSTed, so it stays out of URLs and logs) for a signed cookie
holding the token's name, a per-session form token and an expiry. The cookie is signed with
itsdangerous (its own salt, so no other signed value can pass for it), HttpOnly, SameSite=Strict
and Secure when the request came over TLS. On every request the name is looked up again in the
token table: removing a token ends its sessions, and its scopes are the current ones.

A state-changing request must pass two checks (as datasette's CrossOriginProtectionMiddleware,
plus the form token it replaced): the browser's ``Sec-Fetch-Site`` is same-origin or none (or,
without it, ``Origin`` names this very origin), and the form carries the session's token.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request

from processor.api.auth import UI, WRITE, Principal, TokenTable

__all__ = ["COOKIE_NAME", "CsrfError", "Session", "SessionCodec", "check_origin"]

COOKIE_NAME = "bp_console"
_SALT = "bounce-processor.console.session"


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in operator: the token's name and scopes, and the form token of this session."""

    principal: Principal
    form_token: str
    expires: float

    @property
    def name(self) -> str:
        return self.principal.name

    @property
    def can_change(self) -> bool:
        return WRITE in self.principal.scopes


class CsrfError(Exception):
    """A state-changing request that did not come from the console's own pages."""


class SessionCodec:
    """Makes and reads the session cookie."""

    def __init__(self, secret: str | bytes, tokens: TokenTable, lifetime_seconds: float) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt=_SALT)
        self._tokens = tokens
        self.lifetime = lifetime_seconds

    def issue(self, principal: Principal) -> tuple[str, Session]:
        """A new session (and its cookie value) for a principal that signed in."""
        session = Session(principal, secrets.token_urlsafe(24), time.time() + self.lifetime)
        value = self._serializer.dumps({"n": principal.name, "f": session.form_token, "e": session.expires})
        return value, session

    def read(self, cookie: str | None) -> Session | None:
        """The session a cookie holds, or None (missing, forged, expired, token gone or no ui scope)."""
        if not cookie:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=int(self.lifetime) + 60)
        except BadSignature:
            return None
        if not isinstance(data, dict):
            return None
        name, form_token, expires = data.get("n"), data.get("f"), data.get("e")
        if not isinstance(name, str) or not isinstance(form_token, str) or not isinstance(expires, int | float):
            return None
        if expires < time.time():
            return None
        principal = self._tokens.by_name(name)
        if principal is None or UI not in principal.scopes:
            return None
        return Session(principal, form_token, float(expires))


def check_origin(request: Request) -> None:
    """Refuse a cross-site state-changing request (CsrfError)."""
    headers = request.headers
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None:
        if fetch_site in ("same-origin", "none"):
            return
        raise CsrfError(f"the request came from another site or origin (Sec-Fetch-Site: {fetch_site})")
    origin = headers.get("origin")
    if origin is None:
        return  # not a browser (curl, a test client): the form token still has to match
    expected = f"{request.url.scheme}://{headers.get('host', '')}"
    if origin != expected:
        raise CsrfError("the request's Origin is not this console")


def check_form_token(session: Session | None, given: str | None) -> None:
    """The form must carry the session's token (CsrfError)."""
    if session is None or not given or not secrets.compare_digest(given, session.form_token):
        raise CsrfError("the form is missing this session's token (reload the page and try again)")
