"""Metamorphic check: the same notice in another format must give the same verdicts.

    python tests/bench/variants.py [CORPUS_OR_DIR ...] [--only NAME[,NAME]] [--show NAME:FILE]

CORPUS_OR_DIR: a labelled corpus (its messages/*.eml), or any directory (every *.eml below it);
default: samples/ and ../shared/corpus/sisimai-train and crisp-train next to the project.

For every message, each TRANSFORMS entry makes a variant that a real mail system could have
produced for the same notice (other line endings, the notice re-encoded as quoted-printable or
base64, the prose re-wrapped, headers and delivery-status fields re-folded, charset labels, the
report's parts declared with the types some MTAs use, ...). A transformation that does not apply
to a message (no such part, or nothing would change) is not counted for it. The original and each
variant are parsed with processor.parse.Parser and classified with the default rules, as
``bounce-processor parse`` does, and their outcomes compared: which events (recipient, status,
reason, bounce type) came out. Prints, per transformation and directory, how many variants kept
the original's outcome and the files whose outcome changed.

``--show NAME:FILE`` prints one variant and both outcomes (to see what a transformation did).
A variant is an honest re-encoding: the bytes of every part decode to the same text (or, for the
re-wrapping and re-folding transformations, the same words) as before.
"""

from __future__ import annotations

import argparse
import base64
import quopri
import re
import sys
import textwrap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
if str(PROJECT) not in sys.path:
    sys.path.insert(0, str(PROJECT))

from processor.classify import load_classifier  # noqa: E402
from processor.parse import ParseError, Parser  # noqa: E402

SHARED = PROJECT.parent.parent / "shared" if (PROJECT.parent.parent / "shared").is_dir() else PROJECT.parent / "shared"
DEFAULT_DIRS = (PROJECT / "samples", SHARED / "corpus" / "sisimai-train", SHARED / "corpus" / "crisp-train")

# ---------------------------------------------------------------------------------------------
# a lossless MIME tree over the message's text (bytes read as Latin-1, LF line ends)
# ---------------------------------------------------------------------------------------------

_FIELD = re.compile(r"[!-9;-~]+[ \t]*:")
_PARAM = re.compile(r';\s*([!#-\'*+.0-9A-Za-z^_`{|}~-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)')


@dataclass
class Node:
    """One entity: its header fields (raw, folds kept), and its body: text, sub-parts or an
    enclosed message. ``str(node)`` gives back exactly the text it was read from."""

    fields: list[str]
    body: str
    has_head: bool = True
    preamble: str = ""
    parts: list[tuple[str, Node]] = field(default_factory=list)
    closing: str | None = None
    enclosed: Node | None = None

    @property
    def content_type(self) -> str:
        value = self.get("content-type")
        return (value.split(";", 1)[0].strip().lower() or "text/plain") if value else "text/plain"

    @property
    def cte(self) -> str:
        return self.get("content-transfer-encoding").strip().lower()

    def get(self, name: str) -> str:
        for f in self.fields:
            if f.split(":", 1)[0].strip().lower() == name:
                return " ".join(f.split(":", 1)[1].split())
        return ""

    def set(self, name: str, value: str) -> None:
        """Replace the field (keeping its place and its name's spelling) or append it."""
        for i, f in enumerate(self.fields):
            if f.split(":", 1)[0].strip().lower() == name.lower():
                self.fields[i] = f"{f.split(':', 1)[0]}: {value}"
                return
        self.fields.append(f"{name}: {value}")
        self.has_head = True

    def remove(self, name: str) -> None:
        self.fields = [f for f in self.fields if f.split(":", 1)[0].strip().lower() != name.lower()]

    def serialise_body(self) -> str:
        if self.enclosed is not None:
            return str(self.enclosed)
        if not self.parts and self.closing is None:
            return self.body
        out = [self.preamble]
        for delimiter, part in self.parts:
            out.append(delimiter + "\n" + str(part) + "\n")
        if self.closing is not None:
            out.append(self.closing)
        else:
            out[-1] = out[-1][:-1]
        return "".join(out)

    def __str__(self) -> str:
        if not self.has_head:
            return self.serialise_body()
        head = "".join(f + "\n" for f in self.fields)
        return head + "\n" + self.serialise_body()

    def walk(self, into_enclosed: bool = False) -> Iterable[Node]:
        yield self
        for _, part in self.parts:
            yield from part.walk(into_enclosed)
        if into_enclosed and self.enclosed is not None:
            yield from self.enclosed.walk(into_enclosed)


