"""The analysis context for one message: its parts, the notification text, the DSN fields and
the headers of the original message, each computed once and only when a detector asks."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

from processor.parse.dsn import DsnReport, parse_delivery_status
from processor.parse.mime import ENCLOSING, HEADER_PARTS, Headers, Part, parse_header_block
from processor.parse.text import first_line_search, html_to_text, strip_address

DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")

# A line that introduces the copy of the original message inside a plain-text bounce (a heading,
# not a sentence that goes on about the message: "The original message was received at ...",
# "Your original message to <address> could not ..." wrapped short enough to fit the line).
_ORIGINAL_MARKER = re.compile(
    r"^[ \t]*(?:[-=_*]{2,}[ \t]*)?(?:"
    r"(?:this is a )?copy of (?:the |your )?(?:original |returned )?message"
    r"|(?:the )?original message(?: header| headers)?(?: follows| is (?:following|attached))?"
    r"|(?:the |your )?(?:original |returned |unsent |undelivered )(?:message|mail|e-?mail)"
    r"(?: header| headers)?(?: follows| is attached)?"
    r"|(?:returned|unsent|undeliverable) message(?: follows)?"
    r"|(?:the )?header(?:s)? of (?:the )?original message(?: is following)?"
    r"|message header(?:s)? follows?"
    r"|below this line is a copy of the message"
    r"|original message headers?"
    r"|text of the returned message"
    r"|returned mail(?: follows)?"
    r"|undelivered message headers?"
    r"|content-type: (?:message/rfc822|text/rfc822-headers)"
    r")\b(?![ \t]+(?:was|were|has|had|could|can ?not|can't|that|which|you|to|from|on|at|received|sent)\b)"
    r"[^\n]{0,40}$",
    re.IGNORECASE | re.MULTILINE,
)
_ORIGINAL_MARKER_WORDS = ("copy of", "original", "returned", "unsent", "undeliver", "header", "rfc822")
"""Every line ``_ORIGINAL_MARKER`` matches contains one of these (lower-cased)."""
_NOT_NOTICE = frozenset({"text/html", *HEADER_PARTS})
_INLINE_DSN = re.compile(r"^(?:Final-Recipient|Original-Recipient):[ \t]*\S", re.MULTILINE | re.IGNORECASE)
_INLINE_DSN_END = re.compile(r"^(?:--|Content-Type:)", re.MULTILINE | re.IGNORECASE)
_HEADER_LINE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,40}:[ \t]", re.MULTILINE)
_DSN_FIELDS = re.compile(
    r"\s*(?:Reporting-MTA|Original-Envelope-Id|Arrival-Date|Received-From-MTA|DSN-Gateway|X-[A-Za-z-]+"
    r"|Final-Recipient|Original-Recipient)[ \t]*:"
    r"(?=[\s\S]{0,4000}^(?:Final|Original)-Recipient[ \t]*:)",
    re.IGNORECASE | re.MULTILINE,
)
"""The start of a delivery-status body (RFC 3464 fields), with a recipient's block near."""
_BOUNCE_SENDER = re.compile(
    r"mailer-daemon|postmaster|mail delivery\b|mdaemon|mail ?administrator|"
    r"double-bounce|bounce|daemon@|noreply-dmarc|system administrator|mailadmin|auto-notify|nobody@",
    re.IGNORECASE,
)


_Value = TypeVar("_Value")


class cached_property(Generic[_Value]):
    """functools.cached_property without its lock (Python 3.11 takes one on every first access,
    which costs more than most of the properties here compute): the value is computed on first
    access and stored in the instance, whose attribute then shadows this descriptor. A report is
    read by one thread."""

    def __init__(self, compute: Callable[[Any], _Value]) -> None:
        self._compute = compute
        self._name = compute.__name__
        self.__doc__ = compute.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> cached_property[_Value]: ...
    @overload
    def __get__(self, instance: object, owner: type | None = None) -> _Value: ...
    def __get__(self, instance: object | None, owner: type | None = None) -> _Value | cached_property[_Value]:
        if instance is None:
            return self
        value = instance.__dict__[self._name] = self._compute(instance)
        return value


