"""The seam every provider receiver follows: check the request on its raw bytes, then parse.

A receiver is built once per configured webhook (keys and patterns are prepared then, not per
request). ``verify`` raises ``WebhookError`` (a 4xx: the provider should not, or need not, retry)
and changes nothing; ``parse`` is pure: raw body and headers in, ``Event`` records out, the same
records the mailbox parser yields, so that the same rules, policy and store decide.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

from processor.config import WebhookSettings
from processor.parse.text import find_reply_code, find_status, one_line
from processor.records import Event

__all__ = [
    "CredentialsReceiver",
    "Parsed",
    "Receiver",
    "WebhookError",
    "WebhookRequest",
    "any_equal",
    "json_body",
    "member",
    "parse_objects",
    "scalar",
    "smtp_evidence",
]

MAX_DIAGNOSTIC = 2000


class WebhookError(Exception):
    """A request refused: ``status`` (4xx), a stable ``code`` for metrics and a message that names
    what is wrong but never a secret or a signature."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


@dataclass(slots=True)
class WebhookRequest:
    """One POST as received: the exact body bytes and the headers (names lower-case)."""

    body: bytes
    headers: Mapping[str, str]
    received_at: float
    """Unix time the request arrived (timestamps are checked against it)."""
    parsed_json: Any = field(default=None, repr=False)
    """The body as JSON, once read (verify and parse both need it; it is decoded once)."""

    def header(self, name: str) -> str:
        return self.headers.get(name, "")


@dataclass(slots=True)
class Parsed:
    """What a request carried: events to classify and store, and how many provider events were
    deliberately not turned into one (deliveries, opens, pings, ...), by provider event type."""

    events: list[Event] = field(default_factory=list)
    ignored: dict[str, int] = field(default_factory=dict)
    note: str = ""
    """Something done besides events (an SNS subscription confirmed), for the answer and the log."""

    def ignore(self, event_type: str) -> None:
        key = event_type or "unknown"
        self.ignored[key] = self.ignored.get(key, 0) + 1

    def take(self, event: Event | None, event_type: str) -> None:
        """Keep ``event``, or count the provider's ``event_type`` as ignored when it made none."""
        if event is None:
            self.ignore(event_type)
        else:
            self.events.append(event)


def parse_objects(items: list[Any], what: str, convert: Callable[[dict[str, Any]], Event | None]) -> Parsed:
    """``convert`` each JSON object of ``items`` (its ``event`` member names the type when it makes
    no event); WebhookError 400 "``what`` is a JSON object" for an element that is not one."""
    parsed = Parsed()
    for item in items:
        if not isinstance(item, dict):
            raise WebhookError(400, "malformed", f"{what} is a JSON object")
        parsed.take(convert(item), scalar(item.get("event")))
    return parsed


class Receiver(ABC):
    """One configured webhook of one provider."""

    provider: ClassVar[str]

    def __init__(self, name: str, settings: WebhookSettings) -> None:
        self.name = name
        self.settings = settings
        self._credentials = [c.encode() for c in settings.credentials()]
        self._bearer = [t.get_secret_value().encode() for t in settings.bearer_tokens]

    @abstractmethod
    def verify(self, request: WebhookRequest) -> None:
        """Raise WebhookError unless the request provably comes from the provider."""

    @abstractmethod
    def parse(self, request: WebhookRequest) -> Parsed:
        """The events in a verified request; WebhookError(400) for a body that is not the
        provider's shape."""

    # ------------------------------------------------------------------ shared checks

    @property
    def has_http_credentials(self) -> bool:
        return bool(self._credentials or self._bearer)

    def check_http_credentials(self, request: WebhookRequest, *, required: bool) -> None:
        """HTTP Basic (``user:password`` from ``basic_auth``) or Bearer (``bearer_tokens``), each
        compared in constant time against every configured value (rotation). With ``required``
        and nothing configured, every request is refused: an open receiver would let anyone
        suppress any address."""
        if not self.has_http_credentials:
            if required:
                raise WebhookError(401, "not_configured",
                                   f"webhook {self.name!r} has no basic_auth or bearer_tokens configured")
            return
        given = request.header("authorization")
        scheme, _, value = given.partition(" ")
        scheme = scheme.lower()
        ok = False
        if scheme == "basic" and self._credentials:
            try:
                decoded = base64.b64decode(value.strip(), validate=True)
            except (binascii.Error, ValueError):
                decoded = b""
            ok = any_equal(decoded, self._credentials)
        elif scheme == "bearer" and self._bearer:
            ok = any_equal(value.strip().encode(), self._bearer)
        if not ok:
            raise WebhookError(401, "bad_credentials", "missing or wrong HTTP credentials",
                               {"WWW-Authenticate": f'Basic realm="{self.name}"'})


def any_equal(given: bytes, accepted: list[bytes]) -> bool:
    """Constant-time comparison against every accepted value (no early exit on a match)."""
    found = False
    for candidate in accepted:
        found |= hmac.compare_digest(given, candidate)
    return found


class CredentialsReceiver(Receiver):
    """A provider that signs nothing: HTTP Basic or Bearer credentials are the whole check, and
    they are required (see ``check_http_credentials``)."""

    def verify(self, request: WebhookRequest) -> None:
        self.check_http_credentials(request, required=True)


def json_body(request: WebhookRequest) -> Any:
    """The body as JSON (decoded on first use); WebhookError 400 when it is not JSON."""
    if request.parsed_json is None:
        try:
            request.parsed_json = orjson.loads(request.body)
        except orjson.JSONDecodeError as exc:
            raise WebhookError(400, "malformed", f"the body is not JSON: {exc}") from None
    return request.parsed_json


def scalar(value: Any) -> str:
    """A JSON scalar as text ("" for null, objects and arrays)."""
    if value is None or isinstance(value, dict | list | bool):
        return ""
    return str(value).strip()


def member(container: dict[str, Any], key: str) -> dict[str, Any]:
    """``container[key]`` when it is a JSON object, else an empty one (providers omit blocks)."""
    value = container.get(key)
    return value if isinstance(value, dict) else {}


def smtp_evidence(diagnostic: str, status: str = "", reply_code: str = "") -> tuple[str, str, str]:
    """(status, reply code, diagnostic) from a provider's fields, the codes filled in from the
    MTA's text when the provider gave none. The text is put on one line and clipped."""
    line = one_line(diagnostic)[:MAX_DIAGNOSTIC]
    for prefix in ("smtp;", "smtp ;"):
        if line.lower().startswith(prefix):
            line = line[len(prefix):].strip()
    status = status.strip() or find_status(line)
    reply_code = reply_code.strip() or find_reply_code(line)
    return status, reply_code, line