def boundary_of(node: Node) -> str:
    for name, raw in _PARAM.findall(node.get("content-type")):
        if name.lower() == "boundary":
            return raw[1:-1] if raw.startswith('"') and raw.endswith('"') and len(raw) > 1 else raw
    return ""


def read(text: str, depth: int = 0) -> Node:
    """The tree of one entity (headers, blank line, body)."""
    if text.startswith("\n"):
        node = Node([], text[1:])
    else:
        end = text.find("\n\n")
        head, body = (text, "") if end == -1 else (text[:end], text[end + 2 :])
        lines = head.split("\n")
        if not _FIELD.match(lines[0]):
            return Node([], text, has_head=False)
        fields: list[str] = []
        for line in lines:
            if fields and (line[:1] in (" ", "\t") or not _FIELD.match(line)):
                fields[-1] += "\n" + line
            else:
                fields.append(line)
        node = Node(fields, body)
        if end == -1:
            node.body = ""
            if not text.endswith("\n"):
                return node
    if depth > 8:
        return node
    ctype = node.content_type
    if ctype.startswith("multipart/") and boundary_of(node):
        _split_multipart(node, boundary_of(node), depth)
    elif ctype in ("message/rfc822", "message/global") and node.cte in ("", "7bit", "8bit", "binary"):
        node.enclosed = read(node.body, depth + 1)
        if str(node.enclosed) != node.body:
            node.enclosed = None
    return node


def _split_multipart(node: Node, boundary: str, depth: int) -> None:
    delimiter = re.compile(r"^--" + re.escape(boundary) + r"(--)?[ \t]*$", re.MULTILINE)
    body = node.body
    matches = list(delimiter.finditer(body))
    if not matches or matches[0].group(1):
        return
    node.preamble = body[: matches[0].start()]
    parts: list[tuple[str, Node]] = []
    closing: str | None = None
    for i, m in enumerate(matches):
        if m.group(1):
            closing = body[m.start() :]
            break
        nxt = matches[i + 1].start() - 1 if i + 1 < len(matches) else len(body)
        content = body[m.end() + 1 : nxt] if m.end() < len(body) else ""
        if i + 1 == len(matches):
            content = body[m.end() + 1 :]
        parts.append((m.group(0), read(content, depth + 1)))
    node.parts, node.closing = parts, closing
    if str(node) and node.serialise_body() != body:  # not read losslessly: leave it as text
        node.parts, node.closing, node.preamble = [], None, ""


# ---------------------------------------------------------------------------------------------
# the transformations
# ---------------------------------------------------------------------------------------------

Transform = Callable[[Node], bool]
"""Changes the tree in place; False when it does not apply to this message."""


def notice_part(root: Node) -> Node | None:
    """The human-readable notice: the report's first text/plain part (the root for a plain
    message), never a part of the returned message."""
    for node in root.walk():
        if node.parts or node.enclosed is not None:
            continue
        if node is not root and not node.has_head:
            continue
        if node.content_type == "text/plain" and "attachment" not in node.get("content-disposition").lower():
            return node
    return None


def decoded(node: Node) -> bytes | None:
    raw = node.body.encode("latin-1")
    cte = node.cte
    if cte in ("", "7bit", "8bit", "binary"):
        return raw
    if cte == "quoted-printable":
        return quopri.decodestring(raw)
    if cte == "base64":
        try:
            return base64.b64decode(re.sub(rb"[^A-Za-z0-9+/=]", b"", raw), validate=False)
        except ValueError:
            return None
    return None


def encode_as(node: Node, data: bytes, cte: str) -> None:
    if cte == "quoted-printable":
        text = quopri.encodestring(data).decode("ascii")
    elif cte == "base64":
        text = base64.encodebytes(data).decode("ascii")
    else:
        text = data.decode("latin-1")
    node.body = text
    node.set("Content-Transfer-Encoding", cte)


def _reencode(cte: str, canonical: bool = False) -> Transform:
    def apply(root: Node) -> bool:
        node = notice_part(root)
        if node is None or node.cte == cte:
            return False
        data = decoded(node)
        if data is None or not data.strip():
            return False
        if canonical:  # RFC 2045: text is put in canonical form (CRLF) before base64
            data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        encode_as(node, data, cte)
        return True

    return apply


