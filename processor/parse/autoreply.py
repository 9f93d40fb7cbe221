"""Auto-replies: RFC 3834 Auto-Submitted, vacation and out-of-office notices, X-Autoreply,
and challenge-response systems. These are reported as auto_reply, never as bounces."""

from __future__ import annotations

import re

from processor.parse.report import DSN_TYPES, Report
from processor.parse.text import STATUS, addresses, folded, may_match_folded, strip_address
from processor.records import Event, EventKind

_SUBJECT = re.compile(
    r"^\s*(?:(?:re|aw|fw|fwd)\s*:\s*)?(?:"
    r"auto(?:matic|matische)?[ -]?(?:reply|response|respond|antwort|answer)"
    r"|auto\s*:|autoreply|out of (?:the )?office|ooo\b|vacation|on vacation|away from (?:the )?office"
    r"|abwesenheit|réponse automatique|respuesta automática|risposta automatica|automatisch antwoord"
    r"|fuera de la oficina|absence|i am away|i'm away|away until"
    r"|please confirm your (?:e-?mail|message)|confirm your message|sender verification|"
    r"verify your (?:e-?mail|message)|challenge[- ]response|please verify|verification (?:required|request)"
    r"|(?:requires?|awaits?|awaiting) (?:your )?(?:verification|confirmation|approval))",
    re.IGNORECASE,
)
_CHALLENGE_TEXT = re.compile(
    r"(?:verify|confirm|prove) (?:that )?you are (?:a )?(?:human|real person|not a (?:robot|spammer|machine))"
    r"|click (?:on )?the (?:link|button) below to (?:confirm|verify|have your (?:message|e-?mail) delivered)"
    r"|(?:add|added) (?:you )?to (?:my|the|his|her|their) (?:white ?list|allow ?list|approved senders)"
    r"|(?:message|e-?mail) (?:is|has been) (?:held|quarantined) (?:until|pending) (?:you|your|the sender)",
    re.IGNORECASE,
)
"""What a challenge-response system asks of the sender (it is waiting for them, nothing failed)."""
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|not delivered|delivery (?:status|failure|notification|report|has failed)|returned mail|"
    r"failure notice|mail delivery failed|delivery problem|could not be delivered|non[- ]?delivery|"
    r"rejected|bounce|warning: could not|delayed mail|mail system error|returned to sender",
    re.IGNORECASE,
)
_BOUNCE_FROM = re.compile(r"mailer-daemon|postmaster|mail delivery|mdaemon|double-bounce", re.IGNORECASE)
_CHALLENGE_SCAN = 4000
"""Characters of a notice searched for a challenge (they state it at the top)."""
_CHALLENGE_HEADERS = ("x-challenge", "x-tmda-confirm", "x-boxbe-verification", "x-spamarrest-challenge")


def _header_says_auto(report: Report) -> bool:
    headers = report.headers
    auto = headers.get("auto-submitted").strip().lower()
    if auto.startswith("auto-replied"):
        return True
    if headers.get("x-autoreply").strip().lower() in ("yes", "true", "1") or "x-autorespond" in headers:
        return True
    if headers.get("precedence").strip().lower() == "auto_reply":
        return True
    if headers.get("x-apple-action").strip().upper() == "VACATION":
        return True
    if headers.get("x-auto-response-suppress") and headers.get("x-ms-exchange-inbox-rules-loop"):
        return True
    return any(name in headers for name in _CHALLENGE_HEADERS)


