"""What the policy service says: the answer for a suppression entry, and the scope to check.

Answers are bytes ready to write (``action=...`` and the empty line), made once per distinct
(scope, source, reason, bounce type) and shared by every entry that has them, so that answering
a request formats nothing.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final

from processor.config import PolicyAnswer, PolicydSettings

__all__ = ["DUNNO", "Answerer", "Hit"]

GLOBAL_SCOPE: Final = "global"
DUNNO: Final = b"action=DUNNO\n\n"
_VERB: Final[dict[str, str]] = {"reject": "REJECT", "defer": "DEFER", "dunno": "DUNNO"}
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]+")
_MAX_FIELD = 120
_CLIENT_CACHE_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class Hit:
    """A suppression entry as the policy service sees it, with its answer made up front."""

    scope: str
    source: str
    reason: str
    bounce_type: str
    expiring: bool
    """The entry has an expiry (the lookup checks it against the clock)."""
    verdict: str
    """REJECT, DEFER or DUNNO."""
    answer: bytes


def _clean(value: str) -> str:
    """One short line of printable ASCII (a reason comes from mail: it may hold anything)."""
    text = _UNPRINTABLE.sub(" ", value).strip()
    return text if len(text) <= _MAX_FIELD else text[: _MAX_FIELD - 3] + "..."


class Answerer:
    """Turns settings into answers; one per service."""

    def __init__(self, settings: PolicydSettings) -> None:
        self.settings = settings
        self._hits: dict[tuple[str, str, str, str, bool], Hit] = {}
        self.store_error_verdict = "DEFER" if settings.on_store_error == "defer" else "DUNNO"
        self.store_error_answer = (
            f"action=DEFER {settings.store_error_text.format()}\n\n".encode()
            if settings.on_store_error == "defer"
            else DUNNO
        )
        self._networks = [
            (ipaddress.ip_network(network, strict=False), scope) for network, scope in settings.scope_by_client.items()
        ]
        # most specific network first
        self._networks.sort(key=lambda item: item[0].prefixlen, reverse=True)
        self._client_scopes: dict[str, str | None] = {}
        self._sender_scopes = settings.scope_by_sender_domain
        self._any_scope_rule = bool(self._networks or self._sender_scopes or settings.sender_domain_scope)

    def action(self, source: str, bounce_type: str) -> PolicyAnswer:
        """The configured answer for an entry: by bounce type, else by source, else the default."""
        s = self.settings
        return s.action_by_bounce_type.get(bounce_type) or s.action_by_source.get(source) or s.default_action

    def hit(self, scope: str, source: str, reason: str, bounce_type: str, expiring: bool) -> Hit:
        """The shared Hit for these labels (made on first use)."""
        key = (scope, source, reason, bounce_type, expiring)
        found = self._hits.get(key)
        if found is not None:
            return found
        action = self.action(source, bounce_type)
        fields = {
            "reason": _clean(reason) or _clean(source) or "suppressed",
            "source": _clean(source),
            "bounce_type": _clean(bounce_type),
            "scope": _clean(scope),
        }
        if action == "reject":
            answer = f"action=REJECT {self.settings.reject_text.format(**fields)}\n\n".encode()
        elif action == "defer":
            answer = f"action=DEFER {self.settings.defer_text.format(**fields)}\n\n".encode()
        else:
            answer = DUNNO
        made = Hit(scope, source, reason, bounce_type, expiring, _VERB[action], answer)
        return self._hits.setdefault(key, made)

    def forget_hits(self) -> None:
        """Drop the shared Hits (a full reload makes new ones; old reasons need not stay in memory)."""
        self._hits = {}

    def scope_for(self, client_address: str, sender: str) -> str:
        """The scope to check besides the global one: by client network, else by the envelope
        sender's domain (mapped, or itself with ``sender_domain_scope``), else global only."""
        if not self._any_scope_rule:
            return GLOBAL_SCOPE
        if self._networks and client_address:
            scope = self._client_scope(client_address)
            if scope is not None:
                return scope
        domain = sender.rpartition("@")[2].strip().lower().rstrip(".")
        if not domain:
            return GLOBAL_SCOPE
        mapped = self._sender_scopes.get(domain)
        if mapped is not None:
            return mapped
        return domain if self.settings.sender_domain_scope else GLOBAL_SCOPE

    def _client_scope(self, client_address: str) -> str | None:
        try:
            return self._client_scopes[client_address]
        except KeyError:
            pass
        scope: str | None = None
        try:
            ip = ipaddress.ip_address(client_address)
        except ValueError:
            ip = None
        if ip is not None:
            for network, name in self._networks:
                if ip.version == network.version and ip in network:
                    scope = name
                    break
        if len(self._client_scopes) >= _CLIENT_CACHE_LIMIT:
            self._client_scopes.clear()
        self._client_scopes[client_address] = scope
        return scope
