"""IMAP mailboxes (aioimaplib): one ``ImapSource`` per folder, one connection each.

- TLS: implicit (IMAPS), STARTTLS, or plain on loopback only. aioimaplib has no STARTTLS, so the
  command is sent here and the transport upgraded with ``loop.start_tls``; the capabilities are
  read again afterwards (what the server said before TLS is not trusted). Certificates are
  verified against the configured CA file (or the system's CAs); an unverified one is refused
  unless ``tls_verify = false``.
- Commands have an inactivity timeout; a timed-out or lost connection is dropped (a pending command
  fails at once when the server goes away), and the daemon reconnects with backoff.
- Messages are fetched with ``BODY.PEEK[]`` (nothing is marked \\Seen), moved with ``UID MOVE``
  (RFC 6851) when offered, else ``UID COPY`` + ``\\Deleted`` + ``UID EXPUNGE`` (UIDPLUS; plain
  EXPUNGE without it); missing target folders are created.
- IDLE (RFC 2177) when offered: ``wait_for_mail`` returns as soon as the server reports EXISTS.

The password is sent only inside LOGIN and never appears in a log line or an error message:
aioimaplib's own debug logging is switched off (it would print the wire), and its exceptions are
never turned into text here (a timed-out LOGIN's ``str()`` contains the command line).

Over 500 lines on purpose: one protocol adapter whose connection state (TLS upgrade,
capabilities, selected folder) every command shares.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import ssl
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import aioimaplib
import structlog

from processor.config import MailboxSettings
from processor.sources.base import Disposal, FetchedMessage, MailSource, SourceError, SourceState

log = structlog.get_logger(__name__)
logging.getLogger("aioimaplib").setLevel(logging.WARNING)

_LITERAL = aioimaplib.aioimaplib.literal_data_re
"""aioimaplib's test for a line that announces a literal (``... {size}``)."""
_EXISTS = re.compile(rb"^\d+ EXISTS")
_UNTAGGED_EXISTS = re.compile(rb"^(?:\* )?\d+ EXISTS")
_FETCH_HEAD = re.compile(rb"^\d+ FETCH \(")
_UID = re.compile(rb"\bUID (\d+)")
_INTERNALDATE = re.compile(rb'INTERNALDATE "([^"]+)"')
_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_TRYCREATE = re.compile(rb"\[TRYCREATE\]", re.IGNORECASE)
_ALREADY = re.compile(rb"\[ALREADYEXISTS\]|already exists", re.IGNORECASE)


class _ConnectionLost(Exception):
    """Set on pending commands when the server goes away."""