class Report:
    """One message under analysis. Detectors read it; nothing here writes back to the message."""

    def __init__(self, root: Part) -> None:
        self.root = root
        self.headers: Headers = root.headers
        self.memo: dict[str, Any] = {}
        """What a detector module derived from this report once (its guard's answer, say), kept
        for the next question about the same report: a message is asked twice whether it is a
        complaint, for example."""

    # -- headers of the report itself ---------------------------------------------------------

    @cached_property
    def subject(self) -> str:
        return self.headers.get("subject")

    @cached_property
    def from_header(self) -> str:
        return self.headers.get("from")

    @cached_property
    def from_address(self) -> str:
        return strip_address(self.from_header).lower()

    @cached_property
    def received(self) -> str:
        """All Received headers joined, lower-cased (for cheap 'which MTA made this?' guards)."""
        return "\n".join(self.headers.get_all("received")).lower()

    @cached_property
    def origin_received(self) -> str:
        """The bottom-most Received header, lower-cased: the hop where the report was written.
        Guards read this one, not the receiving site's own Received lines above it."""
        received = self.headers.get_all("received")
        if len(received) < 2 and not (received and received[-1].lower().lstrip().startswith("by ")):
            return ""  # one "from ... by ..." line is the receiving site's, not the writer's
        return received[-1].lower()

    @cached_property
    def head(self) -> str:
        """The start of the notification text, for guards that look for an MTA's banner."""
        return self.text[:2000]

    @cached_property
    def looks_like_bounce_sender(self) -> bool:
        rp = self.headers.get("return-path").strip()
        return (rp in ("<>", "") and "return-path" in self.headers) or bool(
            _BOUNCE_SENDER.search(self.from_header)
        )

    # -- structure ------------------------------------------------------------------------------

    @cached_property
    def top_parts(self) -> list[Part]:
        """Every part of the report, not descending into an enclosed original message. A
        multipart/report's machine-readable part (RFC 6522: after the notice) that an MTA declared
        text/plain is read as the delivery-status part its fields show it is."""
        parts = list(self.root.walk(into_enclosed=False))
        for part in parts:  # (the parameters of the other parts are not read)
            if part.content_type == "multipart/report" and "delivery-status" in part.params.get(
                "report-type", ""
            ).lower():
                for child in part.children[1:]:
                    if child.content_type == "text/plain" and _DSN_FIELDS.match(child.text):
                        child.content_type = "message/delivery-status"
        return parts

    def has_part(self, *content_types: str) -> bool:
        return any(p.content_type in content_types for p in self.top_parts)

    @cached_property
    def dsn(self) -> DsnReport | None:
        """The delivery-status fields of every DSN part, merged; None if the report has none."""
        report: DsnReport | None = None
        for part in self.top_parts:
            if part.content_type in DSN_TYPES:
                report = parse_delivery_status(part.text, report)
        if report is None or not report.recipients:
            inline = self._inline_dsn()
            if inline is not None and inline.recipients:
                return inline
        return report

    def _inline_dsn(self) -> DsnReport | None:
        """Delivery-status fields pasted into a text part (a bounce forwarded as text, or a
        multipart whose structure was lost)."""
        text = self.text
        m = first_line_search(_INLINE_DSN, text, ("final-recipient:", "original-recipient:"), self.text_lower)
        if not m:
            return None
        start = m.start()
        reporting = text.rfind("Reporting-MTA:", max(0, start - 800), start)
        if reporting != -1:
            start = reporting
        end = _INLINE_DSN_END.search(text, m.end())
        return parse_delivery_status(text[start : end.start() if end else len(text)])

    @cached_property
    def text(self) -> str:
        """The human-readable notification: the report's text parts, without the original."""
        plain: list[str] = []
        markup: list[str] = []
        for part in self.top_parts:
            ctype = part.content_type
            if ctype.startswith("text/") and ctype not in _NOT_NOTICE:
                if plain and part.headers.get("content-disposition").lower().startswith("attachment"):
                    continue
                plain.append(part.text)
            elif ctype == "text/html":
                markup.append(part.text)
        if markup and not any(p.strip() for p in plain):  # none, or only empty text stubs
            plain = [html_to_text(m) for m in markup]
        body = "\n".join(plain)
        return body.replace("\r", "")

    @cached_property
    def text_lower(self) -> str:
        """``text.lower()``, made once for the guards and searches that look for words in it."""
        return self.text.lower()

    @cached_property
    def text_split(self) -> tuple[str, str]:
        """(notification, inline original) for bounces that paste the original into the text."""
        m = first_line_search(_ORIGINAL_MARKER, self.text, _ORIGINAL_MARKER_WORDS, self.text_lower)
        if not m:
            return self.text, ""
        return self.text[: m.start()], self.text[m.end() :]

    @property
    def notice(self) -> str:
        """The notification text up to where an inline copy of the original message starts."""
        return self.text_split[0]

    @cached_property
    def prose(self) -> str:
        """The notice with each paragraph's lines joined by single spaces (runs of spaces and tabs
        made one): for patterns over sentences, which a notice wrapped at another width breaks
        between any two words. Paragraphs stay apart (a line break)."""
        return unwrap(self.notice)

    @cached_property
    def original_part(self) -> Part | None:
        for part in self.top_parts:
            if part.content_type in ENCLOSING and part.children:
                return part.children[0]
        return None

    @cached_property
    def original_headers(self) -> Headers:
        """Headers of the original message: enclosed message, a headers part, or inline text."""
        enclosed = self.original_part
        if enclosed is not None and len(enclosed.headers):
            return enclosed.headers
        for part in self.top_parts:
            if part.content_type in HEADER_PARTS:
                if part.children:  # the lenient parser reads a headers part as a message
                    return part.children[0].headers
                return parse_header_block(part.text)
            if part.content_type in ENCLOSING and not part.children:
                return parse_header_block(part.text)
        inline = self.text_split[1]
        if inline:
            m = _HEADER_LINE.search(inline)
            if m and m.start() < 2000:
                return parse_header_block(_single_spaced(inline[m.start() :]))
        return Headers([])


