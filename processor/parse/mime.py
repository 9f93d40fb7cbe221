"""MIME reading: one engine, one small ``Part`` tree for the detectors.

The engine is fast-mail-parser's lazy tree (compiled; measured against flanker and the standard
library's parser in tests/bench/mime_bench.py, see the README). A part's headers, children and
text are each built on first use, so the parts no detector looks at (images, the returned
original's body) are never decoded. The standard library's lenient compat32 reading is used only
for what the engine cannot read: a message it refuses, a multipart without usable boundaries, or
a damaged base64 body. flanker stays the project's address parser (processor.addresses).
"""

from __future__ import annotations

import base64
import binascii
import email
import email.header
import quopri
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from fast_mail_parser import ParseError as EngineError
from fast_mail_parser import parse_email_tree

if TYPE_CHECKING:
    import email.message

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

    __slots__ = ("_count", "_grouped", "_index", "_items")

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items: list[tuple[str, str]] | None = items
        self._grouped: dict[str, list[str]] | None = None
        self._count = len(items)
        index: dict[str, list[str]] = {}
        for name, value in items:
            index.setdefault(name.lower(), []).append(value)
        self._index = index

    @classmethod
    def indexed(cls, items: list[tuple[str, str]], index: dict[str, list[str]]) -> Headers:
        """``Headers(items)`` for a caller that built the index (``items``' values by lower-case
        name, in order) along with the list."""
        self = cls.__new__(cls)
        self._items = items
        self._grouped = None
        self._count = len(items)
        self._index = index
        return self

    @classmethod
    def grouped(cls, grouped: dict[str, list[str]]) -> Headers:
        """Headers from values grouped by name (the MIME engine's form): the same as
        ``Headers([(name, value) for name, values in grouped.items() for value in values])``,
        without building that list unless ``items()`` is asked for."""
        self = cls.__new__(cls)
        index = {name.lower(): [*values] for name, values in grouped.items()}
        if len(index) != len(grouped) or not all(index.values()):  # names that differ in case only, or no value
            index = {}
            for name, values in grouped.items():
                if not values:
                    continue
                key = name.lower()
                found = index.get(key)
                if found is None:
                    index[key] = list(values)
                else:
                    found.extend(values)
        self._index = index
        self._grouped = grouped
        self._items = None
        self._count = sum(map(len, grouped.values()))
        return self

    def get(self, name: str, default: str = "") -> str:
        values = self._index.get(name.lower())
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        return self._index.get(name.lower(), [])

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def has_any(self, names: frozenset[str]) -> bool:
        """Whether any of ``names`` (lower-case) is present: ``any(n in self for n in names)`` in
        one set operation."""
        return not self._index.keys().isdisjoint(names)

    def items(self) -> list[tuple[str, str]]:
        if self._items is None:
            grouped = self._grouped or {}
            self._items = [(name, value) for name, values in grouped.items() for value in values]
        return self._items

    def __len__(self) -> int:
        return self._count