class _Protocol(aioimaplib.IMAP4ClientProtocol):  # type: ignore[misc]
    """aioimaplib's protocol with its response reader as a loop over the read (see
    ``_handle_responses``)."""

    incomplete_line: bytes
    current_command: Any
    mail_arrived = False
    """The server reported EXISTS since the last SELECT or IDLE: mail arrived while other commands
    ran (aioimaplib hands such a response to whatever command is pending, or drops it)."""

    def data_received(self, d: bytes) -> None:
        # aioimaplib's data_received without its debug line: that formats the whole read (message
        # bodies) as text on every call, logged or not
        try:
            self._handle_responses(self.incomplete_line + d if self.incomplete_line else d, self._handle_line,
                                   self.current_command)
            self.incomplete_line = b""
            self.current_command = None
        except aioimaplib.IncompleteRead as incomplete:
            self.current_command = incomplete.cmd
            self.incomplete_line = incomplete.data

    def _handle_responses(self, data: bytes, line_handler: Any, current_cmd: Any = None) -> None:
        """aioimaplib's ``_handle_responses``, the same steps in the same order, as a loop over
        positions in ``data``: aioimaplib's calls itself once per line with a copy of the rest of
        the read, so a read of many lines went past Python's recursion limit (a UID MOVE of 1,000
        messages is answered by 1,000 "* N EXPUNGE" lines in one 16 KB read: the connection was
        lost) and a long read was copied once per line (the reads were cut to 16 KB and 200 lines
        for it). A literal is handed over as a view of the read: only its own bytes are copied."""
        view = memoryview(data)
        pos, size = 0, len(data)
        while True:
            if pos >= size:
                if self.pending_sync_command is not None:
                    self.pending_sync_command.flush()
                if current_cmd is not None and current_cmd.wait_data():
                    raise aioimaplib.IncompleteRead(current_cmd)
                return
            if current_cmd is not None and current_cmd.wait_literal_data():
                pos = size - len(current_cmd.append_literal_data(view[pos:]))
                if current_cmd.wait_literal_data():
                    raise aioimaplib.IncompleteRead(current_cmd)
            end = data.find(b"\r\n", pos)
            if end < 0:
                raise aioimaplib.IncompleteRead(current_cmd, data[pos:])
            line = data[pos:end]
            pos = end + 2
            cmd = line_handler(line, current_cmd)
            begin_literal = _LITERAL.match(line) if line[-1:] == b"}" or line[-2:] == b"}\n" else None
            if begin_literal:
                if cmd is None:
                    cmd = aioimaplib.Command("NIL", "unused")
                cmd.begin_literal_data(int(begin_literal.group("size")))
                current_cmd = cmd
            elif cmd is not None and cmd.wait_data():
                current_cmd = cmd
            else:
                current_cmd = None

    def _untagged_response(self, line: bytes) -> Any:
        if _UNTAGGED_EXISTS.match(line):
            self.mail_arrived = True
        return super()._untagged_response(line)


class _Command(aioimaplib.Command):  # type: ignore[misc]
    """aioimaplib's command with its inactivity timer pushed back by noting the time, not by a new
    timer per response line (a cancelled timer and a new one on the loop's heap for each of the
    thousand lines of a batch's FETCH or MOVE answer): the one timer, when it fires, waits again
    for what is left after the last activity."""

    _activity = 0.0

    def _reset_timer(self) -> None:
        self._activity = self._loop.time()

    def _timeout_callback(self) -> None:
        left = self._activity + self._timeout - self._loop.time()
        if left > 0:
            self._timer = self._loop.call_later(left, self._timeout_callback)
            return
        super()._timeout_callback()


class _FetchCommand(_Command, aioimaplib.FetchCommand):  # type: ignore[misc]
    """aioimaplib's FETCH command with the same answers in linear time, for a batch of messages:
    ``wait_data`` (is the last ``N FETCH (`` response still open?) keeps a running count of the
    parentheses of the lines since that response began, where aioimaplib joins and counts all of
    them again for every line of the response; the timer is ``_Command``'s."""

    _open = 0
    """Open parentheses of the current ``N FETCH (`` response (its text lines, not its literals)."""

    def append_to_resp(self, line: Any, result: str = "Pending") -> None:
        if isinstance(line, bytes):
            depth = line.count(b"(") - line.count(b")")
            self._open = depth if self.FETCH_MESSAGE_DATA_RE.match(line) else self._open + depth
        super().append_to_resp(line, result)

    def wait_data(self) -> bool:
        return self._open != 0


def encode_folder(name: str) -> str:
    """A folder name as IMAP wants it: modified UTF-7 (RFC 3501 5.1.3), quoted."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return aioimaplib.quoted("".join(out))  # type: ignore[no-any-return]


def uid_set(uids: Sequence[int]) -> str:
    """``1:3,7,9:10`` for [1, 2, 3, 7, 9, 10]."""
    ordered = sorted(set(uids))
    parts: list[str] = []
    start = prev = ordered[0]
    for uid in ordered[1:]:
        if uid == prev + 1:
            prev = uid
            continue
        parts.append(f"{start}:{prev}" if prev > start else str(start))
        start = prev = uid
    parts.append(f"{start}:{prev}" if prev > start else str(start))
    return ",".join(parts)


def _text(lines: Sequence[Any]) -> str:
    """The server's words from a response (for error messages; literals left out)."""
    words = [bytes(line).decode("utf-8", "replace") for line in lines if isinstance(line, bytes)]
    return " ".join(w.strip() for w in words if w.strip())[:300]