_SPACE_RUN = re.compile(r" [ \t]+|\t[ \t]*")
r"""Two or more spaces and tabs, or one tab (each branch starts with a literal, so the engine
skips to the next space or tab in C; ``[ \t]{2,}|\t`` is tried at every position, 2x the time)."""


def unwrap(text: str) -> str:
    r"""Each paragraph of ``text`` on one line: a line break between two lines that are not blank
    becomes a space, runs of spaces and tabs one space; blank lines stay.

    That is ``re.sub(r"(?<=\S)[ \t]*\n[ \t]*(?=\S)", " ", text)`` and then the runs, done a line
    at a time: a pattern that starts with a look-behind or ``[ \t]*`` is tried at every position
    of the text (tests/parse/test_prechecks.py compares the two on generated texts)."""
    if "\n" in text:
        lines = text.split("\n")
        out: list[str] = []
        line = lines[0]
        for following in lines[1:]:
            before = line.rstrip(" \t")
            after = following.lstrip(" \t")
            if before and after and not before[-1].isspace() and not after[0].isspace():
                line = f"{before} {after}"  # (a break between two lines that are not blank)
            else:
                out.append(line)
                line = following
        out.append(line)
        text = "\n".join(out)
    if "  " not in text and "\t" not in text:
        return text
    return _SPACE_RUN.sub(" ", text)


_DOUBLE_SPACED = re.compile(r"\n\n[A-Za-z][A-Za-z0-9-]{1,40}:[ \t][^\n]*\n\n[A-Za-z][A-Za-z0-9-]{1,40}:[ \t]")
_HEADERS_END = re.compile(r"\n{3,}")


def _single_spaced(block: str) -> str:
    """An inline header block whose lines a reporter double-spaced (dma copies the original's
    CRLF lines and adds its own line end, so every header line is followed by a blank one): one
    blank line between header lines is a line break, two or more end the headers. Any other
    block is returned as it is."""
    first_blank = block.find("\n\n")
    if first_blank == -1 or not _DOUBLE_SPACED.match(block, first_blank):
        return block
    end = _HEADERS_END.search(block, first_blank + 2)
    head = block[: end.start()] if end else block
    return head.replace("\n\n", "\n") + "\n\n"