def declare_8bit(root: Node) -> bool:
    changed = False
    for node in root.walk():
        if node.parts or node.enclosed is not None or (node is not root and not node.has_head):
            continue
        if node.cte in ("", "7bit") and node.content_type.startswith(("text/", "message/")):
            node.set("Content-Transfer-Encoding", "8bit")
            changed = True
    return changed


def flip_charset(root: Node) -> bool:
    """us-ascii <-> utf-8 on every text part of the report whose text is pure ASCII."""
    changed = False
    for node in root.walk():
        if node.parts or node.enclosed is not None or not node.content_type.startswith("text/"):
            continue
        if node is not root and not node.has_head:
            continue
        data = decoded(node)
        if data is None or not data.isascii():
            continue
        value = node.get("content-type")
        charset = next((raw.strip('"').lower() for name, raw in _PARAM.findall(value) if name.lower() == "charset"), "")
        if charset in ("", "us-ascii", "ascii"):
            new = "utf-8"
        elif charset in ("utf-8", "utf8"):
            new = "us-ascii"
        else:
            continue
        base = re.sub(r';\s*charset\s*=\s*("[^"]*"|[^;\s]*)', "", value, flags=re.IGNORECASE) if value else "text/plain"
        node.set("Content-Type", f'{base}; charset="{new}"')
        changed = True
    return changed


# -- folding ---------------------------------------------------------------------------------------


def unfold(field_text: str) -> str:
    """RFC 5322 unfolding: a line break before white space goes; the white space stays."""
    return re.sub(r"\n(?=[ \t])", "", field_text)


def fold(field_text: str, width: int) -> str:
    """Fold at white space (a line break inserted before a space or tab) so that lines stay
    within ``width`` where the words allow: unfolding gives back the same field."""
    flat = unfold(field_text)
    lines: list[str] = []
    line = ""
    for token in re.findall(r"[ \t]*[^ \t]+|[ \t]+$", flat):
        if line and len(line) + len(token) > width and token[:1] in (" ", "\t") and line.strip():
            lines.append(line)
            line = token
        else:
            line += token
    lines.append(line)
    return "\n".join(lines)


def _refold_fields(nodes: Iterable[Node], width: int, names: frozenset[str] | None = None) -> bool:
    changed = False
    for node in nodes:
        for i, f in enumerate(node.fields):
            if names is not None and f.split(":", 1)[0].strip().lower() not in names:
                continue
            new = fold(f, width) if width else unfold(f)
            if new != f:
                node.fields[i] = new
                changed = True
    return changed


def _message_heads(root: Node) -> list[Node]:
    """The report's own header and the returned message's."""
    heads = [root]
    for node in root.walk():
        if node.enclosed is not None:
            heads.append(node.enclosed)
    return heads


def refold_headers(width: int) -> Transform:
    names = frozenset({"subject", "to", "from", "cc", "content-type", "received", "x-failed-recipients"})
    return lambda root: _refold_fields(_message_heads(root), width, names)


# -- delivery-status fields ------------------------------------------------------------------------

_DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")


def _dsn_parts(root: Node) -> list[Node]:
    return [n for n in root.walk() if n.content_type in _DSN_TYPES and n.cte in ("", "7bit", "8bit", "binary")]


def _refold_dsn(width: int) -> Transform:
    """Each field of each delivery-status block unfolded, then re-folded at ``width`` (0: one
    line each); the blank lines between the blocks stay."""

    def apply(root: Node) -> bool:
        changed = False
        for node in _dsn_parts(root):
            blocks = re.split(r"(\n[ \t]*\n)", node.body)
            for b in range(0, len(blocks), 2):
                lines = blocks[b].split("\n")
                fields: list[str] = []
                for line in lines:
                    if fields and line[:1] in (" ", "\t"):
                        fields[-1] += "\n" + line
                    else:
                        fields.append(line)
                new = [fold(f, width) if width else unfold(f) for f in fields]
                if new != fields:
                    blocks[b] = "\n".join(new)
                    changed = True
            node.body = "".join(blocks)
        return changed

    return apply


def dsn_as_text(root: Node) -> bool:
    nodes = [n for n in root.walk() if n.content_type in _DSN_TYPES]
    for node in nodes:
        node.set("Content-Type", 'text/plain; charset="us-ascii"')
    return bool(nodes)


