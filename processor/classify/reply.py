"""The remote server's reply, separated from its envelope, so keyword rules read only what it said.

A diagnostic line carries more than the receiving server's words: the reporting MTA's prose
("host mx1.arc.example.net[192.0.2.1] said:", "SMTP error from remote mail server after RCPT
TO:<...>:", "(in reply to RCPT TO command)", Postfix's "delivery temporarily suspended: connect to
X:"), host names, addresses, IPs and URLs. A keyword such as ``arc``, ``spam`` or ``reputation``
must not fire on a host name, and a phrase family must not depend on one recipient's address, so
the text the ``diagnostic`` condition sees is the reply with the envelope cut off and these tokens
masked:

    <address>   any e-mail address          <host>  any host or domain name
    <url>       any URL                      <ip>    any IPv4 or bracketed IPv6 address

What was masked stays available: the remote host of the prefix fills ``remote_mta`` when the report
gave none, and the hosts and URLs the reply mentions are the ``mentioned_hosts`` field (a block
list's name, a provider's help page). Pure and cached: the same diagnostic is split once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_ENVELOPE_PREFIXES: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        # Postfix "host X[ip] said:", Exim "host X [ip]:", qmail/others "Server X[ip] failed with:"
        r"^(?:host|server|remote host)\s+(?P<host>[^\s\[\]:]+\.[^\s\[\]:]+|[^\s\[\]:]+(?=\s*\[))\.?\s*"
        r"(?:\[[^\]]*\])?(?::\d+)?\s*"
        r"(?:said|replied|failed with|returned)?\s*:\s*",
        # Exim "SMTP error from remote mail server after RCPT TO:<a@b>: host X [ip]:"
        r"^.{0,80}?SMTP error from remote (?:mail )?(?:server|mailer)\s+(?:after|for)\s+[^:<]*?"
        r"(?::\s*<[^>]*>)?(?:\s+[A-Z-]+=\S*?)*\s*:\s*(?:host:?\s+(?P<host>[^\s\[\]:]+)\.?\s*(?:\[[^\]]*\])?\s*:?\s*)?",
        # Postfix's queue manager and SMTP client: "delivery temporarily suspended: connect to X[ip]:25: ..."
        r"^delivery temporarily suspended:\s*",
        r"^connect to (?P<host>[^\s\[\]:]+?)\.?\s*(?:\[[^\]]*\])?(?::\d+)?:\s*",
        # "X [ip] did not like our RCPT TO:" (DragonFly)
        r"^(?P<host>[^\s\[\]:]+)\s*\[[^\]]*\]\s+did not like our [^:]*:\s*",
        # Sendmail "... while talking to X.: >>> RCPT To:<a@b> <<< 550 ..."
        r"^.*?<<<\s*",
        r"^.{0,200}?\bwhile talking to (?P<host>[^\s:]+?)\.?:\s*",
        # Exchange and SES wrap the remote reply in quotes
        r"^.{0,200}?\bremote server returned\s+'",
        r"^.{0,40}?\bunknown address error\s+",
        r"^(?:smtp|x-[a-z-]+)\s*;\s*",
    )
)
_ENVELOPE_PARTS = re.compile(
    r"\((?:in reply to|after|while)\b[^)]*\)|\bin reply to (?:the )?(?:end of )?[A-Z]+(?: (?:TO|FROM))?(?: command)?",
    re.IGNORECASE,
)
_URL = re.compile(r"\b(?:https?|ftp)://[^\s<>\"')\]]+|\bwww\.[^\s<>\"')\]]+", re.IGNORECASE)
# a local part alone in angle brackets, as a server writes its own users ("User <jane> unknown");
# the placeholders of this module are left alone
_LOCAL_PART = re.compile(r"<(?!(?:address|url|ip|host)>)[\w!#$%&'*+/=?^`{|}~.-]+>")
_ADDRESS = re.compile(
    r"<?(?:mailto:)?(?<![\w!#$%&'*+/=?^`{|}~.-])[\w!#$%&'*+/=?^`{|}~.-]+@(?:\[[^\]\s]+\]|[\w-]+(?:\.[\w-]+)*)>?",
    re.IGNORECASE,
)
_IP = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.]*\d)|\[(?:ipv6:)?[0-9a-f:]*:[0-9a-f:.]+\]", re.IGNORECASE)
_HOST = re.compile(r"(?<![\w@.-])(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[a-z]{2,24}\.?(?![\w-])")
_BLANKS = re.compile(r"\s+")
MAX_REPLY = 16_384
"""Characters of a diagnostic that are split (the rule engine matches no more than this either)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """A diagnostic split into the server's words and their envelope."""

    text: str
    """The reply with the reporter's prose cut off and addresses, hosts, IPs, URLs masked."""
    remote_host: str
    """The host the reporter names as having given the reply ('' when it names none)."""
    mentioned_hosts: str
    """Host names and URLs the reply itself mentions, space-separated."""


def _strip_envelope(text: str) -> tuple[str, str]:
    host = ""
    for _ in range(3):  # prefixes nest at most a few deep ("smtp; host X said: ...")
        for pattern in _ENVELOPE_PREFIXES:
            m = pattern.match(text)
            if m and m.end() < len(text):
                if not host and "host" in pattern.groupindex and m.group("host"):
                    host = m.group("host").lower()
                text = text[m.end() :]
                break
        else:
            break
    text = _ENVELOPE_PARTS.sub(" ", text)
    if text.endswith("'") and text.count("'") % 2:
        text = text[:-1]
    return text, host


@lru_cache(maxsize=4096)
def split_reply(diagnostic: str) -> Reply:
    """The ``Reply`` of one diagnostic line."""
    if not diagnostic:
        return Reply("", "", "")
    text, host = _strip_envelope(diagnostic[:MAX_REPLY].strip())
    mentioned: list[str] = []

    def url(m: re.Match[str]) -> str:
        mentioned.append(m.group(0))
        return " <url> "

    def hostname(m: re.Match[str]) -> str:
        mentioned.append(m.group(0).lower().rstrip("."))
        return "<host>"

    text = _URL.sub(url, text)
    text = _ADDRESS.sub("<address>", text)
    text = _LOCAL_PART.sub("<address>", text)
    text = _IP.sub("<ip>", text)
    text = _HOST.sub(hostname, text)
    return Reply(_BLANKS.sub(" ", text).strip(), host, " ".join(mentioned))
