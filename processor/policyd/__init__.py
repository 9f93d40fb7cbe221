"""A Postfix policy service: refuse suppressed recipients at RCPT TO.

    # main.cf
    smtpd_recipient_restrictions = ..., check_policy_service inet:127.0.0.1:10040, ...

``bounce-processor policyd`` answers each ``smtpd_access_policy`` request at the RCPT stage with
REJECT or DEFER (a configured text naming the reason) for a recipient on the suppression list,
and DUNNO otherwise, from an in-memory copy of the list kept current from the store (or one
indexed query per recipient). Settings: ``[policyd]`` (``processor.config.PolicydSettings``).

- ``_protocol``: the wire protocol and the per-connection asyncio protocol.
- ``_answers``: answers and scopes from the settings.
- ``_lookup``: the in-memory copy (``MemoryLookup``) and the per-query lookup (``QueryLookup``).
- ``_server``: listening, background refresh, timeouts, signals.
"""

from __future__ import annotations

from processor.policyd._answers import DUNNO, Answerer, Hit
from processor.policyd._lookup import MemoryLookup, QueryLookup, StoreUnavailable
from processor.policyd._protocol import PolicyConnection, ProtocolError, parse_request
from processor.policyd._server import Listen, ListenError, PolicyServer, parse_listen, run

__all__ = [
    "DUNNO",
    "Answerer",
    "Hit",
    "Listen",
    "ListenError",
    "MemoryLookup",
    "PolicyConnection",
    "PolicyServer",
    "ProtocolError",
    "QueryLookup",
    "StoreUnavailable",
    "parse_listen",
    "parse_request",
    "run",
]
