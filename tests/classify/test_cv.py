"""tests/bench/classify_cv.py: the units it drops when one family alone supports them."""

from __future__ import annotations

import pytest

from processor.classify.engine import CompiledRules
from processor.classify.schema import FieldTest, Location, Result, Rule
from processor.records import BounceType
from tests.bench.classify_cv import Support, alternatives, rules_without
from tests.classify.helpers import make_event


@pytest.mark.parametrize(
    ("pattern", "parts"),
    [
        ("a|b(c|d)", ("a", "b(c|d)")),
        ("(?-i)x|y", ("(?-i)x", "(?-i)y")),
        ("[|]a|b", ("[|]a", "b")),
        ("a\\|b|c", ("a\\|b", "c")),
        ("[^]|]x|y", ("[^]|]x", "y")),
        ("plain", ("plain",)),
    ],
)
def test_alternatives_split_at_the_top_level_only(pattern: str, parts: tuple[str, ...]) -> None:
    assert alternatives(pattern) == parts


def test_unit_alternative_drops_the_wording_one_family_alone_supports() -> None:
    """Folding a one-family wording into a pattern another family supports keeps it under the
    pattern unit and drops it under the alternative unit."""
    pattern = "no such user|user not recognized"
    here = Location("test", 1)
    rule = Rule(
        id="u",
        description="",
        condition=FieldTest(field="diagnostic", patterns=(pattern,), location=here),
        result=Result(reason="userunknown", bounce_type=BounceType.HARD),
        location=here,
    )
    found = Support()
    found.rules["u"] |= {"a", "b"}
    found.patterns[("diagnostic", pattern)] |= {"a", "b"}
    found.alternatives[("diagnostic", pattern, "no such user")] |= {"a"}
    found.alternatives[("diagnostic", pattern, "user not recognized")] |= {"b"}
    event = make_event(diagnostic="550 user not recognized")
    by_pattern = CompiledRules(rules_without([rule], found, "b", "pattern"))
    by_alternative = CompiledRules(rules_without([rule], found, "b", "alternative"))
    assert by_pattern.classify(event).reason == "userunknown"
    assert by_alternative.classify(event).reason == "undefined"
    assert by_alternative.classify(make_event(diagnostic="550 no such user")).reason == "userunknown"
