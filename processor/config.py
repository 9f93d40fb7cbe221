"""One Settings object, read from a TOML file and overridable from the environment.

Environment variables use the prefix ``BOUNCE_`` and ``__`` between nested names, for example
``BOUNCE_DATABASE__URL=postgresql+psycopg://...`` or ``BOUNCE_POLICY__SOFT_THRESHOLD=5``.
Secrets are ``SecretStr`` so that they never print; they may also come from a file (``*_file``).

Over 500 lines on purpose: one settings tree, so every section and its environment name is found
in one place.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

# parsing and classification read only these two sections and import them from there; they are
# still importable from here, as before
from processor.parse_settings import (  # noqa: F401
    DEFAULT_RULES_DIR,
    PACKAGE_DIR,
    PROJECT_DIR,
    ParseSettings,
    RulesSettings,
)

DEFAULT_SAMPLES_DIR = PROJECT_DIR / "samples"
"""The project's own samples: present in a checkout, not in an installed wheel."""
CONFIG_ENV = "BOUNCE_PROCESSOR_CONFIG"


class ConfigError(Exception):
    """The configuration is invalid; the message says which value and why."""


class DatabaseSettings(BaseModel):
    url: str = "sqlite:///bounce-processor.db"
    """SQLAlchemy URL: sqlite:///path.db (default) or postgresql+psycopg://user@host/db."""
    lowercase_local_part: bool = True
    """Lower-case the local part of addresses (the domain is always lower-cased)."""
    migrate_on_start: bool = True
    """Apply pending migrations when the store is opened (``bounce-processor db upgrade`` does it too)."""
    busy_timeout_ms: int = Field(default=30_000, ge=0)
    """SQLite: how long a writer waits for another writer's lock before failing."""
    sqlite_synchronous: Literal["normal", "full"] = "full"
    """SQLite: "full" makes each commit survive a power cut; "normal" (WAL) only a process crash."""
    sqlite_cache_mb: int = Field(default=64, ge=1)
    """SQLite: page cache per connection (allocated as used); big imports and lookups need it."""
    sqlite_mmap_mb: int = Field(default=256, ge=0)
    """SQLite: memory-map up to this much of the database file (faster lookups; 0 turns it off)."""
    pool_size: int = Field(default=5, ge=1)
    """PostgreSQL: connections kept open per process."""
    connect_timeout_s: int = Field(default=10, ge=1)
    """PostgreSQL: give up connecting after this many seconds."""
    statement_timeout_ms: int = Field(default=60_000, ge=0)
    """PostgreSQL: cancel a statement that runs longer (0: no limit), so that a stalled server
    cannot block the daemon, the API or the policy service forever."""
    keep_report_kib: int = Field(default=64, ge=0, le=100_000)
    """Keep the first this many KiB of each processed or quarantined message, so the console can
    show the report a verdict came from and offer a quarantined message for download (0: keep none)."""


class PolicySettings(BaseModel):
    hard_ttl_days: int | None = None
    """None: hard bounces suppress permanently."""
    soft_threshold: int = 3
    """A soft failure suppresses when this many (it included) fall within ``soft_window_days``."""
    soft_window_days: int = 7
    """The window in which soft failures are counted together."""
    soft_ttl_days: int = 14
    """How long a soft suppression lasts (it then expires and mail is tried again)."""
    complaint_ttl_days: int | None = None
    """None: complaints (and unsubscribes) suppress permanently."""
    allow_window_days: int = 0
    """After a manual removal, ignore bounces for this many days (0: only older events are ignored)."""
    bounce_scope: Literal["global", "sender_domain"] = "global"
    """Scope of bounce suppressions: global, or the original sender's domain. Complaints are global."""
    unsubscribe_feedback_types: list[str] = Field(
        default_factory=lambda: ["opt-out", "opt-out-list", "unsubscribe"]
    )
    """ARF Feedback-Type values that are unsubscribe requests (suppress, source "unsubscribe")."""
    ignored_feedback_types: list[str] = Field(
        default_factory=lambda: ["not-spam", "auth-failure", "dmarc", "virus"]
    )
    """ARF Feedback-Type values that are not the recipient's complaint: recorded, never suppress."""