class Part:
    """One MIME entity: its type, headers, decoded text and children, each read on first use.

    For multipart types ``children`` are the sub-parts; for message/rfc822 it holds the enclosed
    message as a single child.
    """

    __slots__ = ("_children", "_headers", "_load_children", "_load_headers", "_load_text", "_params", "_text",
                 "content_type")

    def __init__(
        self,
        content_type: str,
        params: dict[str, str],
        headers: Headers | Callable[[], Headers],
        load_text: Callable[[], str] | None,
        children: list[Part] | Callable[[], list[Part]] | None = None,
    ) -> None:
        self.content_type = content_type
        self._params: dict[str, str] | None = params
        self._headers: Headers | None = headers if isinstance(headers, Headers) else None
        self._load_headers = None if isinstance(headers, Headers) else headers
        self._load_text = load_text
        self._text: str | None = None
        self._children: list[Part] | None = None if callable(children) else (children or [])
        self._load_children = children if callable(children) else None

    @property
    def params(self) -> dict[str, str]:
        """The Content-Type parameters, names lower-cased and values unquoted."""
        params = self._params
        if params is None:
            params = self._params = self._read_params()
        return params

    @property
    def headers(self) -> Headers:
        headers = self._headers
        if headers is None:
            try:
                headers = self._read_headers()
            except Exception:  # unreadable headers lose the headers, not the message
                headers = Headers([])
            self._headers = headers
        return headers

    @property
    def children(self) -> list[Part]:
        children = self._children
        if children is None:
            self._children = []  # read once: after a RecursionError the part has no children
            try:
                children = self._read_children()
            except RecursionError:
                raise
            except Exception:
                children = []
            self._children = children
        return children

    @property
    def text(self) -> str:
        """The decoded body as text ("" for containers and binary parts)."""
        text = self._text
        if text is None:
            try:
                text = self._read_text()
            except Exception:  # a broken charset or encoding loses the text, not the message
                text = ""
            self._text = text
        return text

    # what the properties read on first use (a subclass reads them from its own source)

    def _read_params(self) -> dict[str, str]:
        return {}

    def _read_headers(self) -> Headers:
        loader, self._load_headers = self._load_headers, None
        return loader() if loader is not None else Headers([])

    def _read_children(self) -> list[Part]:
        loader, self._load_children = self._load_children, None
        return loader() if loader is not None else []

    def _read_text(self) -> str:
        loader, self._load_text = self._load_text, None
        return loader() if loader is not None else ""

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
    index: dict[str, list[str]] = {}
    for name, raw in _HEADER_FIELD.findall(text):  # (a name has no white space to strip)
        value = " ".join(raw.split()) if "\n" in raw else raw.strip()
        if "=?" in value:
            value = decode_header_value(value)
        items.append((name, value))
        key = name.lower()
        found = index.get(key)
        if found is None:
            index[key] = [value]
        else:
            found.append(value)
    return Headers.indexed(items, index)


# ---------------------------------------------------------------------------------------------
# the MIME engine: fast-mail-parser's lazy tree (compiled; chosen on numbers, see the README)
# ---------------------------------------------------------------------------------------------

_FIELD_NAME = re.compile(r"[!-9;-~]{1,76}\Z")
_PARAM = re.compile(r';\s*([!#-\'*+.0-9A-Za-z^_`{|}~-]+)\s*=\s*("[^"\\]*(?:\\.[^"\\]*)*"|[^;\s]*)')
r"""A parameter; a quoted value is read a run of plain characters at a time ("(?:[^"\\]|\\.)*", its
equal, takes a branch per character: 2x the time on a long boundary)."""


def content_type_params(value: str) -> dict[str, str]:
    """The parameters of a Content-Type value, names lower-cased and values unquoted."""
    params: dict[str, str] = {}
    for name, raw in _PARAM.findall(value):
        quoted = raw.startswith('"') and raw.endswith('"') and len(raw) > 1
        params.setdefault(name.lower(), raw[1:-1].replace('\\"', '"').replace("\\\\", "\\") if quoted else raw)
    return params


def _declared_type(raw_headers: dict[str, list[str]]) -> str:
    """The first Content-Type value of a node's headers ('' if none); the names are compared
    without case only when their length can match."""
    for name, values in raw_headers.items():
        if len(name) == 12 and name.lower() == "content-type":
            return values[0]
    return ""


def _first_value(raw_headers: dict[str, list[str]], name: str) -> str:
    """``Headers.grouped(raw_headers).get(name)`` for a lower-case ``name``, without the index."""
    size = len(name)
    for key, values in raw_headers.items():
        if values and len(key) == size and key.lower() == name:
            return values[0]
    return ""


