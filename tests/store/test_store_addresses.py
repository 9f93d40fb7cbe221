"""Address normalisation: one canonical form, and a clear error naming every rejected input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.addresses import AddressError, _slow, normalise_address
from processor.parse._flanker import flanker_address

VALID = [
    ("alice@example.org", "alice@example.org"),
    ("  Alice@Example.ORG\t", "alice@example.org"),
    ("<Bob@Example.org>", "bob@example.org"),
    ("mailto:carol@example.org", "carol@example.org"),
    ("MAILTO:Carol@Example.org?subject=unsubscribe", "carol@example.org"),
    ("<mailto:dave%2Btag@example.org>", "dave+tag@example.org"),
    ("user@bücher.example", "user@xn--bcher-kva.example"),
    ("user@XN--BCHER-KVA.example", "user@xn--bcher-kva.example"),
    ("jörg@bücher.example", "jörg@xn--bcher-kva.example"),
    ('"Quoted Name"@example.org', '"quoted name"@example.org'),
    ("first.last+tag@sub.example.co.uk", "first.last+tag@sub.example.co.uk"),
    ("o'brien@example.org", "o'brien@example.org"),
    ("user@[192.0.2.1]", "user@[192.0.2.1]"),
    ("postmaster@localhost", "postmaster@localhost"),
    # As Postfix resolves them: quotes the local part does not need, and the domain's trailing dot.
    ('"user"@d.example', "user@d.example"),
    ('"First.Last"@D.Example', "first.last@d.example"),
    ("user@d.example.", "user@d.example"),
    ('"user"@Bücher.example.', "user@xn--bcher-kva.example"),
    ('"a b"@d.example', '"a b"@d.example'),
    ('"a..b"@d.example', '"a..b"@d.example'),
]

# Text that looks like an address but is not one: not valid UTF-8, or holding a character one cannot see.
HIDDEN = [
    ("\ud800@x.com", "not valid UTF-8 (a lone surrogate U+D800)"),
    ("\udced\udca0\udc80@x.com", "not valid UTF-8 (a lone surrogate U+DCED)"),
    ("\ufffd\ufffd\ufffd@x.com", "not valid UTF-8 (contains U+FFFD, the replacement character)"),
    ("us\u200ber@x.com", "contains an invisible or control character U+200B (ZERO WIDTH SPACE)"),
    ("user\u200f@x.com", "contains an invisible or control character U+200F (RIGHT-TO-LEFT MARK)"),
    ("us\u00a0er@x.com", "contains an invisible or control character U+00A0 (NO-BREAK SPACE)"),
    ("us\ufeffer@x.com", "contains an invisible or control character U+FEFF (ZERO WIDTH NO-BREAK SPACE)"),
    ("user@exa\u2028mple.com", "contains an invisible or control character U+2028 (LINE SEPARATOR)"),
    ("us\x01er@x.com", "contains a control character"),
    ("us\x7fer@x.com", "contains a control character"),
    ('"us\x00er"@x.com', "contains a control character"),
]

# input, the exact error message; the syntax rows are also rejected by flanker itself.
INVALID = [
    ("", "invalid address '': empty address"),
    ("   ", "invalid address '   ': empty address"),
    ("<>", "invalid address '<>': empty address"),
    ("mailto:", "invalid address 'mailto:': empty address"),
    ("alice.example.org", "invalid address 'alice.example.org': no '@' in the address"),
    ("@example.org", "invalid address '@example.org': empty local part before '@'"),
    ("alice@", "invalid address 'alice@': empty domain after '@'"),
    ("a..b@example.org",
     "invalid address 'a..b@example.org': not a valid email address (rejected by the address parser)"),
    ("a b@example.org",
     "invalid address 'a b@example.org': not a valid email address (rejected by the address parser)"),
    ("Alice <alice@example.org>",
     "invalid address 'Alice <alice@example.org>': not a valid email address (rejected by the address parser)"),
    ("a@example.org, b@example.org",
     "invalid address 'a@example.org, b@example.org': not a valid email address "
     "(rejected by the address parser)"),
    ("alice@exa mple.org",
     "invalid address 'alice@exa mple.org': not a valid email address (rejected by the address parser)"),
    ("alice@example..org",
     "invalid address 'alice@example..org': not a valid email address (rejected by the address parser)"),
    ("alice@@example.org",
     "invalid address 'alice@@example.org': not a valid email address (rejected by the address parser)"),
    ("user@xn--zz.example",
     "invalid address 'user@xn--zz.example': not a valid email address (rejected by the address parser)"),
    ("user@☃.example",
     "invalid address 'user@☃.example': not a valid email address (rejected by the address parser)"),
    ('"unterminated@example.org',
     "invalid address '\"unterminated@example.org': not a valid email address "
     "(rejected by the address parser)"),
    ("x" * 1020 + "@a.io", f"invalid address '{'x' * 200}...': longer than 1024 characters"),
]


@pytest.mark.parametrize(("given", "expected"), VALID)
def test_valid_addresses_normalise(given: str, expected: str) -> None:
    """Trim, <>, mailto:, lower case and IDNA give one canonical form."""
    assert normalise_address(given) == expected


@pytest.mark.parametrize(("given", "message"), INVALID)
def test_invalid_addresses_raise_a_clear_error(given: str, message: str) -> None:
    """Each malformed address raises AddressError with a message naming the input and the problem."""
    with pytest.raises(AddressError) as caught:
        normalise_address(given)
    assert str(caught.value) == message
    assert caught.value.value == given
    stripped = given.strip()
    if "@" in stripped and len(stripped) <= 1024:
        assert flanker_address().parse(stripped, addr_spec_only=True, strict=True) is None


@pytest.mark.parametrize(("given", "problem"), HIDDEN)
def test_invalid_unicode_and_invisible_characters_are_refused(given: str, problem: str) -> None:
    """An address that is not valid UTF-8 or holds an invisible or control character is refused,
    with a message that is printable (control characters and surrogates escaped)."""
    with pytest.raises(AddressError) as caught:
        normalise_address(given)
    assert caught.value.problem == problem
    assert str(caught.value) == f"invalid address {given!r}: {problem}"
    str(caught.value).encode("utf-8")


def test_non_string_input_is_rejected() -> None:
    """A value that is not a string is an AddressError, not a TypeError deep inside."""
    with pytest.raises(AddressError, match="expected a string, got int"):
        normalise_address(42)  # type: ignore[arg-type]


def test_local_part_case_is_kept_when_configured() -> None:
    """lowercase_local=False keeps the local part's case; the domain is lower-cased regardless."""
    assert normalise_address("Alice.Smith@Example.ORG", lowercase_local=False) == "Alice.Smith@example.org"
    assert normalise_address("Jörg@Bücher.example", lowercase_local=False) == "Jörg@xn--bcher-kva.example"


_ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-"
_atom = st.text(alphabet=_ATEXT, min_size=1, max_size=12)
_label = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1, max_size=12)


@settings(max_examples=400, deadline=None)
@given(
    local=st.lists(_atom, min_size=1, max_size=3).map(".".join),
    domain=st.lists(_label, min_size=1, max_size=4).map(".".join),
    lower=st.booleans(),
)
def test_fast_path_agrees_with_flanker(local: str, domain: str, lower: bool) -> None:
    """Every address the regex fast path accepts, flanker accepts too, with the same result."""
    text = f"{local}@{domain}"
    if "xn--" in domain.lower():
        return
    assert normalise_address(text, lowercase_local=lower) == _slow(text, text, lower)

