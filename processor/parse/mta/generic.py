"""Last resort for bounces in no format we know, from a message that looks like a bounce (null
sender, a daemon or postmaster sender, or a bounce subject). The general shapes of plain-text
(or HTML-only) notices, in order:

1. "<address>:" on a line of its own (or followed by the error), the error on the next lines;
2. per-address error lines, "<what went wrong>: <address>" (SMTP32-style servers);
3. an introduction ("... to the following recipient(s):", "the following addresses had
   permanent errors") followed by the addresses, each with the lines that follow it;
4. a sentence that names the address ("your message to <address> could not be delivered",
   "unable to deliver your message to <address>", "a temporary problem delivering your message
   to <address>": a delay);
5. addresses in the notice that come with error words nearby.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace

from processor.parse.mta._common import address_paragraphs, failure, unique
from processor.parse.report import Report
from processor.parse.text import (
    ADDRESS,
    STATUS,
    addresses,
    find_reply_code,
    find_status,
    may_match,
    one_line,
    strip_address,
)
from processor.records import Event, EventKind

NAME = "generic"

_SUBJECT = re.compile(
    r"undeliver|not (?:be )?delivered|delivery (?:status|failure|failed|notification|problem|report)|"
    r"returned mail|failure notice|mail delivery|could not be delivered|non[- ]?delivery|"
    r"rejected|bounced?|mail system error|returned to sender|delivery error|failed delivery|"
    r"permanent error|nicht zustellbar|unzustellbar|no entregado|non remis|non recapitabile|"
    r"not deliverable|non-?deliverable|failed mail|\bND[NR]\b|unable to deliver|no se puede entregar|"
    r"nicht zugestellt|non distribu|no (?:se )?(?:pudo|ha podido) entregar|n[ãa]o entregue|niet bezorgd",
    re.IGNORECASE,
)
_FOREIGN_ERROR_WORDS = (
    # German, French, Spanish, Portuguese, Italian, Dutch: unknown, does not exist, not found,
    # full, over quota, disabled
    r"\b(?:unbekannt|existiert nicht|nicht (?:gefunden|vorhanden|zustellbar)|voll|[uü]berschritten|gesperrt|"
    r"inconnue?|inexistante?|introuvable|n.existe pas|pleine?|d[ée]pass[ée]e?|d[ée]sactiv[ée]e?|"
    r"desconocid[oa]|inexistente|no existe|lleno|excedid[oa]|desactivad[oa]|"
    r"desconhecid[oa]|n[ãa]o existe|cheio|excedid[oa]|desativad[oa]|"
    r"sconosciut[oa]|inesistente|non esiste|pien[oa]|superat[oa]|disattivat[oa]|"
    r"onbekend|bestaat niet|niet gevonden|vol|overschreden|geblokkeerd)\b"
    # Russian, Japanese, Chinese: not found, does not exist, unknown, full
    r"|не найден|не существует|неизвестн|переполнен|превышен|заблокирован"
    r"|見つかりません|存在しません|不明|いっぱい|容量|不存在|未知|已满|无效"
)
"""Error words of notices in other languages (the address-level failures: unknown, missing,
full, disabled)."""
_ERROR_WORDS = re.compile(
    r"\b(?:unknown|not found|no such|does not exist|doesn't exist|invalid|rejected|refused|denied|"
    r"disabled|unavailable|over ?quota|quota|full|failed|failure|error|blocked|unrouteable|"
    r"unreachable|timed? ?out|expired|not accepted|inactive|suspended|deactivated|unable|not listed|"
    r"could ?n[o']t be (?:found|delivered)|was ?n[o']t found|undeliverable|exceed(?:s|ed)?|(?:size|storage) limit)\b"
    rf"|{_FOREIGN_ERROR_WORDS}",
    re.IGNORECASE,
)
_SKIP_LOCAL = re.compile(
    r"^(?:postmaster|mailer-daemon|abuse|noreply|no-reply|owner-.+|.+-(?:request|admin|owner|bounces?))$",
    re.IGNORECASE,
)
"""Local parts of addresses that run mail rather than receive it: daemons, and a mailing list's own
addresses (``-request``, ``-admin``, ``-owner``, ``-bounces``, ``owner-``), which notices quote."""
_LIST_HEADERS = ("list-post", "list-help", "list-owner", "list-subscribe", "list-unsubscribe", "list-archive",
                 "list-id", "errors-to", "sender", "reply-to", "message-id", "in-reply-to", "references")
"""Headers (of the report and of the original) whose addresses are never a failed recipient: a
mailing list's own, the sender's reply and error addresses, and message ids that look like addresses."""
_REPORT_OWN_HEADERS = ("delivered-to", "x-original-to", "return-path")
_COLON_LINE = re.compile(r"^\s{0,4}<([^<>\s]+@[^<>\s]+)>:")
_INTRO = re.compile(
    r"(?:following (?:recipients?|addresse?s?(?:\(es\))?|e-?mail addresses|destinations?|users?)|"
    r"(?:did not reach|could ?n[o']t be delivered to|was ?n[o']t delivered to|failed permanently|"
    r"undeliverable to|permanent errors? (?:for|with)|(?:to|for) these (?:recipients?|addresses|users))"
    r"(?: the following| these)?(?: recipients?| addresse?s?(?:\(es\))?)?|"
    # the same in other languages: "an folgende Empfänger", "aux destinataires suivants", "a los
    # siguientes destinatarios", "aos seguintes destinatários", "ai seguenti destinatari", "bij de
    # volgende ontvangers", "следующим адресатам", "以下のアドレス", "以下收件人"
    r"(?:folgende[nrs]?|nachstehende[nrs]?) (?:empf[äa]nger|adressen?)|"
    r"(?:destinataires?|adresses?) suivante?s?|"
    r"(?:siguientes|seguintes|seguenti) (?:destinat[áa]ri(?:os|o)?|direcciones|endere[çc]os|indirizzi)|"
    r"volgende (?:ontvangers?|geadresseerden?|adressen)|"
    r"следующ\w* (?:адресат\w*|получател\w*|адрес\w*)|以下の(?:アドレス|宛先|受信者)|以下(?:的)?(?:收件人|地址))"
    r"[^\n]*?(?::[ \t]*|[ \t.]*(?=\n))",
    re.IGNORECASE,
)
"""An introduction to a list of addresses; it ends with a colon or, in short notices, the line."""
_ERROR_LINE = re.compile(
    rf"^[ \t]*(?P<said>[A-Za-z][^:\n<>@]{{2,80}}?)[ \t]*:[ \t]*<?(?P<address>{ADDRESS.pattern})>?[ \t]*\.?[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
"""A per-address error line: what went wrong, a colon, the address (SMTP32 and similar servers)."""
_ADDRESS_FIRST_LINE = re.compile(
    rf"^[ \t]*<?(?P<address>{ADDRESS.pattern})>?[ \t]*(?::|\.{{3}}|-{{1,2}}|\()[ \t]*(?P<said>\S[^\n]*)$",
    re.IGNORECASE | re.MULTILINE,
)
"""The same, address first: "<address>: <error>", "<address>... <error>" (Sendmail's transcript
style), "<address> (<error>)"."""
_LINE_ERROR_WORDS = re.compile(
    r"\b(?:unknown|invalid|no such|not (?:found|exist|allowed|permitted|accepted)|does ?n[o']t exist|"
    r"exceed(?:s|ed)?|over ?quota|quota|full|size|disabled|inactive|suspended|refused|rejected|denied|"
    r"undeliverable|could ?n[o']t|cannot|unable|failed|failure|error|bad|unavailable|unrouteable)\b"
    rf"|{_FOREIGN_ERROR_WORDS}",
    re.IGNORECASE,
)
_VERDICT = (
    r"(?:(?:could ?n[o']t|cannot|can ?not|was ?n[o']t|is ?n[o']t|(?:was|is|has) not|has ?n[o']t|did ?n[o']t)"
    r"[ \t]*(?:be |been )?(?:delivered|deliverable|reach(?:ed)?)"
    r"|(?:is|was|has been) (?:undeliverable|rejected|refused|returned)|(?:has )?failed|bounced)"
)
_SUCCESS = re.compile(
    r"(?<!not )(?<!n't )\b(?:successfully (?:delivered|relayed)|"
    r"(?:was|were|has been|have been) (?:successfully )?(?:delivered|relayed))\b",
    re.IGNORECASE,
)
"""A sentence that reports a delivery, not a failure."""
_SENTENCE = re.compile(
    # the address after a phrase that already says delivery failed, or "your message to"
    r"(?:(?:your|the following) (?:message|mail|e-?mail)(?: you sent)? (?:addressed )?to|"
    r"delivery (?:of [^\n]{0,30}?)?to|"
    r"(?:could ?n[o']t|unable to|cannot|can ?not|failed to) (?:be )?deliver(?:ed)?"
    r"(?: (?:your|the|this) (?:message|mail|e-?mail))?(?: to)?)"
    rf"[ \t]*<?(?P<address>{ADDRESS.pattern})>?[ \t,]*(?:{_VERDICT}|[.:;,]|$)"
    # any "message/mail to <address>" followed by a verdict
    rf"|(?:message|mail|e-?mail) (?:addressed )?to[ \t]*<?(?P<named>{ADDRESS.pattern})>?[ \t,]*{_VERDICT}"
    # the same in other languages: "Nachricht an <a> konnte nicht zugestellt werden", "message à
    # <a> n'a pas pu être remis", "mensaje para <a> no se pudo entregar", "messaggio a <a> non ...
    # recapitato", "bericht aan <a> kon niet worden bezorgd"
    r"|(?:nachricht|e-?mail|mail|message|mensaje|correo|mensagem|messaggio|bericht)"
    r" (?:an|à|a|pour|para|per|aan)[ \t]*"
    rf"<?(?P<foreign>{ADDRESS.pattern})>?[ \t,]*"
    r"(?:konnte nicht|n'a pas (?:pu|été)|no (?:se )?(?:pudo|ha podido|puede)|n[ãa]o (?:p[ôo]de|foi)|"
    r"non (?:è stato|ha potuto|può)|kon niet|is niet)",
    re.IGNORECASE | re.MULTILINE,
)
"""A sentence that names the failed address: "your message to <a> couldn't be delivered",
"delivery to <a> failed", "unable to deliver your message to <a>", and the same in other
languages."""
_DELAY_SENTENCE = re.compile(
    rf"temporary (?:problem|failure|error)[^\n]{{0,40}}?\bto[ \t]*<?(?P<address>{ADDRESS.pattern})>?|"
    rf"(?:message|mail) to <?(?P<delayed>{ADDRESS.pattern})>? (?:has been|is being|was) delayed",
    re.IGNORECASE,
)
"""A notice that delivery is only delayed (the sender's server will retry): a delay, not a failure."""
_STOP = re.compile(r"^\s*(?:-{3,}|={3,}|Content-Type:|Received:|Reporting-MTA:)", re.IGNORECASE | re.MULTILINE)


_REPLY_SUBJECT = re.compile(r"^\s*(?:re|aw|sv|antw|odp|res|ref)\s*:", re.IGNORECASE)


def matches(report: Report) -> bool:
    """A daemon's message, or one whose subject says it is a bounce; a person's reply ("Re: ...
    rejected") is never read as one."""
    if report.looks_like_bounce_sender:
        return True
    return _SUBJECT.search(report.subject) is not None and _REPLY_SUBJECT.match(report.subject) is None


def _own_addresses(report: Report) -> set[str]:
    """Addresses that are never the failed recipient: the report's and the original's senders,
    and a mailing list's own addresses from the List-* headers."""
    own = {
        strip_address(report.headers.get("to")).lower(),
        report.from_address,
        strip_address(report.original_headers.get("from")).lower(),
        strip_address(report.original_headers.get("return-path")).lower(),
        strip_address(report.original_headers.get("sender")).lower(),
    }
    for name in _REPORT_OWN_HEADERS:
        own.update(strip_address(value).lower() for value in report.headers.get_all(name))
    for headers in (report.headers, report.original_headers):
        for name in _LIST_HEADERS:
            for value in headers.get_all(name):
                own.update(address.lower() for address in addresses(value))
    own.discard("")
    return own


def _usable(address: str, own: set[str]) -> bool:
    local = address.partition("@")[0]
    return bool(address) and address.lower() not in own and not _SKIP_LOCAL.match(local)


def _colon_list(notice: str, own: set[str]) -> list[Event]:
    return [
        failure(NAME, address, said)
        for address, said in address_paragraphs(notice, _COLON_LINE, _STOP)
        if _usable(address, own)
    ]


def _error_lines(notice: str, own: set[str]) -> list[Event]:
    found = [
        (m.start(), m.group("address"), m.group(0).strip())
        for pattern in (_ERROR_LINE, _ADDRESS_FIRST_LINE)
        for m in pattern.finditer(notice)
        if (_LINE_ERROR_WORDS.search(m.group("said")) or find_reply_code(m.group("said").strip(" ()")))
        and _usable(strip_address(m.group("address")), own)
    ]
    return [failure(NAME, address, said) for _, address, said in sorted(found)]


def _following(lines: list[str], start: int, count: int = 3, address: str = "") -> str:
    """The non-blank lines after ``start`` up to the next line naming another address than
    ``address`` (at most ``count``): a reply that quotes the address is still about it."""
    after: list[str] = []
    for part in lines[start + 1 : start + 1 + count]:
        if _STOP.match(part) or any(strip_address(a).lower() != address.lower() for a in addresses(part)):
            break
        if part.strip():
            after.append(part.strip())
    return " ".join(after)


def _named_in_sentence(notice: str, own: set[str]) -> list[Event]:
    lines = notice.split("\n")
    events: list[Event] = []
    for index, text in enumerate(lines):
        line = text
        if _SUCCESS.search(line):
            continue
        delayed = _DELAY_SENTENCE.search(line)
        found = delayed or _SENTENCE.search(line)
        last = index
        if not found and index + 1 < len(lines) and lines[index + 1].strip():
            # a sentence that goes on after a line break (the notice wrapped at another width)
            joined = f"{line.rstrip()} {lines[index + 1].strip()}"
            delayed = _DELAY_SENTENCE.search(joined)
            found = delayed or _SENTENCE.search(joined)
            if not found or found.start() >= len(line.rstrip()) or _SUCCESS.search(joined):
                continue
            line, last = joined, index + 1
        if not found:
            continue
        if delayed:
            address = strip_address(found.group("address") or found.group("delayed"))
        else:
            address = strip_address(found.group("address") or found.group("named") or found.group("foreign"))
        if not _usable(address, own):
            continue
        said = f"{line.strip()} {_following(lines, last, address=address)}".strip()
        events.append(failure(NAME, address, said, kind=EventKind.DELAY if delayed else EventKind.FAILURE))
    return events


def _introduced_list(notice: str, own: set[str]) -> list[Event]:
    m = _INTRO.search(notice)
    if not m:
        return []
    rest = notice[m.end() :]
    stop = _STOP.search(rest)
    if stop:
        rest = rest[: stop.start()]
    entries: list[tuple[str, str, bool]] = []
    lines = rest.split("\n")
    first_line = len(lines)
    for index, line in enumerate(lines):
        found = ADDRESS.search(line)
        if not found:
            if entries and not line.strip() and index + 1 < len(lines) and not ADDRESS.search(lines[index + 1]):
                break
            continue
        address = strip_address(found.group(1))
        if not _usable(address, own):
            continue
        first_line = min(first_line, index)
        own_line = line[found.end() :].strip(" :>)'\"]")
        said = (own_line + " " + _following(lines, index, address=address)).strip()
        entries.append((address, said, bool(own_line)))
    if entries and not entries[-1][2]:
        # addresses listed alone, then one reason for all of them: the last one's following text
        shared = entries[-1][1]
        entries = [(address, said or shared, own) for address, said, own in entries]
    # no reason after an address: the introduction, up to the first address listed, may give it
    # ("could not be delivered because they are not accepting mail from <sender>:")
    start = notice.rfind("\n\n", 0, m.start()) + 1
    intro = one_line(notice[start : m.end()] + "\n".join(lines[:first_line]))[:500]
    entries = [(address, said or intro, own) for address, said, own in entries]
    return [failure(NAME, address, said) for address, said, _ in entries]


def _paragraph_before(lines: list[str], index: int) -> list[str]:
    """The paragraph (lines up to a blank line) just before line ``index``, when it names no address."""
    start = index - 1
    while start >= 0 and not lines[start].strip():
        start -= 1
    paragraph: list[str] = []
    while start >= 0 and lines[start].strip() and len(paragraph) < 4:
        paragraph.insert(0, lines[start])
        start -= 1
    return [] if any(ADDRESS.search(part) for part in paragraph) else paragraph


def _scattered(notice: str, own: set[str]) -> list[Event]:
    lines = notice.split("\n")
    events: list[Event] = []
    for i, line in enumerate(lines):
        for m in ADDRESS.finditer(line):
            address = strip_address(m.group(1))
            if not _usable(address, own):
                continue
            context = " ".join(part.strip() for part in lines[max(0, i - 1) : i + 4])
            if not (_ERROR_WORDS.search(context) or STATUS.search(context) or find_reply_code(context)):
                # the reason may come first ("undeliverable for the reason below: ... <address>")
                context = " ".join(part.strip() for part in [*_paragraph_before(lines, i), line])
                if not (_ERROR_WORDS.search(context) or STATUS.search(context) or find_reply_code(context)):
                    continue
            events.append(failure(NAME, address, context))
    return events


_REPLY_LINE = re.compile(r"^.*\b[45]\d\d[ -][45]\.\d{1,3}\.\d{1,3}(?![\d.]).*$", re.MULTILINE)
"""A line with a whole failure reply (code and status), preferred to one that only cites a code;
a transcript's 2xx replies (to MAIL FROM, say) are not what failed."""
_WHOLE_REPLY = re.compile(r"\b([45]\d\d)[ -]([45]\.\d{1,3}\.\d{1,3})(?![\d.])")
_CODE_LINE = re.compile(r"^.*(?:\b[45]\d\d[ -]|(?<![\d.])[45]\.\d{1,3}\.\d{1,3}(?![\d.])).*$", re.MULTILINE)


def error_lines(notice: str) -> str:
    """The lines of a notice that carry an SMTP reply or status code, joined."""
    return " ".join(m.group(0).strip() for m in _CODE_LINE.finditer(notice))


_DELAY_SUBJECT = re.compile(
    r"\bdelay(?:ed)?\b|\bwarning\b|still (?:trying|being retried)|not (?:yet )?(?:been )?delivered yet|"
    r"verz[öo]gert|retard[ée]e?|retrasad[oa]|in ritardo",
    re.IGNORECASE,
)
_DELAY_WORDS = re.compile(
    r"\bwill (?:continue to |automatically )?(?:retry|try again|keep trying|be retried)|\bkeep trying\b|"
    r"\b(?:this is|only) a warning\b|do not need to resend|no action is required|not yet been delivered|"
    r"\bstill (?:trying|being retried)\b",
    re.IGNORECASE,
)
_GAVE_UP = re.compile(
    r"\bgave up\b|\bgiving up\b|permanent(?:ly)? (?:error|failure|fatal|failed)|\bfailed permanently\b|"
    r"will not (?:be )?(?:retr|tr)|not be delivered|could ?n[o']t be delivered|undeliverable",
    re.IGNORECASE,
)


_CONDITIONAL = re.compile(r"\b(?:if|unless|should)\b[^.;\n]*", re.IGNORECASE)
"""A condition ("... returned to you if it cannot be delivered within 5 days"): what may happen,
not what did."""
# Words (lower-case) that each of the patterns above needs in any text it matches: a notice with
# none of them is not searched (these IGNORECASE alternations are tried at every position).
_CONDITIONAL_WORDS = ("if", "unless", "should")
_GAVE_UP_WORDS = ("gave up", "giving up", "permanent", "will not", "not be delivered", "could", "undeliverable")
_DELAY_WORDS_WORDS = (
    "will", "keep trying", "warning", "do not need to resend", "no action is required", "not yet been delivered",
    "still",
)


def _is_delay_notice(subject: str, notice: str) -> bool:
    """A warning that delivery is late and being retried, not a final failure: the subject or the
    notice says so, and nothing says that the sender's server gave up."""
    said = notice[:3000]
    if may_match(said, _CONDITIONAL_WORDS):
        said = _CONDITIONAL.sub("", said)
    if (may_match(said, _GAVE_UP_WORDS) and _GAVE_UP.search(said)) or _GAVE_UP.search(subject):
        return False
    return bool(_DELAY_SUBJECT.search(subject) or (may_match(said, _DELAY_WORDS_WORDS) and _DELAY_WORDS.search(said)))


def _original_recipients(report: Report, own: set[str]) -> list[tuple[str, str]]:
    """(display name, address) of the returned message's To: and Cc: recipients."""
    values = [*report.original_headers.get_all("to"), *report.original_headers.get_all("cc")]
    if not values:
        return []
    from email.utils import getaddresses  # (on first use: with the socket and date modules it imports)

    return [
        (name.strip(), address)
        for name, address in getaddresses(values)
        if ADDRESS.fullmatch(address) and _usable(address, own)
    ]


def _rejoined(notice: str, originals: list[tuple[str, str]]) -> str:
    """The notice with a returned recipient's address that a line wrap split ("...@example.\nnet")
    made whole again."""
    for _, address in originals:
        if address.lower() in notice.lower():
            continue
        split = re.compile(r"(?:[ \t]*\n[ \t]*)?".join(re.escape(c) for c in address), re.IGNORECASE)
        notice = split.sub(address, notice)
    return notice


_FAILED = re.compile(rf"{_VERDICT}|undeliverable|did ?n[o']t reach", re.IGNORECASE)


def _returned_recipients(report: Report, notice: str, own: set[str]) -> list[Event]:
    """A notice that says delivery failed but names no address (only a display name, or nothing):
    the returned message's recipient, when it has one, or those whose display name the notice
    names."""
    originals = _original_recipients(report, own)
    if len(originals) > 1:
        lower = notice.lower()
        originals = [(name, address) for name, address in originals if len(name) > 2 and name.lower() in lower]
    stop = _STOP.search(notice)
    said = one_line(notice[: stop.start()] if stop else notice)
    if not originals or not _FAILED.search(said) or _SUCCESS.search(said):
        return []
    return [failure(NAME, address, said[:2000]) for _, address in originals]


def _layouts(notice: str, own: set[str]) -> Iterator[list[Event]]:
    """What each layout finds, in order; a per-address layout that finds only some of the addresses
    an introduced list names (a wrapped reply line that quotes one of them) gives way to the list."""
    listed = unique(_introduced_list(notice, own))
    named = {e.recipient.lower() for e in listed}
    for layout in (_colon_list, _error_lines):
        events = unique(layout(notice, own))
        if events and not {e.recipient.lower() for e in events} < named:
            yield events
    yield listed
    for layout in (_named_in_sentence, _scattered):
        yield unique(layout(notice, own))


def _with_notice_reply(notice: str, event: Event) -> Event:
    """A notice's lone recipient, with the notice's SMTP reply: a whole reply (code and status) in
    what the notice says about it, else the notice's first whole reply line (which then leads its
    diagnostic), else a cited code added when it has none."""
    own_reply = _WHOLE_REPLY.search(event.diagnostic)
    if own_reply:
        codes = {"status": find_status(own_reply.group(2)), "reply_code": own_reply.group(1)}
        return failure(NAME, event.recipient, event.diagnostic, kind=event.kind, **codes)
    reply = _REPLY_LINE.search(notice)
    if reply:
        line_text = reply.group(0).strip()
        said = event.diagnostic if line_text in event.diagnostic else f"{line_text} {event.diagnostic}"
        codes = {"status": find_status(line_text), "reply_code": find_reply_code(line_text)}
        return failure(NAME, event.recipient, said, kind=event.kind, **codes)
    if not event.status and (line := _CODE_LINE.search(notice)):
        return failure(NAME, event.recipient, f"{event.diagnostic} {line.group(0)}", kind=event.kind)
    return event


def parse(report: Report) -> list[Event] | None:
    notice = report.notice
    if not notice.strip():
        return None
    own = _own_addresses(report)
    notice = _rejoined(notice, _original_recipients(report, own))
    events = next((found for found in _layouts(notice, own) if found), None)
    if events is None:
        events = _returned_recipients(report, notice, own)
    if not events:
        return None
    if len(events) == 1:
        events = [_with_notice_reply(notice, events[0])]
    if _is_delay_notice(report.subject, notice):
        events = [replace(e, kind=EventKind.DELAY, dsn_action="delayed") for e in events]
    return events