def report_as_mixed(root: Node) -> bool:
    nodes = [n for n in root.walk() if n.content_type == "multipart/report"]
    for node in nodes:
        node.set("Content-Type", f'multipart/mixed; boundary="{boundary_of(node)}"')
    return bool(nodes)


def returned_headers_type(root: Node) -> bool:
    """The returned message as text/rfc822-headers (its headers only) instead of message/rfc822,
    or the other way round."""
    changed = False
    for node in root.walk():
        if not any(p.content_type in _DSN_TYPES for p in root.walk()):
            break  # an enclosed message that is no returned original (a forwarded report) stays
        if node.enclosed is not None and node.enclosed.has_head:
            node.set("Content-Type", "text/rfc822-headers")
            node.body = "".join(f + "\n" for f in node.enclosed.fields)
            node.enclosed = None
            changed = True
        elif node.content_type == "text/rfc822-headers" and node.cte in ("", "7bit", "8bit"):
            node.set("Content-Type", "message/rfc822")
            body = node.body if node.body.endswith("\n") else node.body + "\n"
            node.body = body if "\n\n" in body.strip("\n") or body.endswith("\n\n") else body + "\n"
            changed = True
    return changed


def nest(root: Node) -> bool:
    """The whole report put one multipart/mixed level deeper (as a gateway that adds a part does)."""
    if not root.has_head:
        return False
    content = [f for f in root.fields if f.split(":", 1)[0].strip().lower().startswith("content-")]
    if not content:
        content = ['Content-Type: text/plain; charset="us-ascii"']
    inner = Node(content, root.serialise_body())
    inner.parts, inner.preamble, inner.closing, inner.enclosed = root.parts, root.preamble, root.closing, root.enclosed
    root.fields = [f for f in root.fields if not f.split(":", 1)[0].strip().lower().startswith("content-")]
    if not root.get("mime-version"):
        root.fields.append("MIME-Version: 1.0")
    root.fields.append('Content-Type: multipart/mixed; boundary="=_variant_nest_="')
    root.preamble = "This is a multi-part message in MIME format.\n\n"
    root.parts = [("--=_variant_nest_=", inner)]
    root.closing = "--=_variant_nest_=--\n"
    root.enclosed = None
    return True


# -- re-wrapping the prose ------------------------------------------------------------------------