class VerpSettings(BaseModel):
    """Signed return paths (processor.verp): the secrets, how long a token lives, its address."""

    secrets: list[SecretStr] = Field(default_factory=list)
    """HMAC secrets (at least 16 bytes each); the first signs, all verify (for rotation)."""
    secrets_file: Path | None = None
    """A file with one secret per line, read instead of (or in addition to) ``secrets``."""
    max_age_days: int = Field(default=30, ge=1, le=1000)
    """A signed return path older than this many days no longer verifies."""
    sender_domain: str = ""
    """The domain of the return path (bounces+TOKEN@sender_domain)."""
    prefix: str = "bounces"
    """The local-part prefix of signed return paths (PREFIX+TOKEN@sender_domain)."""

    def all_secrets(self) -> list[str]:
        values = [s.get_secret_value() for s in self.secrets]
        if self.secrets_file is not None:
            try:
                lines = self.secrets_file.read_text().splitlines()
            except OSError as exc:
                raise ConfigError(f"cannot read verp.secrets_file {self.secrets_file}: {exc.strerror}") from None
            values += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
        return values


class ApiToken(BaseModel):
    """One API client: a name (logged, never the token), the token's SHA-256 and its scopes."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._@:+-]+$")
    """Who the token is for: logged with its requests and recorded as the actor of its changes."""
    hash: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    """``sha256:`` and the hex SHA-256 of the token (``bounce-processor api new-token`` makes both)."""
    scopes: list[Literal["read", "write", "ui"]] = Field(default=["read"], min_length=1)
    """"read": look-ups, listing, export, stats; "write": add, remove, import; "ui": may sign in to
    the web console (/ui/), which then shows everything and changes only with "write" too."""


class ApiSettings(BaseModel):
    """The HTTP API (processor.api): where it listens, who may use it, how much one request may ask."""

    enabled: bool = True
    """Serve the API inside ``bounce-processor run``."""
    host: str = "127.0.0.1"
    """The address the API listens on. The API has no TLS of its own: keep it on loopback, or put it
    behind a TLS-terminating proxy; a host other than loopback needs tokens."""
    port: int = Field(default=8025, ge=0, le=65535)
    """The TCP port the API listens on."""
    tokens: list[ApiToken] = Field(default_factory=list)
    """Bearer tokens, stored hashed. With none, the API is open, which is allowed on a loopback host only."""
    batch_limit: int = Field(default=10_000, ge=1, le=1_000_000)
    """Most addresses in one POST /v1/suppressions/check (413 above)."""
    page_limit: int = Field(default=1000, ge=1, le=100_000)
    """Most entries in one page of GET /v1/suppressions."""
    max_import_bytes: int = Field(default=1024 * 1024 * 1024, ge=1)
    """Largest body POST /v1/suppressions/import accepts (413 above)."""
    public_metrics: bool = True
    """Serve /metrics without a token (health and readiness are always public)."""
    access_log: bool = False
    """Log one line per request (method, path, status, time; never the Authorization header)."""
    console: bool = True
    """Serve the web console under /ui/ (sign-in with a token that has the "ui" scope)."""
    console_session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    """How long a console sign-in lasts."""
    console_secret: SecretStr | None = None
    """Signs the console's session cookies; default: a random secret per process (a restart
    signs everyone out; set one when several API processes serve the same users)."""
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    """A connection that has not sent a complete request head (request line and headers) this long
    after it opened, or after its previous request began, is closed."""
    max_connections: int = Field(default=1000, ge=1, le=1_000_000)
    """Open connections (and requests in hand) at most; a request beyond it is answered 503 at once."""


PolicyAnswer = Literal["reject", "defer", "dunno"]
"""What the policy service answers for a suppressed recipient (Postfix REJECT, DEFER or DUNNO)."""

_POLICY_TEXT_FIELDS = frozenset({"reason", "source", "bounce_type", "scope"})


def _check_reply_text(value: str, first_digit: str, name: str, fields: frozenset[str]) -> str:
    """A Postfix reply text: an enhanced status code of the right class, one line, known {fields}."""
    import re
    import string

    if not re.match(rf"^{first_digit}\.\d{{1,3}}\.\d{{1,3}} \S", value):
        raise ValueError(f"{name} must start with an enhanced status code {first_digit}.X.Y and a text")
    if any(c in value for c in "\r\n") or not value.isprintable():
        raise ValueError(f"{name} must be one line of printable text")
    try:
        used = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    unknown = used - fields
    if unknown:
        allowed = ", ".join("{" + f + "}" for f in sorted(fields)) or "none"
        raise ValueError(f"{name} uses unknown field(s) {sorted(unknown)}; allowed: {allowed}")
    return value


class PolicydSettings(BaseModel):
    """The Postfix policy service (``bounce-processor policyd``, processor.policyd)."""

    listen: str = "inet:127.0.0.1:10040"
    """inet:HOST:PORT or unix:/path/to/socket (Postfix's notation; IPv6 as inet:[::1]:PORT)."""
    socket_mode: int = Field(default=0o660, ge=0, le=0o777)
    """Permissions of a UNIX socket: owner and group may connect, others not. Postfix's smtpd
    runs as an unprivileged user (postfix): give the socket its group (``socket_group``)."""
    socket_group: str = ""
    """Group (name or number) the UNIX socket is given, e.g. "postfix"; "" keeps the service's own."""
    mode: Literal["memory", "query"] = "memory"
    """memory: answer from an in-memory copy of the active suppressions, kept current from the
    event table every ``refresh_seconds``; query: one indexed query per recipient, behind an LRU."""
    refresh_seconds: float = Field(default=1.0, gt=0)
    """memory: how often new changes to the list are read (the longest a new entry goes unseen)."""
    full_reload_seconds: float = Field(default=3600.0, gt=0)
    """memory: how often the whole list is read again (a safety net; changes arrive incrementally)."""
    refresh_overlap_seconds: float = Field(default=10.0, ge=0)
    """memory, PostgreSQL: events are re-read this far back, for transactions that commit out of id order."""
    max_staleness_seconds: float = Field(default=300.0, gt=0)
    """memory: a copy not refreshed for this long counts as "store unreachable" (``on_store_error``)."""
    cache_size: int = Field(default=100_000, ge=0)
    """query: answers kept in the per-process LRU (0: none)."""
    cache_ttl_seconds: float = Field(default=5.0, ge=0)
    """query: how long a cached answer is used (the longest a new entry goes unseen)."""
    default_action: PolicyAnswer = "reject"
    """The answer for a suppressed recipient unless one of the maps below says otherwise."""
    action_by_bounce_type: dict[str, PolicyAnswer] = Field(default_factory=dict)
    """Per entry bounce type (hard, soft, complaint, ...); consulted first, e.g. {soft = "defer"}."""
    action_by_source: dict[str, PolicyAnswer] = Field(default_factory=dict)
    """Per entry source (bounce, complaint, unsubscribe, manual, import); consulted second."""
    reject_text: str = "5.1.1 recipient suppressed: {reason}"
    """The REJECT text: a 5.X.Y code first; may use {reason}, {source}, {bounce_type}, {scope}."""
    defer_text: str = "4.2.1 recipient temporarily suppressed: {reason}"
    """The DEFER text: a 4.X.Y code first; same fields as ``reject_text``."""
    on_store_error: Literal["dunno", "defer"] = "dunno"
    """When the store cannot be read: fail open (DUNNO: mail goes out) or closed (DEFER)."""
    store_error_text: str = "4.3.0 suppression list temporarily unavailable"
    """The DEFER text when failing closed (a 4.X.Y code first)."""
    scope_by_client: dict[str, str] = Field(default_factory=dict)
    """Client address or network (10.1.2.3, 10.0.0.0/8) -> the scope to check (global entries always count)."""
    scope_by_sender_domain: dict[str, str] = Field(default_factory=dict)
    """Envelope sender domain -> scope; consulted after ``scope_by_client``."""
    sender_domain_scope: bool = False
    """Otherwise use the envelope sender's own domain as the scope (see ``policy.bounce_scope``)."""
    max_request_bytes: int = Field(default=16_384, ge=1024)
    """A request larger than this is malformed (Postfix's are well under 2 KiB)."""
    request_timeout_seconds: float = Field(default=30.0, gt=0)
    """A request begun but not finished within this time is malformed (the connection is closed)."""
    idle_timeout_seconds: float = Field(default=1200.0, gt=0)
    """Idle connections are closed after this (Postfix's smtpd_policy_service_max_idle is 300s)."""
    log_answers: bool = True
    """Log one line for each REJECT and DEFER (DUNNO is never logged)."""
    metrics_listen: str = ""
    """HOST:PORT for a Prometheus /metrics endpoint of this process ("" for none)."""

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        kind, _, rest = value.partition(":")
        if kind == "unix" and rest:
            return value
        if kind == "inet":
            host, _, port = rest.rpartition(":")
            if host and port.isdigit() and 0 < int(port) < 65536:
                return value
        raise ValueError("expected inet:HOST:PORT or unix:/path/to/socket")

    @field_validator("metrics_listen")
    @classmethod
    def _metrics_listen(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if value and not (host and port.isdigit() and 0 < int(port) < 65536):
            raise ValueError("expected HOST:PORT or an empty string")
        return value

    @field_validator("reject_text")
    @classmethod
    def _reject_text(cls, value: str) -> str:
        return _check_reply_text(value, "5", "reject_text", _POLICY_TEXT_FIELDS)

    @field_validator("defer_text")
    @classmethod
    def _defer_text(cls, value: str) -> str:
        return _check_reply_text(value, "4", "defer_text", _POLICY_TEXT_FIELDS)

    @field_validator("store_error_text")
    @classmethod
    def _store_error_text(cls, value: str) -> str:
        return _check_reply_text(value, "4", "store_error_text", frozenset())

    @field_validator("scope_by_client")
    @classmethod
    def _client_networks(cls, value: dict[str, str]) -> dict[str, str]:
        import ipaddress

        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"not an IP address or network: {network!r}") from None
        return value

    @field_validator("scope_by_sender_domain")
    @classmethod
    def _sender_domains(cls, value: dict[str, str]) -> dict[str, str]:
        return {domain.strip().lower(): scope for domain, scope in value.items()}


# --- mailboxes and the daemon (issue 5) ----------------------------------------------------------

_MAILBOX_NAME = r"^[a-z0-9][a-z0-9._-]{0,63}$"


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` names this machine (localhost, 127.0.0.0/8, ::1)."""
    import ipaddress

    name = host.strip().strip("[]").lower()
    if name in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class MailboxSettings(BaseModel):
    """One source of reports, worked by ``bounce-processor run``: an IMAP mailbox (one job per
    folder), a Maildir, or a directory of message files.

    IMAP: ``tls`` is "implicit" (port 993), "starttls" (port 143, the upgrade is required) or
    "none" (loopback hosts only). Certificates are verified against ``ca_file`` (default: the
    system's CAs); an unverified certificate is refused unless ``tls_verify = false``. The password
    comes from ``password`` (or the environment, e.g. BOUNCE_MAILBOXES__BOUNCES__PASSWORD) or the
    first line of ``password_file``; it is never logged.
    """

    model_config = ConfigDict(extra="forbid")

    source: Literal["imap", "maildir", "directory"] = "imap"
    """imap (a server mailbox), maildir (a local Maildir) or directory (message files)."""
    kind: Literal["bounce", "fbl", "auto"] = "auto"
    """What the mailbox receives: "bounce" (DSNs and auto-replies: an ARF complaint found here is
    recorded but does not suppress), "fbl" (ARF complaints: a bounce found here is recorded but does
    not suppress), or "auto" (both suppress)."""
    enabled: bool = True
    """False: configured but not read."""
    host: str = ""
    """imap: the server's host name."""
    port: int | None = Field(default=None, ge=1, le=65535)
    """Default: 993 for implicit TLS, 143 otherwise."""
    tls: Literal["implicit", "starttls", "none"] = "implicit"
    """imap: implicit TLS (993), STARTTLS required (143), or none (loopback hosts only)."""
    ca_file: Path | None = None
    """PEM file of the CA(s) to verify the server's certificate with (default: the system's)."""
    tls_verify: bool = True
    """False accepts any certificate (logged as a warning at start); never do this in production."""
    username: str = ""
    """imap: the login name."""
    password: SecretStr | None = None
    """imap: the password (better from the environment or ``password_file``; never logged)."""
    password_file: Path | None = None
    """imap: a file whose first line is the password."""
    folders: list[str] = Field(default_factory=lambda: ["INBOX"], min_length=1)
    """IMAP folders to read; each is worked by its own job and connection."""
    idle: bool = True
    """Use IMAP IDLE when the server offers it (new mail is handled within seconds); else poll."""
    path: Path | None = None
    """maildir: the Maildir; directory: the directory (searched recursively)."""
    pattern: str = "*.eml"
    """directory: which file names are messages (a glob)."""
    read_only: bool = False
    """maildir/directory: never move, flag or delete a file (the ledger keeps them from counting twice)."""
    poll_interval_seconds: float = Field(default=60.0, ge=0.2, le=86_400)
    """How often the mailbox is read (with IDLE: how often IDLE is renewed and the folder re-read)."""
    batch_size: int = Field(default=250, ge=1, le=10_000)
    """Messages fetched, parsed and committed together (one transaction, then one MOVE). Larger
    batches keep the parse pool busier (tests/bench/daemon_bench.py, 10,000 messages: 100 drained
    about 0.6x as fast as ``parse --jobs 1``, 250 about 0.7-0.8x); each batch is held in memory
    whole, so lower it for mailboxes of very large messages. A long pass starts and ends with
    smaller batches (32, 64, ... up to this; processor.daemon.mailbox_worker.batch_plan), so that
    the parse pool starts sooner and the pass ends sooner after its last fetch."""
    processed: Literal["folder", "seen", "delete", "keep"] = "folder"
    """Where processed messages go: ``processed_folder`` (default), flagged \\Seen, deleted, or
    left as they are (IMAP "seen"/"keep": the last UID stored per folder skips them later)."""
    processed_folder: str = "Processed"
    """The folder (or sub-directory) processed messages move to with ``processed = "folder"``."""
    quarantine_folder: str = "Quarantine"
    """Where unparseable messages, and messages whose processing raised, go (never deleted)."""
    require_signed_return_path: bool = False
    """Suppress only on reports whose return path (or the original's Return-Path) carries a valid
    signature (processor.verp) for the event's recipient; others are recorded, not suppressed."""
    connect_timeout_seconds: float = Field(default=30.0, gt=0)
    """imap: give up connecting (and logging in) after this long."""
    command_timeout_seconds: float = Field(default=120.0, gt=0)
    """An IMAP command that receives nothing for this long fails (the connection is dropped)."""
    idle_renew_seconds: float = Field(default=25 * 60.0, ge=1, le=29 * 60)
    """IDLE is re-issued at least this often (RFC 2177: servers may drop it after 30 minutes)."""
    backoff_initial_seconds: float = Field(default=1.0, gt=0)
    """After a failure the mailbox waits at least this long before trying again."""
    backoff_max_seconds: float = Field(default=300.0, gt=0)
    """After a failure the mailbox waits (exponential, with jitter) between these bounds."""

    @model_validator(mode="after")
    def _consistent(self) -> MailboxSettings:
        if self.source == "imap":
            if not self.host:
                raise ValueError("an IMAP mailbox needs a host")
            if not self.username:
                raise ValueError("an IMAP mailbox needs a username")
            if self.password is None and self.password_file is None:
                raise ValueError("an IMAP mailbox needs a password or a password_file")
            if self.tls == "none" and not is_loopback_host(self.host):
                raise ValueError(
                    f'plain IMAP (tls = "none") is allowed only on a loopback host, not {self.host!r}: '
                    'use tls = "implicit" or "starttls"'
                )
            if self.ca_file is not None and not self.ca_file.is_file():
                raise ValueError(f"ca_file {self.ca_file} is not a readable file")
            if self.password_file is not None and not self.password_file.is_file():
                raise ValueError(f"password_file {self.password_file} is not a readable file")
            for folder in self.folders:
                if not folder or any(c in folder for c in "\r\n\0"):
                    raise ValueError(f"invalid folder name {folder!r}")
        else:
            if self.path is None:
                raise ValueError(f"a {self.source} source needs a path")
            if self.processed == "seen" and self.source == "directory":
                raise ValueError('processed = "seen" needs a Maildir or IMAP (a directory has no flags)')
        if self.processed == "folder" and not self.processed_folder.strip():
            raise ValueError("processed_folder is empty")
        if not self.quarantine_folder.strip():
            raise ValueError("quarantine_folder is empty")
        if self.backoff_max_seconds < self.backoff_initial_seconds:
            raise ValueError("backoff_max_seconds is below backoff_initial_seconds")
        return self

    @property
    def imap_port(self) -> int:
        return self.port or (993 if self.tls == "implicit" else 143)

    def secret_password(self) -> str:
        """The password (from ``password``, else the first line of ``password_file``)."""
        if self.password is not None:
            return self.password.get_secret_value()
        assert self.password_file is not None
        try:
            lines = self.password_file.read_text().splitlines()
        except OSError as exc:
            raise ConfigError(f"cannot read password_file {self.password_file}: {exc.strerror}") from None
        return lines[0].strip() if lines else ""


class DaemonSettings(BaseModel):
    """``bounce-processor run``: scheduling, leases and shutdown."""

    purge_interval_seconds: float = Field(default=3600.0, ge=1)
    """How often expired suppressions are purged."""
    housekeeping_interval_seconds: float = Field(default=30.0, ge=0.2)
    """How often rule files are checked for changes (reloaded when changed) and gauges refreshed."""
    lease_seconds: float = Field(default=30.0, ge=2)
    """PostgreSQL: a daemon that dies loses its mailboxes to another daemon within this time (the
    mailbox locks are PostgreSQL advisory locks on a connection with keepalives tuned to it)."""
    shutdown_seconds: float = Field(default=8.0, gt=0, le=60)
    """On SIGTERM/SIGINT: how long the message in hand may take before the daemon exits anyway."""
    workers: int = Field(default=4, ge=1, le=64)
    """Threads that parse, classify and store (so that the database never blocks IMAP)."""
    parse_processes: int = Field(default=0, ge=0, le=64)
    """Processes that parse the batches (0: one per CPU; 1: parse in the threads above)."""
    embedded_default: bool = True
    """With no mailbox configured, read the project's samples/ directory read-only (a demo that
    works on a fresh machine); with False, no mailbox is an error."""


WEBHOOK_NAME = r"^[a-z0-9][a-z0-9._-]{0,63}$"
"""Webhook names are URL path segments: lower-case a-z 0-9 . _ - (up to 64)."""
WEBHOOK_PROVIDERS = ("ses", "sendgrid", "mailgun", "postmark", "sparkpost", "brevo", "standard")
SNS_CERT_HOST_PATTERN = r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$"
"""The hosts an SNS signing certificate (and a SubscribeURL) may come from: AWS's own pattern."""


class WebhookSettings(BaseModel):
    """One provider webhook receiver, served at ``POST /v1/webhooks/{name}`` by the API.

    Secrets (``secret``, ``basic_auth``, ``bearer_tokens``) may come from the environment
    (``BOUNCE_WEBHOOKS__SENDGRID__PUBLIC_KEY``) or from ``*_file`` (one value per line); they are
    never logged. A receiver without the credentials its provider needs refuses every request.
    """

    model_config = ConfigDict(extra="forbid")

    provider: Literal["ses", "sendgrid", "mailgun", "postmark", "sparkpost", "brevo", "standard"] | None = None
    """Which provider posts here; default: the receiver's name (``[webhooks.sendgrid]``)."""
    enabled: bool = True
    kind: Literal["bounce", "fbl", "auto"] = "auto"
    """Which reports may suppress (as for mailboxes): "auto" lets bounces and complaints do so."""
    secret: SecretStr | None = None
    """mailgun: the HTTP webhook signing key; standard: the ``whsec_...`` secret;
    sendgrid: the verification (public) key, base64 DER or PEM."""
    secret_file: Path | None = None
    basic_auth: list[SecretStr] = Field(default_factory=list)
    """``user:password`` pairs accepted as HTTP Basic credentials (several: rotation). Postmark,
    SparkPost and Brevo have no signature: set these (or ``bearer_tokens``) for them."""
    basic_auth_file: Path | None = None
    bearer_tokens: list[SecretStr] = Field(default_factory=list)
    """Tokens accepted as ``Authorization: Bearer`` (Brevo, SparkPost OAuth-less setups)."""
    tolerance_seconds: int = Field(default=300, ge=1, le=7 * 86_400)
    """Signed timestamps further than this from now (either way) are refused (mailgun, sendgrid,
    standard); SNS messages older than this plus one hour (SNS retries for an hour) are refused."""
    topic_arns: list[str] = Field(default_factory=list)
    """ses: the SNS topics accepted (required: a valid signature only proves SOME topic sent it)."""
    cert_host_pattern: str = SNS_CERT_HOST_PATTERN
    """ses: a regular expression the host (``host:port`` when a port is given) of SigningCertURL
    and SubscribeURL must match in full."""
    cert_ca_file: Path | None = None
    """ses: CA file to verify the certificate host's TLS with (default: the system's CAs)."""
    confirm_subscriptions: bool = True
    """ses: confirm a SubscriptionConfirmation of an allowed topic by fetching its SubscribeURL."""
    fetch_timeout_seconds: float = Field(default=5.0, gt=0, le=60)

    def provider_for(self, name: str) -> str:
        provider = self.provider or name
        if provider not in WEBHOOK_PROVIDERS:
            raise ConfigError(f"webhook {name!r}: unknown provider {provider!r}; set provider = one of "
                              f"{', '.join(WEBHOOK_PROVIDERS)}")
        return provider

    def secrets(self) -> list[str]:
        """``secret`` and the lines of ``secret_file``."""
        values = [self.secret.get_secret_value()] if self.secret is not None else []
        return values + _file_lines(self.secret_file, "secret_file")

    def credentials(self) -> list[str]:
        """The accepted ``user:password`` pairs."""
        return [v.get_secret_value() for v in self.basic_auth] + _file_lines(self.basic_auth_file, "basic_auth_file")


def _file_lines(path: Path | None, name: str) -> list[str]:
    if path is None:
        return []
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read {name} {path}: {exc.strerror}") from None
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


OutboxChange = Literal["added", "removed", "expired"]
OUTBOX_CHANGES: tuple[OutboxChange, ...] = ("added", "removed", "expired")


class OutboxEndpoint(BaseModel):
    """One receiver of suppression-changed events (listmonk, Mautic, your own application)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern=r"^https?://")
    format: Literal["generic", "listmonk"] = "generic"
    """"generic": ``{"type": "suppression.added", "timestamp", "data": {...}}``; "listmonk": the body
    of listmonk's ``POST /webhooks/bounce`` (email, source, type hard/soft/complaint, meta)."""
    secret: SecretStr | None = None
    """``whsec_...``: each request is signed with Standard Webhooks headers (``webhook-id``,
    ``webhook-timestamp``, ``webhook-signature``)."""
    secret_file: Path | None = None
    authorization: SecretStr | None = None
    """An ``Authorization`` header value to send (listmonk: ``token api_user:access_token``)."""
    changes: list[OutboxChange] = Field(default_factory=lambda: list(OUTBOX_CHANGES))
    """Which changes this endpoint hears of (listmonk's bounce webhook knows only "added")."""
    max_attempts: int = Field(default=8, ge=1, le=100)
    """After this many failed tries a delivery is dead (kept, counted, never tried again)."""
    timeout_seconds: float = Field(default=15.0, gt=0, le=120)

    def signing_secret(self) -> str:
        if self.secret is not None:
            return self.secret.get_secret_value()
        lines = _file_lines(self.secret_file, "secret_file")
        return lines[0] if lines else ""


class OutboxSettings(BaseModel):
    """Suppression-changed events out: endpoints, and how the delivery job retries."""

    model_config = ConfigDict(extra="forbid")

    endpoints: dict[str, OutboxEndpoint] = Field(default_factory=dict)
    """Endpoints by name (stored with each delivery; renaming one orphans its pending deliveries)."""
    interval_seconds: float = Field(default=2.0, ge=0.05, le=3600)
    """How often the delivery job looks for due deliveries."""
    batch_size: int = Field(default=100, ge=1, le=10_000)
    lease_seconds: float | None = Field(default=None, gt=0)
    """How long a claimed delivery is left to the process that claimed it before another try
    (default: the longest endpoint timeout plus 30 s). A process killed mid-delivery is thus
    retried after this long, under the same webhook-id."""
    retry_delays_seconds: list[float] = Field(
        default_factory=lambda: [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0])
    """Delay before try n+1 after n failed tries (the last repeats), each +-20 % jitter."""


def embedded_mailboxes() -> dict[str, MailboxSettings]:
    """The embedded default: the samples/ directory, read-only (none outside a source checkout)."""
    if not DEFAULT_SAMPLES_DIR.is_dir():
        return {}
    return {
        "samples": MailboxSettings(
            source="directory", path=DEFAULT_SAMPLES_DIR, pattern="*.eml", read_only=True, processed="keep"
        )
    }


class Settings(BaseSettings):
    """Everything the service needs; one instance per process, built by ``load_settings``."""

    model_config = SettingsConfigDict(
        env_prefix="BOUNCE_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )
    toml_path: ClassVar[Path | None] = None

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    parse: ParseSettings = Field(default_factory=ParseSettings)
    rules: RulesSettings = Field(default_factory=RulesSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    verp: VerpSettings = Field(default_factory=VerpSettings)
    mailboxes: dict[str, MailboxSettings] = Field(default_factory=dict)
    """Mailboxes by name (lower-case: a-z 0-9 . _ -), e.g. ``[mailboxes.bounces]`` in TOML."""
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    policyd: PolicydSettings = Field(default_factory=PolicydSettings)

    @field_validator("mailboxes")
    @classmethod
    def _mailbox_names(cls, value: dict[str, MailboxSettings]) -> dict[str, MailboxSettings]:
        import re

        for name in value:
            if not re.match(_MAILBOX_NAME, name):
                raise ValueError(f"invalid mailbox name {name!r}: use lower-case a-z 0-9 . _ - (up to 64)")
        return value
    api: ApiSettings = Field(default_factory=ApiSettings)
    webhooks: dict[str, WebhookSettings] = Field(default_factory=dict)
    """Provider webhook receivers by name (the URL path: ``/v1/webhooks/{name}``)."""

    @field_validator("webhooks")
    @classmethod
    def _webhook_names(cls, value: dict[str, WebhookSettings]) -> dict[str, WebhookSettings]:
        import re

        for name, webhook in value.items():
            if not re.match(WEBHOOK_NAME, name):
                raise ValueError(f"invalid webhook name {name!r}: use lower-case a-z 0-9 . _ - (up to 64)")
            if (webhook.provider or name) not in WEBHOOK_PROVIDERS:
                raise ValueError(f"webhook {name!r}: set provider = one of {', '.join(WEBHOOK_PROVIDERS)}")
        return value
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls.toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls.toml_path))
        return tuple(sources)


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Read the TOML file (argument, else $BOUNCE_PROCESSOR_CONFIG, else none) and the environment."""
    from pydantic import ValidationError

    chosen = path if path is not None else os.environ.get(CONFIG_ENV)
    toml_path = Path(chosen) if chosen else None
    if toml_path is not None and not toml_path.is_file():
        raise ConfigError(f"configuration file not found: {toml_path}")

    class _FileSettings(Settings):
        pass

    _FileSettings.toml_path = toml_path
    try:
        loaded = _FileSettings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration{f' in {toml_path}' if toml_path else ''}: {problems}") from None
    except ValueError as exc:  # TOML syntax errors
        raise ConfigError(f"cannot read {toml_path}: {exc}") from None
    return loaded