def tls_context(settings: MailboxSettings) -> ssl.SSLContext:
    """A client context: the configured CA file (or the system's), hostname checked, TLS >= 1.2."""
    context = ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not settings.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class ImapConnection:
    """One logged-in IMAP connection over aioimaplib's protocol, with timeouts and TLS."""

    def __init__(self, name: str, settings: MailboxSettings) -> None:
        self.name = name
        self.settings = settings
        self.host = settings.host
        self.port = settings.imap_port
        self.timeout = settings.command_timeout_seconds
        self.protocol: Any = None
        self.lost = False
        self.selected: str | None = None

    # ------------------------------------------------------------------ connection

    def _where(self) -> str:
        return f"{self.host}:{self.port}"

    def _on_lost(self, exc: Exception | None) -> None:
        self.lost = True
        protocol = self.protocol
        if protocol is None:
            return
        pending = list(protocol.pending_async_commands.values())
        if protocol.pending_sync_command is not None:
            pending.append(protocol.pending_sync_command)
        for command in pending:
            if command is not None and not command._event.is_set():
                command._exception = _ConnectionLost()
                command.close(b"connection lost", "NO")

    async def connect(self) -> None:
        """Connect, secure, log in and read the capabilities. SourceError on any failure."""
        loop = asyncio.get_running_loop()
        settings = self.settings
        context = tls_context(settings) if settings.tls != "none" else None
        protocol = _Protocol(loop, self._on_lost)
        self.protocol = protocol
        implicit = settings.tls == "implicit"
        try:
            await asyncio.wait_for(
                loop.create_connection(
                    lambda: protocol,
                    self.host,
                    self.port,
                    ssl=context if implicit else None,
                    server_hostname=self.host if implicit else None,
                    ssl_handshake_timeout=settings.connect_timeout_seconds if implicit else None,
                ),
                settings.connect_timeout_seconds,
            )
            await asyncio.wait_for(protocol.wait("AUTH|NONAUTH"), settings.connect_timeout_seconds)
            if settings.tls == "starttls":
                assert context is not None
                await self._starttls(context)
        except ssl.SSLCertVerificationError as exc:
            self.abort()
            raise SourceError(
                f"{self.name}: the TLS certificate of {self._where()} is not trusted: "
                f"{exc.verify_message or exc.reason} (ca_file: {settings.ca_file or 'system CAs'})",
                transient=False,
            ) from None
        except ssl.SSLError as exc:
            self.abort()
            raise SourceError(f"{self.name}: TLS with {self._where()} failed: {exc.reason or exc}") from None
        except TimeoutError:
            self.abort()
            raise SourceError(
                f"{self.name}: no IMAP greeting from {self._where()} within {settings.connect_timeout_seconds:g}s"
            ) from None
        except OSError as exc:
            self.abort()
            raise SourceError(f"{self.name}: cannot connect to {self._where()}: {exc.strerror or exc}") from None
        except SourceError:
            self.abort()
            raise
        except (aioimaplib.AioImapException, _ConnectionLost):
            self.abort()
            raise SourceError(f"{self.name}: {self._where()} closed the connection during the greeting") from None
        await self._login()

    async def _starttls(self, context: ssl.SSLContext) -> None:
        protocol = self.protocol
        if "STARTTLS" not in protocol.capabilities:
            raise SourceError(f"{self.name}: {self._where()} does not offer STARTTLS", transient=False)
        response = await self.command("STARTTLS")
        if response.result != "OK":
            raise SourceError(f"{self.name}: STARTTLS refused by {self._where()}: {_text(response.lines)}")
        loop = asyncio.get_running_loop()
        transport = await loop.start_tls(
            protocol.transport,
            protocol,
            context,
            server_hostname=self.host,
            ssl_handshake_timeout=self.settings.connect_timeout_seconds,
        )
        if transport is None:
            raise SourceError(f"{self.name}: STARTTLS with {self._where()} failed")
        protocol.transport = transport
        protocol.capabilities = set()
        await self._capability()

    async def _login(self) -> None:
        settings = self.settings
        password = settings.secret_password()
        response = await self.command(
            "LOGIN", aioimaplib.quoted(settings.username), aioimaplib.quoted(password), scrub=password
        )
        if response.result != "OK":
            raise SourceError(
                f"{self.name}: login as {settings.username} at {self._where()} refused: {_text(response.lines)}",
                transient=False,
            )
        self.protocol.state = aioimaplib.AUTH
        await self._capability()

    async def _capability(self) -> None:
        response = await self.command("CAPABILITY")
        # aioimaplib hands over an untagged response without its name: lines[0] is the list
        if response.result != "OK" or len(response.lines) < 2:
            raise SourceError(f"{self.name}: {self._where()} sent no capabilities")
        words = bytes(response.lines[0]).decode("ascii", "replace").split()
        self.protocol.capabilities = {w for w in words if w.upper() != "CAPABILITY"}

    def has(self, capability: str) -> bool:
        return self.protocol is not None and capability in self.protocol.capabilities

    # ------------------------------------------------------------------ commands

    async def command(
        self, name: str, *args: str, uid: bool = False, scrub: str | None = None, fetch: bool = False
    ) -> Any:
        """Run one command; the response (result, lines). SourceError when the connection fails
        or the server stays silent for ``command_timeout_seconds``."""
        protocol = self.protocol
        if protocol is None or self.lost:
            raise SourceError(f"{self.name}: not connected to {self._where()}")
        tag = protocol.new_tag()
        prefix = "UID" if uid else None
        command: Any
        if fetch:
            command = _FetchCommand(tag, *args, prefix=prefix, timeout=self.timeout)
        else:
            resp_name = "FETCH" if name == "STORE" else None
            command = _Command(name, tag, *args, prefix=prefix, untagged_resp_name=resp_name, timeout=self.timeout)
        try:
            return await protocol.execute(command, scrub=scrub)
        except aioimaplib.CommandTimeout:
            self.abort()
            raise SourceError(
                f"{self.name}: {'UID ' if uid else ''}{name} got no answer from {self._where()} "
                f"within {self.timeout:g}s"
            ) from None
        except _ConnectionLost:
            self.abort()
            raise SourceError(f"{self.name}: {self._where()} closed the connection") from None
        except aioimaplib.AioImapException as exc:
            self.abort()
            reason = type(exc).__name__ if name == "LOGIN" else str(exc)[:200]
            raise SourceError(f"{self.name}: {name} failed: {reason}") from None

    async def select(self, folder: str) -> SourceState:
        response = await self.command("SELECT", encode_folder(folder))
        if response.result != "OK":
            raise SourceError(f"{self.name}: cannot select {folder!r}: {_text(response.lines)}", transient=False)
        self.protocol.state = aioimaplib.SELECTED
        self.selected = folder
        validity = exists = None
        for line in response.lines:
            if not isinstance(line, bytes):
                continue
            found = _UIDVALIDITY.search(line)
            if found:
                validity = int(found.group(1))
            elif line.endswith(b" EXISTS") and line.split()[0].isdigit():
                exists = int(line.split()[0])
        if validity is None:
            raise SourceError(f"{self.name}: the server gave no UIDVALIDITY for {folder!r}")
        self.protocol.mail_arrived = False  # what the folder holds now, the next search sees
        return SourceState(validity, exists)

    async def create(self, folder: str) -> None:
        """Create a folder; one that exists already is fine."""
        response = await self.command("CREATE", encode_folder(folder))
        if response.result != "OK" and not any(
            isinstance(line, bytes) and _ALREADY.search(line) for line in response.lines
        ):
            raise SourceError(f"{self.name}: cannot create folder {folder!r}: {_text(response.lines)}")
        if response.result == "OK":
            log.info("imap.folder_created", mailbox=self.name, folder=folder)

    async def search(self, *criteria: str) -> list[int]:
        response = await self.command("SEARCH", *criteria, uid=True)
        if response.result != "OK":
            raise SourceError(f"{self.name}: UID SEARCH failed: {_text(response.lines)}")
        # aioimaplib hands over each untagged SEARCH without its name; the last line is the
        # tagged completion text
        uids: list[int] = []
        for line in response.lines[:-1]:
            if isinstance(line, bytes):
                uids.extend(int(x) for x in line.split() if x.isdigit())
        return sorted(set(uids))

    async def fetch(self, uids: Sequence[int]) -> list[FetchedMessage]:
        response = await self.command("FETCH", uid_set(uids), "(UID INTERNALDATE BODY.PEEK[])", uid=True, fetch=True)
        if response.result != "OK":
            raise SourceError(f"{self.name}: UID FETCH failed: {_text(response.lines)}")
        return parse_fetch(response.lines)

    async def _copy_or_move(self, verb: str, uids: Sequence[int], folder: str) -> None:
        for attempt in (1, 2):
            response = await self.command(verb, uid_set(uids), encode_folder(folder), uid=True)
            if response.result == "OK":
                return
            if attempt == 1 and any(isinstance(line, bytes) and _TRYCREATE.search(line) for line in response.lines):
                await self.create(folder)
                continue
            raise SourceError(f"{self.name}: UID {verb} to {folder!r} failed: {_text(response.lines)}")

    async def store_flags(self, uids: Sequence[int], flags: str) -> None:
        response = await self.command("STORE", uid_set(uids), "+FLAGS.SILENT", f"({flags})", uid=True)
        if response.result != "OK":
            raise SourceError(f"{self.name}: UID STORE {flags} failed: {_text(response.lines)}")

    async def expunge(self, uids: Sequence[int]) -> None:
        if self.has("UIDPLUS"):
            response = await self.command("EXPUNGE", uid_set(uids), uid=True)
        else:
            response = await self.command("EXPUNGE")
        if response.result != "OK":
            raise SourceError(f"{self.name}: EXPUNGE failed: {_text(response.lines)}")

    async def move(self, uids: Sequence[int], folder: str) -> None:
        """MOVE when offered, else COPY + \\Deleted + (UID) EXPUNGE."""
        if self.has("MOVE"):
            await self._copy_or_move("MOVE", uids, folder)
            return
        await self._copy_or_move("COPY", uids, folder)
        await self.store_flags(uids, "\\Deleted")
        await self.expunge(uids)

    async def idle(self, seconds: float, stop: asyncio.Event) -> bool:
        """IDLE for up to ``seconds`` (or until ``stop``); True when the server reported new mail,
        at once (without IDLE) when it did so during the commands since the folder was searched:
        the server reports each arrival once, and mail that came during a drain must not wait."""
        protocol = self.protocol
        queued: list[Any] = []
        while not protocol.idle_queue.empty():
            queued.append(protocol.idle_queue.get_nowait())
        if protocol.mail_arrived or any(isinstance(line, bytes) and _EXISTS.match(line)
                                        for lines in queued if isinstance(lines, list) for line in lines):
            protocol.mail_arrived = False
            log.debug("imap.mail_during_drain", mailbox=self.name)
            return True
        idle_task = asyncio.ensure_future(protocol.idle())
        ack = asyncio.ensure_future(protocol.wait_for_idle_response())
        done, _ = await asyncio.wait({idle_task, ack}, timeout=self.timeout, return_when=asyncio.FIRST_COMPLETED)
        if ack not in done:
            ack.cancel()
            if idle_task.done():
                response = _result(idle_task)
                raise SourceError(f"{self.name}: IDLE refused: {_text(response.lines) if response else 'no answer'}")
            idle_task.cancel()
            self.abort()
            raise SourceError(f"{self.name}: IDLE got no answer within {self.timeout:g}s")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        arrived = False
        log.debug("imap.idle", mailbox=self.name, seconds=round(seconds, 1))
        stopper = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                getter = asyncio.ensure_future(protocol.idle_queue.get())
                done, _ = await asyncio.wait(
                    {getter, stopper, idle_task}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                if getter in done:
                    lines = getter.result()
                    if any(isinstance(line, bytes) and _EXISTS.match(line) for line in lines):
                        arrived = True
                        break
                else:
                    getter.cancel()
                if idle_task in done:
                    self.abort()
                    raise SourceError(f"{self.name}: {self._where()} ended IDLE (connection closed)")
        finally:
            stopper.cancel()
        if self.lost:
            raise SourceError(f"{self.name}: {self._where()} closed the connection")
        protocol.idle_done()
        if arrived:  # the drain that follows sees it; an EXISTS after the last look stays flagged
            protocol.mail_arrived = False
        try:
            await asyncio.wait_for(asyncio.shield(idle_task), self.timeout)
        except TimeoutError:
            self.abort()
            raise SourceError(f"{self.name}: no answer to DONE within {self.timeout:g}s") from None
        except (_ConnectionLost, aioimaplib.AioImapException):
            self.abort()
            raise SourceError(f"{self.name}: {self._where()} closed the connection during IDLE") from None
        return arrived

    async def logout(self) -> None:
        """LOGOUT (briefly), then close; never raises."""
        if self.protocol is not None and not self.lost:
            with contextlib.suppress(Exception):
                command = aioimaplib.Command("LOGOUT", self.protocol.new_tag(), timeout=3.0)
                await asyncio.wait_for(self.protocol.execute(command), 3.0)
        self.abort()

    def abort(self) -> None:
        """Close the transport at once."""
        protocol = self.protocol
        transport = getattr(protocol, "transport", None) if protocol is not None else None
        if transport is not None:
            with contextlib.suppress(Exception):
                transport.close()
        self.lost = True


def _result(task: asyncio.Future[Any]) -> Any:
    with contextlib.suppress(BaseException):
        return task.result()
    return None


_DATE_TIME = re.compile(rb" ?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)")
"""RFC 3501 ``date-time``: ``DD-Mon-YYYY HH:MM:SS +HHMM`` (the day may be space-padded)."""
_MONTHS = {name: number for number, name in enumerate(
    (b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec"), 1)}
_ZONES: dict[bytes, timezone] = {}


def _internaldate(meta: bytes) -> datetime | None:
    """The message's INTERNALDATE; the RFC's form is read by hand (``strptime`` cost about 3% of
    the daemon's process on a drain), anything else as ``strptime`` reads it."""
    found = _INTERNALDATE.search(meta)
    if not found:
        return None
    value = found.group(1)
    parts = _DATE_TIME.fullmatch(value)
    month = _MONTHS.get(parts.group(2).lower()) if parts else None
    try:
        if parts is not None and month is not None:
            day, _, year, hour, minute, second, sign, zone_hours, zone_minutes = parts.groups()
            zone = _ZONES.get(value[-5:])
            if zone is None:
                if int(zone_minutes) >= 60:
                    raise ValueError("zone minutes out of range")
                offset = timedelta(hours=int(zone_hours), minutes=int(zone_minutes))
                zone = _ZONES.setdefault(value[-5:], timezone(-offset if sign == b"-" else offset))
            return datetime(int(year), month, int(day), int(hour), int(minute), int(second), tzinfo=zone)
        return datetime.strptime(value.decode("ascii").strip(), "%d-%b-%Y %H:%M:%S %z")
    except ValueError:
        return None


def parse_fetch(lines: Sequence[Any]) -> list[FetchedMessage]:
    """The messages of a UID FETCH (UID INTERNALDATE BODY.PEEK[]) response, as aioimaplib splits
    it: a ``N FETCH (...`` line, the literal (a bytearray), then the rest of that response."""
    out: list[FetchedMessage] = []
    meta = b""
    data: bytes | None = None

    def finish() -> None:
        if data is None:
            return  # an unsolicited FETCH (flag change) carries no body
        found = _UID.search(meta)
        if found:
            uid = int(found.group(1))
            out.append(FetchedMessage(uid, uid, data, _internaldate(meta), f"uid {uid}"))

    for line in lines:
        if isinstance(line, bytearray):
            data = bytes(line)
            continue
        if _FETCH_HEAD.match(line):
            finish()
            meta, data = line, None
        elif meta:
            meta += b" " + line
    finish()
    return out


class ImapSource(MailSource):
    """One folder of an IMAP mailbox (see the module docstring)."""

    uses_uids = True

    def __init__(self, name: str, folder: str, settings: MailboxSettings) -> None:
        self.name = name
        self.folder = folder
        self.settings = settings
        self.keeps_processed = settings.processed in ("seen", "keep")
        self.connection: ImapConnection | None = None
        self._folders_ready = False

    async def open(self) -> SourceState:
        connection = self.connection
        if connection is None or connection.lost:
            connection = ImapConnection(self.name, self.settings)
            self.connection = connection
            self._folders_ready = False
            await connection.connect()
            log.info(
                "imap.connected",
                mailbox=self.name,
                host=self.settings.host,
                port=self.settings.imap_port,
                tls=self.settings.tls,
                user=self.settings.username,
                idle=connection.has("IDLE"),
                move=connection.has("MOVE"),
                uidplus=connection.has("UIDPLUS"),
            )
        if not self._folders_ready:
            targets = {self.settings.quarantine_folder}
            if self.settings.processed == "folder":
                targets.add(self.settings.processed_folder)
            for target in sorted(targets):
                await connection.create(target)
            self._folders_ready = True
        return await connection.select(self.folder)

    def _connected(self) -> ImapConnection:
        if self.connection is None or self.connection.lost:
            raise SourceError(f"{self.name}: not connected")
        return self.connection

    async def candidates(self, last_uid: int) -> list[int]:
        connection = self._connected()
        processed = self.settings.processed
        if processed == "keep":
            uids = await connection.search(f"UID {last_uid + 1}:*")
            return [u for u in uids if u > last_uid]
        if processed == "seen":  # unread ones, and new ones even if someone read them meanwhile
            unseen = await connection.search("UNDELETED", "UNSEEN")
            newer = await connection.search(f"UID {last_uid + 1}:*")  # "n:*" always holds the highest UID
            return sorted(set(unseen) | {u for u in newer if u > last_uid})
        if not connection.has("MOVE"):
            await self._finish_expunge(connection)
        return await connection.search("UNDELETED")

    async def _finish_expunge(self, connection: ImapConnection) -> None:
        """Without MOVE: messages copied and flagged \\Deleted but not expunged (the connection
        dropped between the two) are expunged now, like any message flagged \\Deleted in the
        folder. Only with UIDPLUS: without it, leftovers wait for the next plain EXPUNGE."""
        if not connection.has("UIDPLUS"):
            return
        deleted = await connection.search("DELETED")
        if deleted:
            await connection.expunge(deleted)

    async def fetch(self, keys: Sequence[int]) -> list[FetchedMessage]:
        if not keys:
            return []
        return await self._connected().fetch(keys)

    async def dispose(self, keys: Sequence[int], disposal: Disposal) -> None:
        if not keys:
            return
        connection = self._connected()
        settings = self.settings
        if disposal is Disposal.QUARANTINE:
            await connection.move(keys, settings.quarantine_folder)
        elif settings.processed == "folder":
            await connection.move(keys, settings.processed_folder)
        elif settings.processed == "seen":
            await connection.store_flags(keys, "\\Seen")
        elif settings.processed == "delete":
            await connection.store_flags(keys, "\\Deleted")
            await connection.expunge(keys)

    @property
    def can_push(self) -> bool:
        return self.settings.idle and self.connection is not None and self.connection.has("IDLE")

    async def wait_for_mail(self, seconds: float, stop: asyncio.Event) -> bool:
        if not self.can_push:
            return await super().wait_for_mail(seconds, stop)
        return await self._connected().idle(min(seconds, self.settings.idle_renew_seconds), stop)

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.logout()
            self.connection = None

    async def abort(self) -> None:
        if self.connection is not None:
            self.connection.abort()
            self.connection = None
