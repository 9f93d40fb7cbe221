"""Metamorphic test: a notice in another format that a real mail system could have produced (other
line endings, white space, transfer encoding, charset label, line width, header and field folding,
part types) gives the same events, statuses and verdicts as the original. The transformations are
tests/bench/variants.py's; here they run over our own samples/."""

from __future__ import annotations

from functools import cache

import pytest

from tests.bench.variants import NAMES, Judge, Outcome, messages, variant
from tests.conftest import SAMPLES


@cache
def _judge() -> Judge:
    return Judge()


@cache
def _originals() -> dict[str, tuple[bytes, Outcome]]:
    judge = _judge()
    out = {}
    for path in messages(SAMPLES):
        data = path.read_bytes()
        out[str(path.relative_to(SAMPLES))] = (data, judge.outcome(data))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_outcome_is_invariant(name: str) -> None:
    judge = _judge()
    applied = 0
    changed: list[str] = []
    for file, (data, before) in _originals().items():
        transformed = variant(data, name)
        if transformed is None:
            continue
        applied += 1
        after = judge.outcome(transformed)
        if after != before:
            changed.append(f"{file}: {before} -> {after}")
    assert applied >= 20, f"{name} applies to only {applied} samples: the transformation no longer finds its parts"
    assert not changed, "\n".join(changed)


def test_variants_are_honest_reencodings() -> None:
    """The transfer-encoding and charset variants decode to the same part text (the parser's
    own MIME reading), so an invariance failure is the parser's, not the generator's."""
    from processor.parse.mime import read_message

    checked = 0
    for file, (data, _) in list(_originals().items())[:120]:
        if b"\r" in data.replace(b"\r\n", b""):
            continue  # a lone CR (dma's double-spaced headers): a re-encoded line break cannot keep it apart
        for name in ("notice-qp", "notice-base64-lf", "declared-8bit", "trailing-space"):
            transformed = variant(data, name)
            if transformed is None:
                continue
            # compared line by line without the line ends' white space (how Report.text reads a
            # decoded quoted-printable body: CRLF, and QP padding dropped)
            texts = [_lines(p.text) for p in read_message(data).walk() if p.content_type == "text/plain"]
            again = [_lines(p.text) for p in read_message(transformed).walk() if p.content_type == "text/plain"]
            assert again == texts, (file, name)
            checked += 1
    assert checked > 100


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.replace("\r", "").rstrip().split("\n")]