_PROVE_HUMAN = re.compile(
    r"\b(?:prove|confirm|verify|show|certify)\b[^.\n]{0,40}?\byou(?:'re| are)\b[^.\n]{0,12}?"
    r"\b(?:a |an )?(?:human|real (?:person|sender|human)|person|not (?:a |an )?(?:spam ?)?(?:ro)?bot|"
    r"not (?:a |an )?(?:spammer|machine|automated))"
    r"|dass sie (?:ein )?mensch sind|que vous [êe]tes (?:un )?(?:humain|[êe]tre humain)"
    r"|que (?:usted )?eres? (?:un )?humano",
    re.IGNORECASE,
)
_HELD_UNTIL = re.compile(
    r"\b(?:held|queued|waiting|pending|quarantined|kept|on hold)\b[^\n]{0,80}?\buntil (?:you|the sender) "
    r"(?:confirm|verify|reply|respond|click|answer|validate)",
    re.IGNORECASE,
)
_ALLOW_LIST = re.compile(
    r"\b(?:allow|white|approved|safe|trusted)[- ]?(?:list|senders?(?: list)?)\b"
    r"|list of (?:approved|allowed|trusted) senders",
    re.IGNORECASE,
)
_CONFIRM_ACTION = re.compile(
    r"\b(?:click|reply|respond|visit|open|follow)\b[^.]{0,120}?\b(?:confirm|verif|approv|validat|authori[sz])",
    re.IGNORECASE | re.DOTALL,
)
_CHALLENGE_TERMS = re.compile(
    r"challenge[- ]response|sender (?:verification|authentication) (?:request|required|system)|"
    r"anti-?spam (?:verification|confirmation)",
    re.IGNORECASE,
)
# Words (lower-case) that each of the patterns above needs in any text it matches: a text with
# none of them is not searched.
_PROVE_HUMAN_WORDS = ("prove", "confirm", "verify", "show", "certify", "dass sie", "que ")
_HELD_UNTIL_WORDS = ("until",)
_CHALLENGE_TERMS_WORDS = ("challenge", "sender", "anti")
_ALLOW_LIST_WORDS = ("list", "sender")
_CHALLENGE_WORDS = tuple(
    dict.fromkeys((*_PROVE_HUMAN_WORDS, *_HELD_UNTIL_WORDS, *_CHALLENGE_TERMS_WORDS, *_ALLOW_LIST_WORDS))
)
_DAEMON_FROM = re.compile(r"mailer-daemon|postmaster|mail ?administrator|mail delivery|verify|guard", re.IGNORECASE)


def is_challenge(report: Report) -> bool:
    """A challenge-response message: it asks the sender to prove they are a person, or to confirm
    by a click or reply before the message (held until then) is delivered or the sender is allowed.
    Such messages may look like bounces (a daemon sender, "not delivered" subject); they are not."""
    text = report.prose[:_CHALLENGE_SCAN]  # sentences, however the notice's lines were wrapped
    lower = folded(text)  # once, for the five word tests
    if not may_match_folded(lower, _CHALLENGE_WORDS):
        return False
    if STATUS.search(text):
        return False  # a server's reply with a status code: a bounce that may mention allow lists
    if (
        (may_match_folded(lower, _PROVE_HUMAN_WORDS) and _PROVE_HUMAN.search(text))
        or (may_match_folded(lower, _HELD_UNTIL_WORDS) and _HELD_UNTIL.search(text))
        or (may_match_folded(lower, _CHALLENGE_TERMS_WORDS) and _CHALLENGE_TERMS.search(text))
    ):
        return True
    return bool(
        may_match_folded(lower, _ALLOW_LIST_WORDS) and _ALLOW_LIST.search(text) and _CONFIRM_ACTION.search(text)
    )


def _challenged_address(report: Report) -> str:
    """Who the challenge protects: the sender of a personal challenge, else the first address the
    notice names that is not the bounce mailbox's own."""
    sender = strip_address(report.from_header)
    if sender and not _DAEMON_FROM.search(report.from_header):
        return sender
    own = {strip_address(report.headers.get("to")).lower(), sender.lower()}
    for address in addresses(report.notice):
        if address.lower() not in own:
            return address
    return sender


def parse(report: Report) -> list[Event] | None:
    """One auto_reply event (recipient: who replied), or None if this is not an auto-reply."""
    if report.has_part(*DSN_TYPES) or report.has_part("message/feedback-report"):
        return None
    if is_challenge(report):
        return [_auto_reply(_challenged_address(report), report.subject)]
    if _BOUNCE_FROM.search(report.from_header) or _BOUNCE_SUBJECT.search(report.subject):
        return None
    if not (
        _header_says_auto(report)
        or _SUBJECT.search(report.subject)
        or _CHALLENGE_TEXT.search(report.prose[:_CHALLENGE_SCAN])
    ):
        return None
    return [_auto_reply(strip_address(report.from_header), report.subject)]


def _auto_reply(recipient: str, subject: str) -> Event:
    return Event(kind=EventKind.AUTO_REPLY, recipient=recipient, diagnostic=subject, mta="autoreply")
