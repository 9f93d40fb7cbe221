"""The rule-file model: what a rule says, independent of how it is read or matched.

A rule is ``id``, ``description``, a ``match`` condition and a ``result``. A condition is a tree of
``AllOf``/``AnyOf``/``Not`` nodes over ``FieldTest`` leaves; a ``FieldTest`` checks one event field against one or
more patterns (any of them may match). The pattern syntax of each field, and how one pattern can
cover another (used to find shadowed rules), live here as well, so that the loader, the engine and
``rules check`` agree on them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any

from processor.classify.reply import split_reply
from processor.records import Action, BounceType, Event, EventKind

REASONS: frozenset[str] = frozenset(
    (
        "userunknown", "hostunknown", "hasmoved", "notaccept", "mailboxfull", "mesgtoobig", "exceedlimit",
        "suspend", "filtered", "rejected", "blocked", "spamdetected", "virusdetected", "policyviolation",
        "securityerror", "authfailure", "badreputation", "requireptr", "notcompliantrfc", "norelaying",
        "toomanyconn", "speeding", "expired", "networkerror", "systemerror", "systemfull", "mailererror",
        "contenterror", "syntaxerror", "onhold", "undefined", "feedback", "vacation", "delivered",
    )
)
"""Reason words, compatible with Sisimai's."""

ADDRESS_REASONS: frozenset[str] = frozenset({"userunknown", "hostunknown", "hasmoved", "notaccept"})
"""The reasons that say the ADDRESS itself is undeliverable: the only ones a default rule may call hard."""

SMTP_COMMANDS: frozenset[str] = frozenset(
    {"CONN", "HELO", "EHLO", "LHLO", "STARTTLS", "AUTH", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "QUIT"}
)
"""``CONN`` is the connection (greeting) stage, before any command."""

DSN_ACTIONS: frozenset[str] = frozenset({"failed", "delayed", "delivered", "relayed", "expanded"})


class FieldKind(StrEnum):
    STATUS = "status"
    REPLY = "reply"
    WORD = "word"
    REGEX = "regex"
    DOMAIN = "domain"


FIELDS: dict[str, FieldKind] = {
    "status": FieldKind.STATUS,
    "reply_code": FieldKind.REPLY,
    "smtp_command": FieldKind.WORD,
    "diagnostic": FieldKind.REGEX,
    "mentioned_hosts": FieldKind.REGEX,
    "notice": FieldKind.REGEX,
    "diagnostic_type": FieldKind.WORD,
    "remote_mta": FieldKind.DOMAIN,
    "reporting_mta": FieldKind.DOMAIN,
    "recipient_domain": FieldKind.DOMAIN,
    "kind": FieldKind.WORD,
    "feedback_type": FieldKind.WORD,
    "mta": FieldKind.WORD,
    "dsn_action": FieldKind.WORD,
    "names_recipient": FieldKind.WORD,
    "provider": FieldKind.WORD,
    "provider_category": FieldKind.WORD,
}
"""The event fields a condition can test, and the pattern syntax of each."""

COMBINATORS: tuple[str, ...] = ("all", "any", "not")
SAYS = "says"
"""A condition key naming phrase families (rules/phrases/<family>.yaml): the reply says one of them."""
PHRASE_FILE_KEYS: tuple[str, ...] = ("family", "description", "phrases")
FILE_KEYS: tuple[str, ...] = ("rules",)
RULE_KEYS: tuple[str, ...] = ("id", "description", "match", "result")
RESULT_KEYS: tuple[str, ...] = ("reason", "bounce_type", "action", "ttl")


@dataclass(frozen=True, slots=True, order=True)
class Location:
    """Where something was written: a file and a 1-based line."""

    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True, slots=True)
class RuleProblem:
    """One problem in a rule file, printed as ``file:line: message``."""

    location: Location
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


