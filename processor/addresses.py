"""Email addresses normalised once, the same way everywhere (store, CLI, API, import, daemon).

    normalise_address("  <mailto:Alice@Bücher.Example> ")  ->  "alice@xn--bcher-kva.example"

The steps: trim white space; strip one pair of angle brackets and a ``mailto:`` prefix (with any
``?query`` and %-escapes of a mailto URI); lower-case the domain and turn an internationalised
domain into its IDNA ASCII form (punycode); lower-case the local part unless told not to
(``DatabaseSettings.lowercase_local_part``). As Postfix does before it resolves an address, a
quoted local part that needs no quotes loses them (``"user"@d.example`` is ``user@d.example``) and
one trailing dot of the domain is dropped (``user@d.example.``), so that every reader sees the
address the mail would be delivered to. Text that is not valid Unicode (a lone surrogate, as
Python decodes undecodable bytes, or U+FFFD, as a lenient decoder replaces them) or that holds a
control, format (zero-width) or other invisible character is refused: such an address looks like
another one but is not. Whatever flanker's address parser rejects is rejected too, always with an
``AddressError`` that names the input.

Cost matters: a batch check normalises 10,000 addresses. Plain ASCII ``dot-atom@host`` addresses
(nearly all real ones) take a compiled-regex fast path whose language is a subset of what
flanker's grammar accepts and whose result equals flanker's (a property test pins that); only the
rest go through flanker, imported once via ``processor.parse._flanker``.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote

__all__ = ["MAX_ADDRESS_LENGTH", "AddressError", "address_domain", "normalise_address"]

MAX_ADDRESS_LENGTH = 1024
"""flanker's own limit; longer input is rejected before parsing."""

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_FAST = re.compile(
    rf"{_ATEXT}+(?:\.{_ATEXT}+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*",
    re.ASCII,
)
"""Dot-atom local part @ dot-separated LDH labels: a strict subset of flanker's addr-spec grammar."""
_DOT_ATOM = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*", re.ASCII)
_ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"})
"""Control, format (zero-width joiners and spaces, direction marks), surrogate, private-use,
unassigned, and separator characters (a plain ASCII space is allowed, inside quotes only)."""


class AddressError(ValueError):
    """An address that cannot be used; the message names the input and the problem."""

    def __init__(self, value: object, problem: str) -> None:
        self.value = value
        self.problem = problem
        shown = value if isinstance(value, str) else type(value).__name__
        if isinstance(shown, str) and len(shown) > 200:
            shown = shown[:200] + "..."
        # repr() escapes control characters and lone surrogates, so the message is always printable
        # and encodable (a JSON body, a log line).
        super().__init__(f"invalid address {shown!r}: {problem}")


def _unwrap(text: str) -> str:
    """Trim, strip <...> and a mailto: URI wrapper (in either order)."""
    text = text.strip()
    for _ in range(2):
        if len(text) >= 2 and text[0] == "<" and text[-1] == ">":
            text = text[1:-1].strip()
        if text[:7].lower() == "mailto:":
            text = text[7:]
            query = text.find("?")
            if query >= 0:
                text = text[:query]
            if "%" in text:
                text = unquote(text)
            text = text.strip()
    return text


def normalise_address(value: str, *, lowercase_local: bool = True) -> str:
    """The canonical form of one address, or AddressError naming the input and the problem."""
    if not isinstance(value, str):
        raise AddressError(value, f"expected a string, got {type(value).__name__}")
    if len(value) <= MAX_ADDRESS_LENGTH:
        fast = _fast_form(value, lowercase_local)
        if fast is not None:
            return fast
    text = _unwrap(value)
    if not text:
        raise AddressError(value, "empty address")
    if len(text) > MAX_ADDRESS_LENGTH:
        raise AddressError(value, f"longer than {MAX_ADDRESS_LENGTH} characters")
    _refuse_hidden_characters(value, text)
    text = _postfix_form(text)
    fast = _fast_form(text, lowercase_local)
    if fast is not None:
        return fast
    return _slow(value, text, lowercase_local)


def _fast_form(text: str, lowercase_local: bool) -> str | None:
    """The canonical form of a plain ASCII dot-atom address; None for anything else."""
    if _FAST.fullmatch(text) is None:
        return None
    local, _, domain = text.rpartition("@")
    domain = domain.lower()
    if "xn--" in domain:
        return None
    return f"{local.lower() if lowercase_local else local}@{domain}"


def _refuse_hidden_characters(value: str, text: str) -> None:
    """AddressError for text that is not valid Unicode or holds a character one cannot see."""
    if _ASCII_CONTROL.search(text) is not None:
        raise AddressError(value, "contains a control character")
    if text.isascii():
        return
    for char in text:
        if char.isascii():
            continue
        if char == "\ufffd":
            raise AddressError(value, "not valid UTF-8 (contains U+FFFD, the replacement character)")
        category = unicodedata.category(char)
        if category == "Cs":
            raise AddressError(value, f"not valid UTF-8 (a lone surrogate U+{ord(char):04X})")
        if category in _INVISIBLE_CATEGORIES:
            name = unicodedata.name(char, "unnamed")
            raise AddressError(value, f"contains an invisible or control character U+{ord(char):04X} ({name})")


def _postfix_form(text: str) -> str:
    """Drop quotes a local part does not need and one trailing dot of the domain, as Postfix does."""
    local, at, domain = text.rpartition("@")
    if not at:
        return text
    if domain.endswith(".") and not domain.endswith(".."):
        domain = domain[:-1]
    if len(local) > 2 and local[0] == '"' and local[-1] == '"' and _DOT_ATOM.fullmatch(local[1:-1]) is not None:
        local = local[1:-1]
    return f"{local}@{domain}"


def _slow(value: str, text: str, lowercase_local: bool) -> str:
    if "@" not in text:
        raise AddressError(value, "no '@' in the address")
    if text.startswith("@"):
        raise AddressError(value, "empty local part before '@'")
    if text.endswith("@"):
        raise AddressError(value, "empty domain after '@'")
    from processor.parse._flanker import flanker_address

    parsed = flanker_address().parse(text, addr_spec_only=True, strict=True)
    if parsed is None:
        raise AddressError(value, "not a valid email address (rejected by the address parser)")
    local: str = parsed.mailbox
    host: str = parsed.hostname
    if not (host.startswith("[") and host.endswith("]")) and not host.isascii():
        import idna

        try:
            host = idna.encode(host).decode("ascii")
        except (idna.IDNAError, UnicodeError) as exc:
            raise AddressError(value, f"domain {host!r} has no IDNA ASCII form ({exc})") from None
    return f"{local.lower() if lowercase_local else local}@{host.lower()}"


def address_domain(address: str) -> str:
    """The domain part of a normalised address ("" when there is none)."""
    return address.rpartition("@")[2]