class _FastPart(Part):
    """A Part over one node of fast-mail-parser's lazy tree; nothing is decoded until asked: the
    parameters, headers, children and text are each read from the node on first use.

    ``enclosing`` is set for the top of an enclosed original: its headers are read from the
    enclosing part's text instead, where the lenient block reader keeps the fields after a broken
    line (the engine stops there)."""

    __slots__ = ("_enclosing", "_lenient", "_node", "_path", "_raw")

    def __init__(
        self, node: Any, path: tuple[int, ...], lenient: _LenientBodies | None, enclosing: Part | None = None
    ) -> None:
        self.content_type = str(node.content_type or "text/plain").lower()
        self._raw: dict[str, list[str]] = node.headers
        self._node = node
        self._path = path
        self._lenient = lenient
        self._enclosing = enclosing
        self._params = None
        self._headers = None
        self._children = None
        self._text = None

    def _read_params(self) -> dict[str, str]:
        declared = _declared_type(self._raw)
        return content_type_params(declared) if ";" in declared else {}

    def _read_headers(self) -> Headers:
        if self._enclosing is not None:
            return parse_header_block(self._enclosing.text)
        return Headers.grouped(self._raw)

    def _read_children(self) -> list[Part]:
        ctype, path = self.content_type, self._path
        if len(path) >= MAX_DEPTH:
            return []
        if ctype.startswith("multipart/"):
            lenient = self._lenient
            return [_FastPart(child, (*path, i), lenient) for i, child in enumerate(self._node.children[:MAX_PARTS])]
        if ctype in ENCLOSING:
            node = self._node
            if node.is_message:
                return [_FastPart(child, (*path, 0), self._lenient, self) for child in node.children[:1]]
            content = node.content  # message/global and message/rfc2822: parsed here
            if not content:
                return []
            return [_FastPart(parse_email_tree(content, mode="lazy"), (*path, 0), None)]
        return []

    def _read_text(self) -> str:
        ctype = self.content_type
        if ctype.startswith("multipart/") or not (
            ctype in ENCLOSING or ctype.startswith(("text/", "message/")) or ctype in _TEXTUAL
        ):
            return ""
        if self._enclosing is None and self._headers is None:  # the node's own headers: one field of them
            encoding = _first_value(self._raw, "content-transfer-encoding")
        else:
            encoding = self.headers.get("content-transfer-encoding")
        return _fast_text(self._node, encoding, self.params.get("charset"), self._path, self._lenient)


def _fast_text(
    node: Any, declared: str, charset: str | None, path: tuple[int, ...], lenient: _LenientBodies | None
) -> str:
    """The part's body as text: transfer-decoded by the engine, the charset applied here."""
    try:
        raw: bytes | None = node.content
    except EngineError:  # a damaged base64 or quoted-printable body: what can be read of it
        return lenient.text(path, charset) if lenient is not None else ""
    if not raw:
        return ""
    raw = raw[:MAX_TEXT]
    encoding = transfer_encoding(declared)
    if encoding in ("base64", "quoted-printable"):
        if declared.lower() != encoding:  # the engine decodes only the bare word: "base64 " it leaves
            raw = transfer_decode(raw, encoding)
        return _decode_bytes(raw, charset)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:  # 8-bit text that is not UTF-8: its own charset, else Latin-1
        return _decode_bytes(raw, charset)
    if charset and text.isascii() and charset.lower() not in _ASCII_COMPATIBLE:
        return _decode_bytes(raw, charset)  # 7-bit charsets such as ISO-2022-JP
    return text


_CTE_COMMENT = re.compile(r"\([^()]*\)")


def transfer_encoding(value: str) -> str:
    """The mechanism a Content-Transfer-Encoding value names, lower-cased: white space around the
    word and an RFC 822 comment ("base64 (binary)") are not part of it."""
    if "(" in value:
        value = _CTE_COMMENT.sub(" ", value)
    return value.strip().lower()


def transfer_decode(raw: bytes, encoding: str) -> bytes:
    """A base64 or quoted-printable body decoded as leniently as mail readers do (characters
    outside the base64 alphabet and missing padding are ignored, and so is white space at the end
    of a quoted-printable line); other encodings unchanged."""
    if encoding == "base64":
        try:
            return base64.b64decode(re.sub(rb"[^A-Za-z0-9+/]", b"", raw) + b"==", validate=False)
        except (binascii.Error, ValueError):
            return raw
    if encoding == "quoted-printable":  # RFC 2045 6.7 (3): white space at a line end was added in transport
        return quopri.decodestring(_LINE_END_SPACE.sub(b"", raw) if b" \n" in raw or b"\t\n" in raw else raw)
    return raw


_LINE_END_SPACE = re.compile(rb"[ \t]+(?=\r?\n)")


_ASCII_COMPATIBLE = frozenset({"us-ascii", "ascii", "utf-8", "utf8", "iso-8859-1", "latin-1", "windows-1252"})


