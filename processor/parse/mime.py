"""MIME reading: flanker first, a lenient fallback for the messages flanker rejects.

Both parsers are turned into the same small tree of ``Part`` objects, so that everything after
this module sees one representation. Bodies are decoded lazily: the parts of a report that no
detector looks at (images, the body of the returned original) are never decoded.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.header
import email.message
import email.policy
import quopri
import re
from collections.abc import Callable, Iterator

from processor.parse._flanker import flanker_mime

_FOLD = re.compile(r"\r?\n[ \t]+")
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
_TEXTUAL = frozenset(
    {
        "message/delivery-status",
        "message/global-delivery-status",
        "message/feedback-report",
        "message/disposition-notification",
        "text/rfc822-headers",
        "message/global-headers",
        "message/partial",
    }
)
ENCLOSING = frozenset({"message/rfc822", "message/global", "message/rfc2822"})
HEADER_PARTS = frozenset({"text/rfc822-headers", "message/global-headers"})


class Headers:
    """Case-insensitive, multi-valued, ordered header access. Values are unfolded text."""

    __slots__ = ("_index", "_items")

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = items
        index: dict[str, list[str]] = {}
        for name, value in items:
            index.setdefault(name.lower(), []).append(value)
        self._index = index

    def get(self, name: str, default: str = "") -> str:
        values = self._index.get(name.lower())
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        return self._index.get(name.lower(), [])

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def items(self) -> list[tuple[str, str]]:
        return self._items

    def __len__(self) -> int:
        return len(self._items)


class Part:
    """One MIME entity: its type, headers, decoded text and children, each read on first use.

    For multipart types ``children`` are the sub-parts; for message/rfc822 it holds the enclosed
    message as a single child.
    """

    __slots__ = ("_children", "_headers", "_load_children", "_load_headers", "_load_text", "_text",
                 "content_type", "params")

    def __init__(
        self,
        content_type: str,
        params: dict[str, str],
        headers: Headers | Callable[[], Headers],
        load_text: Callable[[], str] | None,
        children: list[Part] | Callable[[], list[Part]] | None = None,
    ) -> None:
        self.content_type = content_type
        self.params = params
        self._headers: Headers | None = headers if isinstance(headers, Headers) else None
        self._load_headers = None if isinstance(headers, Headers) else headers
        self._load_text = load_text
        self._text: str | None = None
        self._children: list[Part] | None = None if callable(children) else (children or [])
        self._load_children = children if callable(children) else None

    @property
    def headers(self) -> Headers:
        if self._headers is None:
            loader, self._load_headers = self._load_headers, None
            try:
                self._headers = loader() if loader is not None else Headers([])
            except Exception:  # unreadable headers lose the headers, not the message
                self._headers = Headers([])
        return self._headers

    @property
    def children(self) -> list[Part]:
        if self._children is None:
            loader, self._load_children = self._load_children, None
            try:
                self._children = loader() if loader is not None else []
            except RecursionError:
                raise
            except Exception:
                self._children = []
        return self._children

    @property
    def text(self) -> str:
        """The decoded body as text ("" for containers and binary parts)."""
        if self._text is None:
            loader, self._load_text = self._load_text, None
            try:
                self._text = loader() if loader is not None else ""
            except Exception:  # a broken charset or encoding loses the text, not the message
                self._text = ""
        return self._text

    @property
    def main_type(self) -> str:
        return self.content_type.partition("/")[0]

    @property
    def is_multipart(self) -> bool:
        return self.content_type.startswith("multipart/")

    def walk(self, into_enclosed: bool = True) -> Iterator[Part]:
        """This part and every part below it, depth first, in document order."""
        stack: list[Part] = [self]
        while stack:
            part = stack.pop()
            yield part
            if not into_enclosed and part.content_type in ENCLOSING:
                continue
            stack.extend(reversed(part.children))

    def find(self, *content_types: str, into_enclosed: bool = False) -> Part | None:
        for part in self.walk(into_enclosed=into_enclosed):
            if part.content_type in content_types:
                return part
        return None


def normalise_newlines(data: bytes) -> bytes:
    """LF, CRLF and CR-only line endings all become LF."""
    if b"\r" not in data:
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def decode_header_value(value: str) -> str:
    """Unfold and decode RFC 2047 encoded words; never raises."""
    value = _FOLD.sub(" ", value).strip()
    if "=?" not in value or not _ENCODED_WORD.search(value):
        return value
    try:
        chunks = email.header.decode_header(value)
    except Exception:
        return value
    out: list[str] = []
    for chunk, charset in chunks:
        if isinstance(chunk, bytes):
            out.append(_decode_bytes(chunk, charset))
        else:
            out.append(chunk)
    return "".join(out)


def _decode_bytes(raw: bytes, charset: str | None) -> str:
    if charset:
        try:
            return raw.decode(charset, errors="replace")
        except LookupError:
            pass
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


_HEADER_FIELD = re.compile(r"^([!-9;-~]{1,76})[ \t]*:[ \t]*(.*(?:\n[ \t].*)*)", re.MULTILINE)
_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t]*\n)+")
_BLOCK_END = re.compile(r"\n[ \t]*\n")


def parse_header_block(text: str) -> Headers:
    """Parse a block of header lines (text/rfc822-headers, a DSN field block, the head of a part)
    into Headers; the block ends at the first empty line. Lines that are not fields are skipped."""
    text = _LEADING_BLANK_LINES.sub("", text, count=1)
    end = _BLOCK_END.search(text)
    if end:
        text = text[: end.start()]
    items: list[tuple[str, str]] = []
    for name, raw in _HEADER_FIELD.findall(text):
        value = " ".join(raw.split()) if "\n" in raw else raw.strip()
        items.append((name.strip(), decode_header_value(value) if "=?" in value else value))
    return Headers(items)


# ---------------------------------------------------------------------------------------------
# flanker
# ---------------------------------------------------------------------------------------------


def _from_flanker(node: object, depth: int, latin1: bool = False) -> Part:
    ctype_obj = node.content_type  # type: ignore[attr-defined]
    ctype = str(ctype_obj.value or "text/plain").lower()
    params = {str(k).lower(): str(v) for k, v in (ctype_obj.params or {}).items()}

    def headers() -> Headers:
        return _flanker_headers(node)

    children: Callable[[], list[Part]] | None = None
    load: Callable[[], str] | None = None
    if ctype.startswith("multipart/"):
        if depth < MAX_DEPTH:

            def children() -> list[Part]:
                return [_from_flanker(child, depth + 1, latin1) for child in list(node.parts)[:MAX_PARTS]]  # type: ignore[attr-defined]

    elif ctype in ENCLOSING:
        if depth < MAX_DEPTH:

            def children() -> list[Part]:
                enclosed = node.enclosed  # type: ignore[attr-defined]
                return [_from_flanker(enclosed, depth + 1, latin1)] if enclosed is not None else []

        def load() -> str:  # message/global is not a container to flanker: its text is the message
            return _flanker_body(node, part.headers, params.get("charset"), latin1)

    elif ctype.startswith("text/") or ctype in _TEXTUAL or ctype.startswith("message/"):

        def load() -> str:
            return _flanker_body(node, part.headers, params.get("charset"), latin1)

    part = Part(ctype, params, headers, load, children)
    return part


def _flanker_headers(node: object) -> Headers:
    """The part's headers, read straight from the source text (flanker's own header parser
    normalises every value and costs several times more)."""
    container = getattr(node, "_container", None)
    source = getattr(container, "string", None)
    start = getattr(container, "start", None)
    if not isinstance(source, str) or not isinstance(start, int):
        return Headers([(str(n), decode_header_value(str(v))) for n, v in node.headers.items()])  # type: ignore[attr-defined]
    end = getattr(container, "end", None)
    header_end, _ = _split_part(source, start, end + 1 if isinstance(end, int) else len(source))
    return parse_header_block(source[start:header_end])


_FIELD_START = re.compile(r"[!-9;-~]{1,76}[ \t]*:|>?From ")


def _split_part(source: str, start: int, stop: int) -> tuple[int, int]:
    """(end of the header block, start of the body) of the entity ``source[start:stop]``.

    An entity that starts with an empty line has no headers; one whose first line is not a header
    field has none either and lacks the empty line as well (MTAs write such parts: the standard
    library's parser reads them the same way). Otherwise the headers end at the first empty line
    inside the entity, never beyond it.
    """
    if source.startswith("\n", start):
        return start, start + 1
    if not _FIELD_START.match(source, start, stop):
        return start, start
    split = source.find("\n\n", start, stop)
    if split == -1:
        return stop, stop
    return split, split + 2


def _flanker_body(node: object, headers: Headers, charset: str | None, latin1: bool = False) -> str:
    """The part's body as text, read from the source and decoded here (flanker decodes the whole
    message to text once while scanning; its per-part body reader parses the headers again)."""
    container = getattr(node, "_container", None)
    source = getattr(container, "string", None)
    start, end = getattr(container, "start", None), getattr(container, "end", None)
    if not isinstance(source, str) or not isinstance(start, int) or not isinstance(end, int):
        body = node.body  # type: ignore[attr-defined]
        return _decode_bytes(body, charset) if isinstance(body, bytes) else str(body or "")
    _, body = _split_part(source, start, end + 1)
    # a report's prose is a few kilobytes: a part's text is read up to MAX_TEXT characters
    text = source[body : min(end + 1, body + MAX_TEXT)]
    encoding = headers.get("content-transfer-encoding").strip().lower()
    if encoding in ("base64", "quoted-printable"):
        raw = text.encode("ascii", "ignore")
        if encoding == "base64":
            try:
                raw = base64.b64decode(raw + b"==", validate=False)
            except (binascii.Error, ValueError):
                return text
        else:
            raw = quopri.decodestring(raw)
        return _decode_bytes(raw, charset)
    if charset and text.isascii() and charset.lower() not in _ASCII_COMPATIBLE:
        return _decode_bytes(text.encode("ascii"), charset)  # 7-bit charsets such as ISO-2022-JP
    if latin1 and not text.isascii():  # 8-bit text of a message that is not UTF-8: its own charset
        return _decode_bytes(text.encode("latin-1"), charset)
    return text


_ASCII_COMPATIBLE = frozenset({"us-ascii", "ascii", "utf-8", "utf8", "iso-8859-1", "latin-1", "windows-1252"})


# ---------------------------------------------------------------------------------------------
# lenient fallback (the standard library's compat32 parser accepts nearly anything)
# ---------------------------------------------------------------------------------------------


def _from_stdlib(msg: email.message.Message, depth: int) -> Part:
    ctype = msg.get_content_type().lower()
    declared = str(msg.get("Content-Type", "")).lower()
    params: dict[str, str] = {}
    for key, val in msg.get_params(failobj=[]) or []:
        if key and key.lower() != ctype:
            params[key.lower()] = str(val) if not isinstance(val, tuple) else str(val[2])
    items = [(str(k), decode_header_value(str(v))) for k, v in msg.items()]
    payload = msg.get_payload()
    children: list[Part] = []
    load: Callable[[], str] | None = None
    if isinstance(payload, list):
        if depth < MAX_DEPTH:
            children = [
                _from_stdlib(sub, depth + 1) for sub in payload[:MAX_PARTS] if isinstance(sub, email.message.Message)
            ]
        if ctype in ENCLOSING and not children:
            children = []
    else:
        if declared.startswith("multipart/"):
            text = str(payload)
            if text.lstrip().lower().startswith("boundary=") and depth < MAX_DEPTH:
                # the boundary parameter was folded onto a line that lost its indentation
                head, _, body = text.lstrip().partition("\n")
                repaired = email.message_from_string(
                    f"Content-Type: {declared.split(';')[0]}; {head}\n\n{body}", policy=email.policy.compat32
                )
                if isinstance(repaired.get_payload(), list):
                    inner = _from_stdlib(repaired, depth + 1)
                    return Part(ctype, params, Headers(items), None, inner.children)
            # a multipart without (usable) boundaries: keep its whole body as plain text
            ctype = "text/plain"

        def load() -> str:
            raw = msg.get_payload(decode=True)
            if isinstance(raw, bytes):
                return _decode_bytes(raw[:MAX_TEXT], msg.get_content_charset())
            return str(msg.get_payload())[:MAX_TEXT]

        if ctype in ENCLOSING:
            # the enclosed message came through as text: parse it as a message of its own
            text = str(payload)
            enclosed = email.message_from_string(text, policy=email.policy.compat32)
            children = [_from_stdlib(enclosed, depth + 1)] if depth < MAX_DEPTH else []
            load = None
    return Part(ctype, params, Headers(items), load, children)


MAX_TEXT = 1024 * 1024
"""Characters of a part's text that are read (4/3 of that for base64)."""
MAX_DEPTH = 12
MAX_PARTS = 200


