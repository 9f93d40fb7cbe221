"""The cheap pre-checks before costly regex scans find exactly what the regexes alone find.

Each pre-check skips text, or lines, that cannot hold a match: a word the pattern needs is looked
up in a lower-cased copy first. These tests compare the shortcut with the plain regex search on
texts built from the words and the letters that case-insensitive matching folds (long s, Kelvin
sign, dotted and dotless i), so that a pre-check that skips a real match fails here."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from processor.parse import autoreply, mime
from processor.parse.report import _INLINE_DSN, _ORIGINAL_MARKER, _ORIGINAL_MARKER_WORDS, unwrap
from processor.parse.text import first_line_search, folded, may_match

PIECES = [
    "Original message", "ORIGINAL MESSAGE follows", "  -- Returned mail", "copy of the message", "unsent mail",
    "Undelivered Message Headers", "Content-Type: message/rfc822", "header of original message",
    "Final-Recipient: rfc822; a@b.example", "original-recipient:", "prove you are human", "until you confirm",
    "allow list", "click to confirm", "challenge-response", "5.1.1", "u\u017fer", "\u212aelvin", "\u0130stanbul",
    "d\u0131\u015f", "\u65e5\u672c\u8a9e", "x", " ", "\t", "\n", "\n\n", "--", "*", "The ", "ſent", "re\u017fponse",
]
texts = st.lists(st.sampled_from(PIECES), max_size=25).map("".join)


@settings(max_examples=600, deadline=None)
@given(texts)
def test_first_line_search_finds_what_search_finds(text: str) -> None:
    for pattern, words in (
        (_ORIGINAL_MARKER, _ORIGINAL_MARKER_WORDS),
        (_INLINE_DSN, ("final-recipient:", "original-recipient:")),
    ):
        expected = pattern.search(text)
        found = first_line_search(pattern, text, words)
        assert (found and (found.span(), found.group(0))) == (expected and (expected.span(), expected.group(0)))


@settings(max_examples=600, deadline=None)
@given(texts)
def test_challenge_words_never_hide_a_match(text: str) -> None:
    checks = (
        (autoreply._PROVE_HUMAN, autoreply._PROVE_HUMAN_WORDS),
        (autoreply._HELD_UNTIL, autoreply._HELD_UNTIL_WORDS),
        (autoreply._CHALLENGE_TERMS, autoreply._CHALLENGE_TERMS_WORDS),
        (autoreply._ALLOW_LIST, autoreply._ALLOW_LIST_WORDS),
    )
    for pattern, words in checks:
        if pattern.search(text):
            assert may_match(text, words) and may_match(text, autoreply._CHALLENGE_WORDS)


def test_folded_keeps_offsets_or_declines() -> None:
    """A folded copy has the text's length (offsets agree); with a letter that folds onto ASCII
    only through the regex's case rules, there is no folded copy and the regex is used."""
    assert folded("Hello \u65e5\u672c") == "hello \u65e5\u672c"
    for letter in ("\u0130", "\u0131", "\u017f", "\u212a"):
        assert folded(f"a{letter}b") is None
        assert re.search("s|i|k", letter, re.IGNORECASE)  # why: the regex would match them


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from([
    b"Content-Type: message/rfc822\n", b"content-type: TEXT/RFC822-HEADERS\n", b"CONTENT-TYPE:message/global\n",
    b"Content-Type: message/delivery-status\n", b"X-Content-Type: message/rfc822\n", b"\n", b"Subject: s\n",
    b"--b\n", b"--b\nnot a header\n", b"body " * 300 + b"\n", b"--\n\n", b"--x\n--y\n",
]), max_size=30).map(b"".join))
def test_line_start_searches_agree_with_the_regexes(data: bytes) -> None:
    for pattern in (mime._RETURNED_PART, mime._REPORT_PART):
        for start in (0, len(data) // 2):
            expected = pattern.search(data, start)
            found = mime._line_search(pattern, data, data.lower(), start)
            assert (found and found.span()) == (expected and expected.span())
    assert mime._maybe_headerless_part(data) == bool(mime._MAYBE_HEADERLESS_PART.search(data))


_PLAIN_WRAPPED_LINE_BREAK = re.compile(r"(?<=\S)[ \t]*\n[ \t]*(?=\S)")
_PLAIN_SPACE_RUN = re.compile(r"[ \t]{2,}|\t")


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(["a", "b.", " ", "  ", "\t", "\n", "\n\n", " \n", "\t\n ", "\xa0", "\u3000", "\x0b",
                                  "\x0c", "\x1c", "\u2028", "word "]), max_size=30).map("".join))
def test_unwrap_is_the_two_regex_substitutions(text: str) -> None:
    """unwrap joins lines a line at a time: the same text as the two substitutions it stands for."""
    expected = _PLAIN_SPACE_RUN.sub(" ", _PLAIN_WRAPPED_LINE_BREAK.sub(" ", text))
    assert unwrap(text) == expected


_PLAIN_PARAM = re.compile(r';\s*([!#-\'*+.0-9A-Za-z^_`{|}~-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)')


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(["a", "b=", "=", '"', '"x"', "\\", '\\"', ";", "; ", " ", "\t", "\n", "-"]),
                max_size=20).map("".join))
def test_param_pattern_reads_what_the_per_character_form_reads(value: str) -> None:
    assert mime._PARAM.findall(value) == _PLAIN_PARAM.findall(value)


_NOTICE_PIECES = [
    "gave up", "GIVING UP", "permanent error", "Permanently failed", "will not be retried", "will not try",
    "not be delivered", "couldn't be delivered", "could not be delivered", "undeliverable", "will retry",
    "will continue to try again", "keep trying", "this is a warning", "only a warning", "do not need to resend",
    "no action is required", "not yet been delivered", "still trying", "still being retried", "if it fails",
    "unless", "should", "complaint about message from", "[FBL]", "fbl report", "  ", "\n", ".", ";", "x", " ",
    "\u017f", "\u212a", "\u0130", "\u0131", "wi", "ll", "gi", "ving", "Loop Alert", "not member", "rejected",
    "ERROR", ": ", "(", " ML)", "ml",
]


@settings(max_examples=800, deadline=None)
@given(st.lists(st.sampled_from(_NOTICE_PIECES), max_size=12).map("".join))
def test_notice_words_never_hide_a_match(text: str) -> None:
    from processor.parse import arf
    from processor.parse.mta import fml, generic

    for pattern, words in (
        (generic._CONDITIONAL, generic._CONDITIONAL_WORDS),
        (generic._GAVE_UP, generic._GAVE_UP_WORDS),
        (generic._DELAY_WORDS, generic._DELAY_WORDS_WORDS),
        (arf._HOTMAIL_SUBJECT, arf._HOTMAIL_SUBJECT_WORDS),
        (fml._SUBJECT, fml._SUBJECT_WORDS),
    ):
        if pattern.search(text):
            assert may_match(text, words), (pattern.pattern, text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["X-Barracuda-Connect", "x-mfilter", "X-HM-Spam", "Subject", "X-Mailer", "to"]),
                max_size=5))
def test_has_any_is_any_contains(names: list[str]) -> None:
    from processor.parse.mta import gateway

    headers = mime.Headers([(name, "v") for name in names])
    assert headers.has_any(gateway._HEADER_NAMES) == any(name in headers for name in gateway._HEADER_NAMES)