def _headerless_part_boundaries(root: Any) -> list[str] | None:
    """The boundaries under which a part starts with a line that is not a header field (the
    engine takes that text for header names; MTAs mean a part without headers), [] when there
    is no such part, or None when the structure is beyond repair here (a multipart without
    usable boundaries: the engine drops its body)."""
    stack: list[tuple[Any, str, bool]] = [(root, "", False)]
    boundaries: list[str] = []
    seen = 0
    while stack and seen < MAX_PARTS * 4:
        node, boundary, enclosed = stack.pop()
        seen += 1
        if boundary and any(not _FIELD_NAME.match(name) for name in node.headers):
            boundaries.append(boundary)
        children = node.children
        if str(node.content_type).lower().startswith("multipart/"):
            if not children:
                if enclosed:  # the returned original's own structure: no detector reads it
                    continue
                return None
            declared = _declared_type(node.headers)
            inner = content_type_params(declared).get("boundary", "")
            stack.extend((child, inner, enclosed) for child in children)
        else:
            stack.extend((child, "", True) for child in children)
    return boundaries


_MAYBE_HEADERLESS_PART = re.compile(rb"^--[^\n]*\n(?![!-9;-~]{1,76}[ \t]*:|\n|--)", re.MULTILINE)
"""A line that may be a boundary delimiter, followed by one that is no header field: only then is
the tree walked to look for parts without headers."""


_MAYBE_HEADERLESS_PART_AFTER_BREAK = re.compile(rb"\n--[^\n]*\n(?![!-9;-~]{1,76}[ \t]*:|\n|--)")
"""``_MAYBE_HEADERLESS_PART`` after a line break: "\n--" is a literal prefix the regex engine skips
to in C (``^`` is tried at every position; a find() loop in Python costs twice the search)."""


def _maybe_headerless_part(data: bytes) -> bool:
    """``_MAYBE_HEADERLESS_PART.search(data)``, tried only at the lines that start with "--"."""
    if data.startswith(b"--") and _MAYBE_HEADERLESS_PART.match(data):
        return True
    return _MAYBE_HEADERLESS_PART_AFTER_BREAK.search(data) is not None


def _separate_headerless_parts(data: bytes, boundaries: list[str]) -> bytes:
    """The message with an empty line after each delimiter of ``boundaries`` whose next line is
    not a header field, so that such a part reads as one without headers."""
    for boundary in set(boundaries):
        delimiter = re.compile(
            rb"^(--" + re.escape(boundary.encode("utf-8", "replace")) + rb"[ \t]*\n)(?![!-9;-~]{1,76}[ \t]*:|\n)",
            re.MULTILINE,
        )
        data = delimiter.sub(rb"\1\n", data)
    return data


# ---------------------------------------------------------------------------------------------
# lenient fallback (the standard library's compat32 parser accepts nearly anything)
# ---------------------------------------------------------------------------------------------