_RETURNED_PART = re.compile(
    rb"^content-type:[ \t]*(?:message/(?:rfc822|global|rfc2822)|text/rfc822-headers|message/global-headers)\b",
    re.IGNORECASE | re.MULTILINE,
)
_REPORT_PART = re.compile(
    rb"^content-type:[ \t]*message/(?:delivery-status|global-delivery-status|feedback-report)\b",
    re.IGNORECASE | re.MULTILINE,
)
_TRIM_AT_LEAST = 4096


def trim_returned_body(data: bytes) -> bytes:
    """The message up to the end of the returned original's headers, when the rest is only that
    original's body (which no detector reads, and which MIME-scanning would cost the most time
    and memory for). Returns ``data`` itself when nothing can safely be cut."""
    m = _RETURNED_PART.search(data)
    if m is None or data.find(b"\n\n") > m.start():  # the message's own Content-Type
        return data
    part_body = data.find(b"\n\n", m.end())
    if part_body == -1:
        return data
    original_headers_end = data.find(b"\n\n", part_body + 2)
    if original_headers_end == -1 or len(data) - original_headers_end < _TRIM_AT_LEAST:
        return data
    if _REPORT_PART.search(data, original_headers_end):  # a report part after the original
        return data
    return data[: original_headers_end + 1]


class MimeError(Exception):
    """Neither parser could read the message."""


def read_message(data: bytes) -> tuple[Part, bool]:
    """Parse raw bytes into a Part tree; returns (tree, parsed_by_flanker)."""
    data = normalise_newlines(data)
    # Decoded here, not by flanker: it guesses the charset of non-UTF-8 input with a slow
    # detector, where a byte-for-byte Latin-1 reading loses nothing and each part's declared
    # charset is applied when its text is read.
    try:
        source, latin1 = data.decode("utf-8"), False
    except UnicodeDecodeError:
        source, latin1 = data.decode("latin-1"), True
    try:
        root = flanker_mime().from_string(source)
        return _from_flanker(root, 0, latin1), True
    except RecursionError:
        pass
    except Exception:
        pass
    try:
        msg = email.message_from_bytes(data, policy=email.policy.compat32)
        return _from_stdlib(msg, 0), False
    except RecursionError as exc:
        raise MimeError("message nesting is too deep to parse") from exc
    except Exception as exc:  # pragma: no cover - compat32 accepts nearly anything
        raise MimeError(f"unreadable MIME structure: {exc}") from exc
