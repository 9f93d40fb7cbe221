"""Auto-replies: RFC 3834 Auto-Submitted, vacation and out-of-office notices, X-Autoreply,
and challenge-response systems. These are reported as auto_reply, never as bounces."""

from __future__ import annotations

import re

from processor.parse.report import DSN_TYPES, Report
from processor.parse.text import strip_address
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


def parse(report: Report) -> list[Event] | None:
    """One auto_reply event (recipient: who replied), or None if this is not an auto-reply."""
    if report.has_part(*DSN_TYPES) or report.has_part("message/feedback-report"):
        return None
    if _BOUNCE_FROM.search(report.from_header) or _BOUNCE_SUBJECT.search(report.subject):
        return None
    if not (
        _header_says_auto(report)
        or _SUBJECT.search(report.subject)
        or _CHALLENGE_TEXT.search(report.notice[:_CHALLENGE_SCAN])
    ):
        return None
    return [
        Event(
            kind=EventKind.AUTO_REPLY,
            recipient=strip_address(report.from_header),
            diagnostic=report.subject,
            mta="autoreply",
        )
    ]