class RulesError(Exception):
    """Rule files are invalid; ``problems`` lists every problem with its file and line."""

    def __init__(self, problems: list[RuleProblem]) -> None:
        self.problems = problems
        shown = "; ".join(str(p) for p in problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        super().__init__(f"invalid rules: {shown}{more}")


class PatternError(ValueError):
    """A pattern that does not follow its field's syntax; the message says why."""


# --- conditions -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldTest:
    """``field`` matches any one of ``patterns`` (already normalised)."""

    field: str
    patterns: tuple[str, ...]
    location: Location
    families: tuple[str, ...] = ()
    """The phrase families a ``says:`` condition cited (its patterns are theirs), for ``explain``."""


@dataclass(frozen=True, slots=True)
class AllOf:
    children: tuple[Condition, ...]
    location: Location


@dataclass(frozen=True, slots=True)
class AnyOf:
    children: tuple[Condition, ...]
    location: Location


@dataclass(frozen=True, slots=True)
class Not:
    child: Condition
    location: Location


Condition = FieldTest | AllOf | AnyOf | Not


@dataclass(frozen=True, slots=True)
class Result:
    reason: str
    bounce_type: BounceType
    action: Action | None = None
    ttl: timedelta | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    description: str
    condition: Condition
    result: Result
    location: Location
    origin: str = ""
    """The rule directory the rule came from (user directories come before the defaults)."""


# --- pattern syntax -------------------------------------------------------------------------------

_STATUS_PATTERN = re.compile(r"^([245*])\.(\d{1,3}|\*)\.(\d{1,3}|\*)$")
_REPLY_PATTERN = re.compile(r"^[245*][0-9*xX][0-9*xX]$")
_DOMAIN_PATTERN = re.compile(r"^[a-z0-9*_\-.:\[\]]+$")
_RULE_ID = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")
_TTL = re.compile(r"^(\d+)\s*([smhdw])$")
_TRUTH = {"true": "true", "yes": "true", "false": "false", "no": "false"}
MAX_TTL_DAYS = 36500
_TTL_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def valid_rule_id(value: str) -> bool:
    return bool(_RULE_ID.match(value))


def normalise_pattern(field: str, raw: str, *, check_regex: bool = True) -> str:
    """The canonical form of one pattern for ``field``; PatternError if it is not valid. With
    ``check_regex`` False a regex is taken as written, for the caller to check (see
    ``load_rules``'s ``unchecked``)."""
    kind = FIELDS[field]
    value = raw.strip()
    if not value:
        raise PatternError("empty pattern")
    if kind is FieldKind.STATUS:
        m = _STATUS_PATTERN.match(value)
        if not m:
            raise PatternError("expected an enhanced status code such as 5.1.1, 5.1.* or 4.*.*")
        parts = [p if p == "*" else str(int(p)) for p in m.groups()]
        return ".".join(parts)
    if kind is FieldKind.REPLY:
        if not _REPLY_PATTERN.match(value):
            raise PatternError("expected an SMTP reply code such as 550, 55x or 4xx")
        return value.replace("x", "*").replace("X", "*")
    if kind is FieldKind.REGEX:
        if check_regex:
            compile_regex(value)
        return value
    if kind is FieldKind.DOMAIN:
        value = value.lower().rstrip(".")
        if not _DOMAIN_PATTERN.match(value):
            raise PatternError("expected a host or domain name, '*' matching any characters")
        return value
    return _normalise_word(field, value)


def _normalise_word(field: str, value: str) -> str:
    if field == "smtp_command":
        value = value.upper()
        if value not in SMTP_COMMANDS:
            raise PatternError(f"expected one of {', '.join(sorted(SMTP_COMMANDS))}")
        return value
    value = value.lower()
    if field == "kind" and value not in {str(k) for k in EventKind}:
        raise PatternError(f"expected one of {', '.join(str(k) for k in EventKind)}")
    if field == "dsn_action" and value not in DSN_ACTIONS:
        raise PatternError(f"expected one of {', '.join(sorted(DSN_ACTIONS))}")
    if field == "names_recipient":
        if value not in _TRUTH:
            raise PatternError("expected true or false")
        return _TRUTH[value]
    return value


def regex_options() -> Any:
    """RE2 options shared by every rule regex: case-insensitive unless a pattern says ``(?-i)``,
    errors raised rather than logged, room for large combined sets."""
    import re2

    options = re2.Options()
    options.case_sensitive = False
    options.log_errors = False
    options.max_mem = 64 << 20
    return options


def compile_regex(pattern: str) -> Any:
    """Compile one rule regex with RE2 (linear time: no backreferences, no look-around)."""
    import re2

    try:
        return re2.compile(pattern, regex_options())
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise PatternError(f"not a valid RE2 regular expression: {detail}") from None


def parse_ttl(value: str) -> timedelta:
    m = _TTL.match(value.strip().lower())
    if not m:
        raise PatternError("expected a duration such as 30d, 12h, 90m or 2w")
    seconds = int(m.group(1)) * _TTL_SECONDS[m.group(2)]
    if seconds > MAX_TTL_DAYS * 86400:
        # an expiry beyond the calendar would make storing every matching event fail
        raise PatternError(
            f"expected at most {MAX_TTL_DAYS}d (100 years); leave ttl out for an entry that never expires"
        )
    return timedelta(seconds=seconds)


# --- reading event fields -------------------------------------------------------------------------


def _domain(value: str) -> str:
    return value.strip().strip("[]").rstrip(".").lower()


def _names_recipient_value(event: Event) -> str:
    return "true" if _names_recipient(event.recipient.lower(), event.diagnostic.lower()) else "false"


FIELD_GETTERS: dict[str, Callable[[Event], str]] = {
    "status": lambda event: event.status,
    "reply_code": lambda event: event.reply_code,
    "smtp_command": lambda event: event.smtp_command.upper(),
    "diagnostic": lambda event: split_reply(event.diagnostic).text,
    "mentioned_hosts": lambda event: split_reply(event.diagnostic).mentioned_hosts,
    "notice": lambda event: event.notice,
    "diagnostic_type": lambda event: event.diagnostic_type.lower(),
    "remote_mta": lambda event: _domain(event.remote_mta or split_reply(event.diagnostic).remote_host),
    "reporting_mta": lambda event: _domain(event.reporting_mta),
    "recipient_domain": lambda event: _domain(event.recipient_domain),
    "kind": lambda event: str(event.kind),
    "feedback_type": lambda event: event.feedback_type.lower(),
    "mta": lambda event: event.mta.lower(),
    "dsn_action": lambda event: event.dsn_action.lower(),
    "provider": lambda event: event.provider.lower(),
    "provider_category": lambda event: event.provider_category.lower(),
    "names_recipient": _names_recipient_value,
}
"""How to read each field of ``FIELDS`` from an event, normalised the way patterns are: the rule
engine looks its readers up once, when it compiles the rules, rather than per event."""


def field_value(event: Event, field: str) -> str:
    """The text of ``field`` in ``event``, normalised the way patterns are (KeyError for a field
    that is not in ``FIELDS``)."""
    return FIELD_GETTERS[field](event)


def _names_recipient(recipient: str, diagnostic: str) -> bool:
    """The reply names the recipient: its whole address, or its local part in angle brackets as
    a server writes for its own users ("User <jane> unknown")."""
    if not recipient:
        return False
    if recipient in diagnostic:
        return True
    local = recipient.rpartition("@")[0]
    return bool(local) and f"<{local}>" in diagnostic


def code_variants(code: str, separator: str) -> list[str]:
    """Every wildcard pattern that matches ``code``: 5.1.1 -> 5.1.1, 5.1.*, 5.*.1, ..., *.*.*."""
    parts = code.split(separator) if separator else list(code)
    variants = [""]
    for i, part in enumerate(parts):
        glue = separator if i else ""
        variants = [v + glue + p for v in variants for p in (part, "*")]
    return variants


@lru_cache(maxsize=1024)
def _domain_glob(pattern: str) -> Any:
    import re2

    return re2.compile(domain_regex(pattern), regex_options())


def domain_regex(pattern: str) -> str:
    """A host/domain glob as an RE2 regex for a full match (``*`` matches any characters)."""
    import re2

    return ".*".join(re2.escape(piece) for piece in pattern.split("*"))


# --- coverage (for shadowed rules) ----------------------------------------------------------------


def pattern_covers(field: str, wide: str, narrow: str) -> bool:
    """True when every value ``narrow`` matches is also matched by ``wide``.

    Exact for status, reply code, word and domain patterns; for regexes only identical patterns
    count (regex inclusion is not decided), so a shadowed rule is never reported wrongly.
    """
    if wide == narrow:
        return True
    kind = FIELDS[field]
    if kind is FieldKind.STATUS or kind is FieldKind.REPLY:
        sep = "." if kind is FieldKind.STATUS else ""
        wide_parts = wide.split(sep) if sep else list(wide)
        narrow_parts = narrow.split(sep) if sep else list(narrow)
        return all(w in ("*", n) for w, n in zip(wide_parts, narrow_parts, strict=True))
    if kind is FieldKind.DOMAIN:
        if "*" not in narrow:
            return _domain_glob(wide).fullmatch(narrow) is not None
        return wide == "*" or (wide.startswith("*") and "*" not in wide[1:] and narrow.endswith(wide[1:]))
    return False
