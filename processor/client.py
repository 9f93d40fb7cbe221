"""A Python client for the suppression API, for senders: ask before each delivery.

    from processor.client import ServiceUnavailable, SuppressionClient

    with SuppressionClient("http://127.0.0.1:8025", token="bp_...") as client:
        try:
            allowed = client.filter_allowed(recipients)      # one request per 10,000 addresses
        except ServiceUnavailable:
            allowed = []                                      # fail closed (or: recipients, fail open)

``AsyncSuppressionClient`` has the same methods as coroutines. Both keep one connection pool;
close them (or use ``with`` / ``async with``). Every network failure, timeout or 5xx answer is a
``ServiceUnavailable``, so the caller decides in one place whether to send anyway (fail open) or
hold the mail (fail closed); a request the service refuses is an ``ApiError`` (``InvalidAddress``
for a malformed address, ``AuthError`` for a missing or insufficient token). The token is sent
only in the Authorization header and never appears in an exception or a log.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import orjson

__all__ = [
    "ApiError",
    "AsyncSuppressionClient",
    "AuthError",
    "CheckResult",
    "ClientError",
    "InvalidAddress",
    "ServiceUnavailable",
    "Suppression",
    "SuppressionClient",
]

T = TypeVar("T")
TransportT = TypeVar("TransportT", httpx.BaseTransport, httpx.AsyncBaseTransport)
ClientT = TypeVar("ClientT", httpx.Client, httpx.AsyncClient)
DEFAULT_TIMEOUT = 2.0
DEFAULT_BATCH_TIMEOUT = 15.0
DEFAULT_BATCH_SIZE = 10_000
_JSON = {"Content-Type": "application/json"}


class ClientError(Exception):
    """Base class of the client's errors."""


class ServiceUnavailable(ClientError):
    """The service could not answer (unreachable, timed out, or a 5xx): decide to fail open or closed."""