def _compat32() -> Any:
    """The standard library's compat32 policy, its message module imported with it: on first use,
    not at import (email.message and email.policy, with the address and date helpers they bring,
    are ~8% of a ``parse`` start-up's instructions, for the ~2% of bounces that need them)."""
    import email.message
    import email.policy

    return email.policy.compat32


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
                    f"Content-Type: {declared.split(';')[0]}; {head}\n\n{body}", policy=_compat32()
                )
                if isinstance(repaired.get_payload(), list):
                    inner = _from_stdlib(repaired, depth + 1)
                    return Part(ctype, params, Headers(items), None, inner.children)
            # a multipart without (usable) boundaries: keep its whole body as plain text
            ctype = "text/plain"

        def load() -> str:
            declared = str(msg.get("content-transfer-encoding", ""))
            encoding = transfer_encoding(declared)
            if declared.lower() != encoding and encoding in ("base64", "quoted-printable") and isinstance(payload, str):
                # get_payload(decode=True) decodes only the bare word
                raw: Any = transfer_decode(payload[: MAX_TEXT * 4 // 3].encode("ascii", "ignore"), encoding)
            else:
                raw = msg.get_payload(decode=True)
            if isinstance(raw, bytes):
                return _decode_bytes(raw[:MAX_TEXT], msg.get_content_charset())
            return str(msg.get_payload())[:MAX_TEXT]

        if ctype in ENCLOSING:
            # the enclosed message came through as text: parse it as a message of its own
            text = str(payload)
            enclosed = email.message_from_string(text, policy=_compat32())
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


_FOLDED_SCAN_LIMIT = 1024 * 1024
"""Up to this size a message is searched in a lower-cased copy (find() is far faster than a
case-insensitive regex over every line); a bigger one is searched by the regex alone."""


def _line_search(
    pattern: re.Pattern[bytes], data: bytes, folded: bytes | None, start: int = 0
) -> re.Match[bytes] | None:
    """``pattern.search(data, start)`` for a MULTILINE pattern that can only match at the start
    of a line that starts with ``content-type:`` (in any case). ``folded`` is ``data.lower()``
    (bytes patterns fold ASCII only, as bytes.lower() does), or None to use the regex alone."""
    if folded is None:
        return pattern.search(data, start)
    pos = folded.find(b"content-type:", start)
    while pos != -1:
        if pos == 0 or folded[pos - 1] == 10:  # at a line start (b"\n")
            m = pattern.match(data, pos)
            if m is not None:
                return m
        pos = folded.find(b"content-type:", pos + 1)
    return None


def trim_returned_body(data: bytes) -> bytes:
    """The message up to the end of the returned original's headers, when the rest is only that
    original's body (which no detector reads, and which MIME-scanning would cost the most time
    and memory for). Returns ``data`` itself when nothing can safely be cut."""
    folded = data.lower() if len(data) <= _FOLDED_SCAN_LIMIT else None
    m = _line_search(_RETURNED_PART, data, folded)
    if m is None or data.find(b"\n\n") > m.start():  # the message's own Content-Type
        return data
    part_body = data.find(b"\n\n", m.end())
    if part_body == -1:
        return data
    original_headers_end = data.find(b"\n\n", part_body + 2)
    if original_headers_end == -1 or len(data) - original_headers_end < _TRIM_AT_LEAST:
        return data
    if _line_search(_REPORT_PART, data, folded, original_headers_end):  # a report part after the original
        return data
    return data[: original_headers_end + 1]


class MimeError(Exception):
    """Neither the engine nor the lenient reader could read the message."""


def read_message(data: bytes) -> Part:
    """Parse raw bytes into a Part tree: fast-mail-parser's lazy tree, or the standard library's
    lenient compat32 reading for the few messages whose structure the engine cannot read."""
    data = normalise_newlines(data)

    try:
        root = parse_email_tree(data, mode="lazy")
    except (EngineError, ValueError, RecursionError):
        root = None
    if root is not None:
        boundaries = _headerless_part_boundaries(root) if _maybe_headerless_part(data) else []
        if not boundaries and not root.children and str(root.content_type).lower().startswith("multipart/"):
            boundaries = None
        if boundaries:
            try:
                root = parse_email_tree(_separate_headerless_parts(data, boundaries), mode="lazy")
                boundaries = _headerless_part_boundaries(root)
            except (EngineError, ValueError, RecursionError):
                boundaries = None
        if boundaries == []:
            return _FastPart(root, (), _LenientBodies(data))
    try:
        msg = email.message_from_bytes(data, policy=_compat32())
        return _from_stdlib(msg, 0)
    except RecursionError as exc:
        raise MimeError("message nesting is too deep to parse") from exc
    except Exception as exc:  # pragma: no cover - compat32 accepts nearly anything
        raise MimeError(f"unreadable MIME structure: {exc}") from exc


class _LenientBodies:
    """The standard library's reading of one message, made only if the engine refuses to
    transfer-decode a part (damaged base64): the same part is found there by its position."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._tree: email.message.Message | None = None

    def text(self, path: tuple[int, ...], charset: str | None) -> str:
        if self._tree is None:
            self._tree = email.message_from_bytes(self._data, policy=_compat32())
        node = self._tree
        for index in path:
            payload = node.get_payload()
            child = payload[index] if isinstance(payload, list) and index < len(payload) else None
            if not isinstance(child, email.message.Message):
                return ""
            node = child
        body = node.get_payload()
        if not isinstance(body, str):
            return ""
        raw = body[: MAX_TEXT * 4 // 3].encode("ascii", "ignore")
        encoding = transfer_encoding(str(node.get("content-transfer-encoding", "")))
        return _decode_bytes(transfer_decode(raw, encoding)[:MAX_TEXT], charset)