_NOT_PROSE = re.compile(
    r"^\s*(?:[!-9;-~]+:[ \t]|[-=_*#~]{2,}|>|<<<|>>>|\||[A-Z][A-Za-z-]+:\s*$)",
)
_ASCII_SPACE = re.compile(r"[ \t]+")  # (str.split() would also split at U+0085 in Latin-1-read UTF-8)
_LABEL = re.compile(r"^\s*[A-Za-z][A-Za-z ]{0,30}:[ \t]+\S")
_ENDS_WITH_ADDRESS = re.compile(r"\S+@\S+[ \t]*$")
_HEADER_FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9-]*:(?!//)")
_RECORD = re.compile(r"^\s*(?:<?[^\s@<>]+@[^\s@<>]+>?[:,]?\s|\d{3}[ -]|[{\[]\"|\{)|\"[^\"]*\":|\bsaid:\s*\d{3}\b")
"""A line that quotes data rather than prose: a per-recipient line that starts with the address,
a server's reply line (starts with its code), JSON."""
_LIST_ITEM = re.compile(r"^\s*(?:<[^>\s]+@|[^\s@<>]+@[^\s@]+\.[^\s@]+(?:\s|$)|[-*•]\s|\d+[.)]\s)")


def _blocks(lines: list[str]) -> list[list[str]]:
    """Runs of lines that a wrapper would have made from one paragraph: a new block starts at a
    blank line, after a line that ends with a colon, at a list item or an address, where the
    indentation changes other than as a hanging indent, and where the next word would have fit
    on the line before (a hard break)."""
    blocks: list[list[str]] = []
    in_field = False
    for line in lines:
        if in_field and line[:1] in (" ", "\t") and line.strip():
            blocks[-1].append(line)  # a header field's continuation line (the field is no prose)
            continue
        in_field = bool(_HEADER_FIELD.match(line))
        starts = in_field or not blocks or not line.strip() or not blocks[-1][-1].strip()
        if starts or _HEADER_FIELD.match(blocks[-1][0]):
            blocks.append([line])
            continue
        block = blocks[-1]
        prev = block[-1]
        indent = len(line) - len(line.lstrip())
        first_indent = len(block[0]) - len(block[0].lstrip())
        cont_indent = block[1][: len(block[1]) - len(block[1].lstrip())] if len(block) > 1 else None
        width = max(len(x) for x in block)
        first_word = _ASCII_SPACE.split(line.strip(" \t"))[0]
        hard = (
            prev.rstrip().endswith(":")
            or _ENDS_WITH_ADDRESS.search(prev) is not None
            or _LIST_ITEM.match(line) is not None
            or _NOT_PROSE.match(line) is not None
            or _NOT_PROSE.match(prev) is not None
            or (cont_indent is None and indent < first_indent)
            or (cont_indent is None and first_indent > 0 and line[:indent] != block[0][:first_indent])
            or (cont_indent is not None and line[: len(line) - len(line.lstrip())] != cont_indent)
            or len(prev.rstrip()) + 1 + len(first_word) <= min(width, 60) - 1
        )
        if hard:
            blocks.append([line])
        else:
            block.append(line)
    return blocks


def rewrap_text(text: str, width: int) -> str:
    lines = text.split("\n")
    out: list[str] = []
    for block in _blocks(lines):
        # a record is re-wrapped only as a wrapper made it: a long first line, a hanging indent
        record = _RECORD.search(block[0]) is not None and (
            len(block) == 1 or not block[1][:1].isspace() or len(block[0]) < 70
        )
        if (
            not block[0].strip()
            or record
            or any(_NOT_PROSE.match(x) or _LABEL.match(x) or '":' in x for x in block)
            or len(" ".join(block)) < 20
            or (len(block) == 1 and block[0][:1] in (" ", "\t"))  # an indented item, no paragraph
            or block[0].lstrip().startswith("[")
        ):
            out.extend(block)
            continue
        first = block[0][: len(block[0]) - len(block[0].lstrip())]
        rest = block[1][: len(block[1]) - len(block[1].lstrip())] if len(block) > 1 else first
        if first and not rest and len(block) == 1:
            rest = first
        words = _ASCII_SPACE.split(" ".join(x.strip(" \t") for x in block).strip(" \t"))
        wrapped = textwrap.wrap(
            " ".join(words),
            width=width,
            initial_indent=first,
            subsequent_indent=rest,
            break_long_words=False,
            break_on_hyphens=False,
        )
        out.extend(wrapped or block)
    return "\n".join(out)


def rewrap(width: int) -> Transform:
    def apply(root: Node) -> bool:
        node = notice_part(root)
        if node is None:
            return False
        data = decoded(node)
        if data is None:
            return False
        cte = node.cte
        text = data.decode("latin-1")
        crlf = "\r\n" in text
        new = rewrap_text(text.replace("\r\n", "\n"), width)
        if crlf:
            new = new.replace("\n", "\r\n")
        if new == text:
            return False
        if cte in ("quoted-printable", "base64"):
            encode_as(node, new.encode("latin-1"), cte)
        else:
            node.body = new
        return True

    return apply


TEXT_TRANSFORMS: dict[str, Callable[[str], str]] = {
    "line-endings": lambda t: t.replace("\n", "\r\n"),
    "trailing-space": lambda t: re.sub(r"(?m)(\S)$", r"\1 ", t),
}
"""Transformations of the whole message text (the LF form; 'line-endings' writes CRLF, or LF for
a message that came with CRLF)."""

TREE_TRANSFORMS: dict[str, Transform] = {
    "notice-qp": _reencode("quoted-printable"),
    "notice-base64": _reencode("base64", canonical=True),
    "notice-base64-lf": _reencode("base64"),
    "declared-8bit": declare_8bit,
    "charset-flip": flip_charset,
    "rewrap-60": rewrap(60),
    "rewrap-998": rewrap(998),
    "headers-fold-40": refold_headers(40),
    "headers-unfold": refold_headers(0),
    "dsn-fold-40": _refold_dsn(40),
    "dsn-unfold": _refold_dsn(0),
    "dsn-as-text": dsn_as_text,
    "report-as-mixed": report_as_mixed,
    "returned-type-swap": returned_headers_type,
    "nested-mixed": nest,
}

NAMES = (*TEXT_TRANSFORMS, *TREE_TRANSFORMS)


def variant(data: bytes, name: str) -> bytes | None:
    """The message transformed by ``name``; None when it does not apply (or changes nothing)."""
    text = data.decode("latin-1")
    crlf = "\r\n" in text and text.count("\r\n") == text.count("\n")
    lf = text.replace("\r\n", "\n") if crlf else text  # (mixed line ends are kept as they are)
    if name == "line-endings":
        if "\r" in lf:
            return None
        out = lf if crlf else lf.replace("\n", "\r\n")
        return out.encode("latin-1") if out != text else None
    if name in TEXT_TRANSFORMS:
        out = TEXT_TRANSFORMS[name](lf)
    else:
        envelope = ""
        if lf.startswith("From ") and "\n" in lf:  # an mbox envelope line stays first
            envelope, lf = lf.split("\n", 1)
            envelope += "\n"
        root = read(lf)
        if not root.has_head or str(root) != lf or not TREE_TRANSFORMS[name](root):
            return None
        out, lf = envelope + str(root), envelope + lf
    if out == lf:
        return None
    if crlf:
        out = out.replace("\n", "\r\n")
    return out.encode("latin-1")


# ---------------------------------------------------------------------------------------------
# parsing and comparing
# ---------------------------------------------------------------------------------------------

Outcome = tuple[tuple[str, str, str, str], ...]


class Judge:
    """Parser and default rules, as ``bounce-processor parse`` uses them."""

    def __init__(self) -> None:
        self.parser = Parser()
        self.classifier = load_classifier()

    def outcome(self, data: bytes) -> Outcome:
        try:
            events = self.parser.parse(data)
        except ParseError as exc:
            return (("error", str(exc)[:40], "", ""),)
        rows = []
        for event in events:
            verdict = self.classifier.classify(event)
            rows.append((event.recipient.lower(), event.status, verdict.reason, str(verdict.bounce_type)))
        return tuple(sorted(rows))


@dataclass
class Tally:
    applied: int = 0
    same: int = 0
    changed: list[str] = field(default_factory=list)


def messages(directory: Path) -> list[Path]:
    if (directory / "messages").is_dir():
        return sorted((directory / "messages").glob("*.eml"))
    return sorted(directory.rglob("*.eml"))


def run(paths: Sequence[Path], names: Sequence[str], judge: Judge, base: Path) -> dict[str, Tally]:
    tallies = {name: Tally() for name in names}
    for path in paths:
        data = path.read_bytes()
        before = judge.outcome(data)
        for name in names:
            changed = variant(data, name)
            if changed is None:
                continue
            tally = tallies[name]
            tally.applied += 1
            if judge.outcome(changed) == before:
                tally.same += 1
            else:
                tally.changed.append(str(path.relative_to(base)))
    return tallies


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="*", type=Path)
    ap.add_argument("--only", default="", help="comma-separated transformation names")
    ap.add_argument("--show", default="", metavar="NAME:FILE", help="print one variant and both outcomes")
    ap.add_argument("--max-list", type=int, default=12, help="changed files listed per row")
    args = ap.parse_args(argv)
    judge = Judge()
    if args.show:
        name, _, file = args.show.partition(":")
        data = Path(file).read_bytes()
        out = variant(data, name)
        if out is None:
            print("(does not apply)")
            return 0
        sys.stdout.write(out.decode("latin-1"))
        print("\n--- original:", judge.outcome(data))
        print("--- variant: ", judge.outcome(out))
        return 0
    names = [n for n in args.only.split(",") if n] or list(NAMES)
    unknown = set(names) - set(NAMES)
    if unknown:
        ap.error(f"unknown transformation(s): {', '.join(sorted(unknown))}")
    dirs = args.dirs or [d for d in DEFAULT_DIRS if d.is_dir()]
    total_changed = 0
    for directory in dirs:
        paths = messages(directory)
        tallies = run(paths, names, judge, directory)
        print(f"== {directory.name} ({len(paths)} messages)")
        print(f"{'transformation':<20} {'applied':>7} {'invariant':>9} {'rate':>7}  changed")
        for name in names:
            t = tallies[name]
            rate = f"{100 * t.same / t.applied:6.1f}%" if t.applied else "     -"
            shown = " ".join(Path(c).name.removesuffix(".eml") for c in t.changed[: args.max_list])
            more = f" (+{len(t.changed) - args.max_list})" if len(t.changed) > args.max_list else ""
            print(f"{name:<20} {t.applied:>7} {t.same:>9} {rate:>7}  {shown}{more}")
            total_changed += len(t.changed)
    print(f"variants whose outcome changed: {total_changed}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