class ApiError(ClientError):
    """The service refused the request; ``status``, ``error`` (a stable code) and ``message`` say why."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(f"{status} {error}: {message}")
        self.status = status
        self.error = error
        self.message = message


class InvalidAddress(ApiError):
    """The address is not one (422); ``message`` names the problem."""


class AuthError(ApiError):
    """No valid token (401), or the token lacks the scope (403)."""


@dataclass(frozen=True, slots=True)
class Suppression:
    """An entry in force: why and since when the address is not to be mailed."""

    address: str
    scope: str
    source: str
    reason: str
    bounce_type: str
    since: datetime
    last_seen: datetime
    expires_at: datetime | None
    event_count: int
    note: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Suppression:
        expires = data.get("expires_at")
        return cls(
            address=data["address"],
            scope=data["scope"],
            source=data["source"],
            reason=data["reason"],
            bounce_type=data["bounce_type"],
            since=datetime.fromisoformat(data["since"]),
            last_seen=datetime.fromisoformat(data["last_seen"]),
            expires_at=datetime.fromisoformat(expires) if expires else None,
            event_count=int(data["event_count"]),
            note=data.get("note", ""),
        )


@dataclass(frozen=True, slots=True)
class CheckResult:
    """A batch check: the suppressed and the invalid addresses, keyed as given."""

    suppressed: dict[str, Suppression]
    invalid: dict[str, str]
    """Address as given -> why it is not an address."""

    def allowed(self, addresses: Iterable[str]) -> list[str]:
        """The addresses (in the order given) that are neither suppressed nor invalid."""
        return [a for a in addresses if a not in self.suppressed and a not in self.invalid]


@dataclass(frozen=True, slots=True)
class _Call:
    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    batch: bool = False


_Op = Generator[_Call, httpx.Response, T]


def _path(address: str, suffix: str = "") -> str:
    if not isinstance(address, str):
        raise TypeError(f"address must be a string, not {type(address).__name__}")
    return f"/v1/suppressions/{quote(address, safe='@')}{suffix}"


def _scope(scope: str) -> dict[str, Any] | None:
    return None if scope == "global" else {"scope": scope}


def _json(response: httpx.Response) -> Any:
    """The body of a 2xx answer; one that is not JSON (a proxy's page) means the service is not there."""
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise ServiceUnavailable(f"the suppression service answered {response.status_code} without JSON") from None


def _raise_for(response: httpx.Response, allow: tuple[int, ...] = ()) -> None:
    status = response.status_code
    if status < 300 or status in allow:
        return
    if status >= 500:
        raise ServiceUnavailable(f"the suppression service answered {status}")
    error, message = "error", response.reason_phrase
    if response.request.method != "HEAD":
        try:
            body = orjson.loads(response.content)
            error, message = str(body.get("error", error)), str(body.get("message", message))
        except (orjson.JSONDecodeError, AttributeError):
            pass
    if status in (401, 403):
        raise AuthError(status, error, message)
    if status == 422 and error == "invalid_address":
        raise InvalidAddress(status, error, message)
    raise ApiError(status, error, message)


def _op_is_suppressed(address: str, scope: str) -> _Op[bool]:
    response = yield _Call("HEAD", _path(address), _scope(scope))
    if response.status_code == 422:
        detail = yield _Call("GET", _path(address), _scope(scope))  # a HEAD answer has no body to say why
        _raise_for(detail)
        raise InvalidAddress(422, "invalid_address", "the service refused the address")
    _raise_for(response, allow=(404,))
    return response.status_code == 200


def _op_lookup(address: str, scope: str) -> _Op[Suppression | None]:
    response = yield _Call("GET", _path(address), _scope(scope))
    _raise_for(response, allow=(404,))
    return None if response.status_code == 404 else Suppression.from_json(_json(response))


def _op_check(addresses: Sequence[str], scope: str, batch_size: int) -> _Op[CheckResult]:
    suppressed: dict[str, Suppression] = {}
    invalid: dict[str, str] = {}
    for start in range(0, len(addresses), batch_size):
        chunk = list(addresses[start : start + batch_size])
        response = yield _Call("POST", "/v1/suppressions/check", json={"addresses": chunk, "scope": scope}, batch=True)
        _raise_for(response)
        body = _json(response)
        suppressed.update((given, Suppression.from_json(entry)) for given, entry in body["suppressed"].items())
        invalid.update(body["invalid"])
    return CheckResult(suppressed, invalid)


def _op_filter_allowed(addresses: Iterable[str], scope: str, batch_size: int) -> _Op[list[str]]:
    given = list(addresses)
    result = yield from _op_check(given, scope, batch_size)
    return result.allowed(given)


def _op_suppress(
    address: str, reason: str, *, note: str, expires_at: datetime | None, ttl_days: int | None, scope: str
) -> _Op[Suppression]:
    body: dict[str, Any] = {"reason": reason, "note": note, "scope": scope}
    if expires_at is not None:
        body["expires_at"] = expires_at.isoformat()
    if ttl_days is not None:
        body["ttl_days"] = ttl_days
    response = yield _Call("PUT", _path(address), json=body)
    _raise_for(response)
    return Suppression.from_json(_json(response))


def _op_unsuppress(address: str, scope: str, note: str, allow_days: int | None) -> _Op[bool]:
    params: dict[str, Any] = {"scope": scope}
    if note:
        params["note"] = note
    if allow_days is not None:
        params["allow_days"] = allow_days
    response = yield _Call("DELETE", _path(address), params)
    _raise_for(response)
    return bool(_json(response)["removed"])


def _op_history(address: str, limit: int) -> _Op[list[dict[str, Any]]]:
    response = yield _Call("GET", _path(address, "/events"), {"limit": limit})
    _raise_for(response)
    events: list[dict[str, Any]] = _json(response)["events"]
    return events


class _Base(Generic[TransportT, ClientT]):
    """What the two clients share: the settings, the request and the error; each adds only how it sends."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        batch_timeout: float = DEFAULT_BATCH_TIMEOUT,
        batch_size: int = DEFAULT_BATCH_SIZE,
        transport: TransportT | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.batch_size = batch_size
        self._timeout = httpx.Timeout(timeout)
        self._batch_timeout = httpx.Timeout(batch_timeout)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client: ClientT = self._open(transport)

    def _open(self, transport: TransportT | None) -> ClientT:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"

    def _request(self, call: _Call) -> httpx.Request:
        content = headers = None
        if call.json is not None:
            content, headers = orjson.dumps(call.json), _JSON
        return self._client.build_request(
            call.method, call.path, params=call.params, content=content, headers=headers,
            timeout=self._batch_timeout if call.batch else self._timeout,
        )

    def _unavailable(self, exc: httpx.TransportError) -> ServiceUnavailable:
        kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "unreachable"
        return ServiceUnavailable(f"the suppression service at {self.base_url} is {kind} ({type(exc).__name__})")


class SuppressionClient(_Base[httpx.BaseTransport, httpx.Client]):
    """The synchronous client (see the module docstring)."""

    def _open(self, transport: httpx.BaseTransport | None) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers=self._headers,
                            transport=transport or httpx.HTTPTransport(retries=1))

    def _send(self, call: _Call) -> httpx.Response:
        try:
            return self._client.send(self._request(call))
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from None

    def _run(self, op: _Op[T]) -> T:
        try:
            call = next(op)
            while True:
                call = op.send(self._send(call))
        except StopIteration as done:
            result: T = done.value
            return result

    def is_suppressed(self, address: str, scope: str = "global") -> bool:
        """Whether the address may NOT be mailed (one HEAD request)."""
        return self._run(_op_is_suppressed(address, scope))

    def lookup(self, address: str, scope: str = "global") -> Suppression | None:
        """The entry in force for the address, or None."""
        return self._run(_op_lookup(address, scope))

    def check(self, addresses: Sequence[str], scope: str = "global") -> CheckResult:
        """The suppressed and invalid addresses among many (``batch_size`` per request)."""
        return self._run(_op_check(addresses, scope, self.batch_size))

    def filter_allowed(self, addresses: Iterable[str], scope: str = "global") -> list[str]:
        """The addresses that may be mailed, in the order given (suppressed and invalid ones dropped)."""
        return self._run(_op_filter_allowed(addresses, scope, self.batch_size))

    def suppress(
        self,
        address: str,
        reason: str = "manual",
        *,
        note: str = "",
        expires_at: datetime | None = None,
        ttl_days: int | None = None,
        scope: str = "global",
    ) -> Suppression:
        """Suppress an address by hand (needs the write scope)."""
        op = _op_suppress(address, reason, note=note, expires_at=expires_at, ttl_days=ttl_days, scope=scope)
        return self._run(op)

    def unsuppress(self, address: str, *, scope: str = "global", note: str = "", allow_days: int | None = None) -> bool:
        """Remove an address from the list (needs the write scope); whether it was suppressed."""
        return self._run(_op_unsuppress(address, scope, note, allow_days))

    def history(self, address: str, limit: int = 50) -> list[dict[str, Any]]:
        """The address's events, newest first: why it is (or was) suppressed."""
        return self._run(_op_history(address, limit))

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> SuppressionClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class AsyncSuppressionClient(_Base[httpx.AsyncBaseTransport, httpx.AsyncClient]):
    """The asyncio client: the methods of SuppressionClient, as coroutines."""

    def _open(self, transport: httpx.AsyncBaseTransport | None) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, headers=self._headers,
                                 transport=transport or httpx.AsyncHTTPTransport(retries=1))

    async def _send(self, call: _Call) -> httpx.Response:
        try:
            return await self._client.send(self._request(call))
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from None

    async def _run(self, op: _Op[T]) -> T:
        try:
            call = next(op)
            while True:
                call = op.send(await self._send(call))
        except StopIteration as done:
            result: T = done.value
            return result

    async def is_suppressed(self, address: str, scope: str = "global") -> bool:
        return await self._run(_op_is_suppressed(address, scope))

    async def lookup(self, address: str, scope: str = "global") -> Suppression | None:
        return await self._run(_op_lookup(address, scope))

    async def check(self, addresses: Sequence[str], scope: str = "global") -> CheckResult:
        return await self._run(_op_check(addresses, scope, self.batch_size))

    async def filter_allowed(self, addresses: Iterable[str], scope: str = "global") -> list[str]:
        return await self._run(_op_filter_allowed(addresses, scope, self.batch_size))

    async def suppress(
        self,
        address: str,
        reason: str = "manual",
        *,
        note: str = "",
        expires_at: datetime | None = None,
        ttl_days: int | None = None,
        scope: str = "global",
    ) -> Suppression:
        op = _op_suppress(address, reason, note=note, expires_at=expires_at, ttl_days=ttl_days, scope=scope)
        return await self._run(op)

    async def unsuppress(
        self, address: str, *, scope: str = "global", note: str = "", allow_days: int | None = None
    ) -> bool:
        return await self._run(_op_unsuppress(address, scope, note, allow_days))

    async def history(self, address: str, limit: int = 50) -> list[dict[str, Any]]:
        return await self._run(_op_history(address, limit))

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> AsyncSuppressionClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
