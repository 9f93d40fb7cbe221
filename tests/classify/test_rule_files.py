"""Reading rule files: every broken file gives the exact problem, at the right line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from processor.classify.loader import load_rules
from processor.classify.schema import AllOf, AnyOf, FieldTest, Not
from processor.records import Action, BounceType


def rule(match: str = "status: '5.1.1'", rule_id: str = "a", reason: str = "userunknown", extra: str = "") -> str:
    """One well-formed rule; ``match`` is the body of its match mapping (line 5 of a file)."""
    return (
        f"  - id: {rule_id}\n"
        "    description: A rule.\n"
        "    match:\n"
        f"      {match}\n"
        "    result:\n"
        f"      reason: {reason}\n"
        "      bounce_type: hard\n"
        f"{extra}"
    )


def file_of(*rules: str) -> str:
    return "rules:\n" + "".join(rules)


BROKEN: list[tuple[str, str, list[tuple[int, str]]]] = [
    (
        "invalid YAML",
        "rules:\n  - id: a\n    match: {status: '5.1.1'\n",
        [(4, "invalid YAML: did not find expected ',' or '}'")],
    ),
    (
        "tab indentation",
        "rules:\n\t- id: a\n",
        [(2, "invalid YAML: found character that cannot start any token")],
    ),
    ("not a mapping", "just text\n", [(1, "a rule file must be a mapping with a 'rules' list")]),
    (
        "unknown top-level key",
        "rulez: []\n",
        [
            (1, "unknown key 'rulez' in a rule file (expected one of: rules)"),
            (1, "a rule file needs a 'rules' list"),
        ],
    ),
    ("rules not a list", "rules: {}\n", [(1, "'rules' must be a list of rules")]),
    (
        "a rule that is a string",
        "rules:\n  - just a string\n",
        [(2, "a rule must be a mapping with id, description, match and result")],
    ),
    (
        "misspelt rule key",
        file_of(rule().replace("    description:", "    descripton:")),
        [
            (3, "unknown key 'descripton' in rule 'a' (expected one of: id, description, match, result)"),
            (2, "rule 'a' has no 'description'"),
        ],
    ),
    (
        "misspelt field",
        file_of(rule("diagnotic: 'user unknown'")),
        [
            (
                5,
                "unknown key 'diagnotic' in the conditions of rule 'a' (expected one of: status, "
                "reply_code, smtp_command, diagnostic, mentioned_hosts, notice, diagnostic_type, remote_mta, "
                "reporting_mta, recipient_domain, kind, feedback_type, mta, dsn_action, names_recipient, provider, "
                "provider_category, says, all, any, not)",
            )
        ],
    ),
    (
        "regex syntax error",
        file_of(rule("diagnostic: 'user (unknown'")),
        [
            (
                5,
                "rule 'a': invalid diagnostic pattern 'user (unknown': "
                "not a valid RE2 regular expression: missing ): user (unknown",
            )
        ],
    ),
    (
        "backreference (can backtrack)",
        file_of(rule("diagnostic: '(a+)\\1'")),
        [
            (
                5,
                "rule 'a': invalid diagnostic pattern '(a+)\\1': "
                "not a valid RE2 regular expression: invalid escape sequence: \\1",
            )
        ],
    ),
    (
        "look-ahead (not linear)",
        file_of(rule("diagnostic: 'user(?= unknown)'")),
        [
            (
                5,
                "rule 'a': invalid diagnostic pattern 'user(?= unknown)': "
                "not a valid RE2 regular expression: invalid perl operator: (?=",
            )
        ],
    ),
    (
        "status pattern with two parts",
        file_of(rule("status: '5.1'")),
        [(5, "rule 'a': invalid status pattern '5.1': expected an enhanced status code such as 5.1.1, 5.1.* or 4.*.*")],
    ),
    (
        "reply code with two digits",
        file_of(rule("reply_code: 55")),
        [(5, "rule 'a': invalid reply_code pattern '55': expected an SMTP reply code such as 550, 55x or 4xx")],
    ),
    (
        "misspelt SMTP command",
        file_of(rule("smtp_command: RCTP")),
        [
            (
                5,
                "rule 'a': invalid smtp_command pattern 'RCTP': expected one of AUTH, BDAT, CONN, DATA, "
                "EHLO, HELO, LHLO, MAIL, QUIT, RCPT, RSET, STARTTLS",
            )
        ],
    ),
    (
        "unknown event kind",
        file_of(rule("kind: bounce")),
        [
            (
                5,
                "rule 'a': invalid kind pattern 'bounce': "
                "expected one of failure, delay, complaint, auto_reply, delivered",
            )
        ],
    ),
    (
        "host pattern with a space",
        file_of(rule("remote_mta: 'mx example.com'")),
        [
            (
                5,
                "rule 'a': invalid remote_mta pattern 'mx example.com': "
                "expected a host or domain name, '*' matching any characters",
            )
        ],
    ),
    ("empty pattern", file_of(rule("status:")), [(5, "each 'status' pattern of rule 'a' must be a single value")]),
    ("empty any", file_of(rule("any: []")), [(5, "'any' in rule 'a' must be a non-empty list of conditions")]),
    ("not given a list", file_of(rule("not: ['5.1.1']")), [(5, "the conditions of rule 'a' must be a mapping")]),
    (
        "unknown reason",
        file_of(rule(reason="unknownuser")),
        [(7, "rule 'a': unknown reason 'unknownuser' (see rules/README.md)")],
    ),
    (
        "unknown bounce type",
        file_of(rule().replace("bounce_type: hard", "bounce_type: permanent")),
        [
            (
                8,
                "rule 'a': unknown bounce_type 'permanent' "
                "(expected one of: hard, soft, complaint, auto_reply, delivered, undetermined)",
            )
        ],
    ),
    (
        "unknown action",
        file_of(rule(extra="      action: delete\n")),
        [(9, "rule 'a': unknown action 'delete' (expected one of: suppress, count, ignore)")],
    ),
    (
        "ttl in words",
        file_of(rule(extra="      ttl: 30 days\n")),
        [(9, "rule 'a': invalid ttl '30 days': expected a duration such as 30d, 12h, 90m or 2w")],
    ),
    (
        "ttl beyond the calendar",
        file_of(rule(extra="      ttl: 2000000w\n")),
        [(9, "rule 'a': invalid ttl '2000000w': expected at most 36500d (100 years); leave ttl out for an "
             "entry that never expires")],
    ),
    (
        "unknown result key",
        file_of(rule(extra="      expires: 30d\n")),
        [(9, "unknown key 'expires' in the result of rule 'a' (expected one of: reason, bounce_type, action, ttl)")],
    ),
    (
        "missing result",
        "rules:\n  - id: a\n    description: A rule.\n    match: {}\n",
        [(2, "rule 'a' has no 'result'")],
    ),
    (
        "key given twice",
        file_of(rule().replace("    description: A rule.\n", "    description: A rule.\n    description: Again.\n")),
        [(4, "key 'description' is given twice in rule 'a'")],
    ),
    (
        "invalid id",
        file_of(rule(rule_id="Bad ID")),
        [(2, "invalid rule id 'Bad ID' (lower-case letters, digits, '.', '_' and '-')")],
    ),
    (
        "description on two lines",
        file_of(
            rule().replace("    description: A rule.\n", "    description: |\n      A rule\n      on two lines.\n")
        ),
        [(3, "the description of rule 'a' must be one line")],
    ),
    (
        "duplicate id",
        file_of(rule(), rule("status: '5.1.2'")),
        [(9, "duplicate rule id 'a' (first defined at {file}:2)")],
    ),
    (
        "rule shadowed by a wider status pattern",
        file_of(rule("status: '5.1.*'"), rule("status: '5.1.2'", rule_id="b")),
        [(9, "rule 'b' can never match: rule 'a' ({file}:2) matches every event it matches")],
    ),
    (
        "rule shadowed by a catch-all",
        file_of(rule("{}").replace("      {}\n", "").replace("    match:\n", "    match: {}\n"), rule(rule_id="b")),
        [(8, "rule 'b' can never match: rule 'a' ({file}:2) matches every event it matches")],
    ),
    (
        "rule shadowed by an any-of covering both of its branches",
        file_of(
            rule("any: [{status: '5.1.*'}, {diagnostic: 'no such user'}]"),
            rule(
                "any: [{status: '5.1.1', kind: failure}, {diagnostic: 'no such user', smtp_command: RCPT}]", rule_id="b"
            ),
        ),
        [(9, "rule 'b' can never match: rule 'a' ({file}:2) matches every event it matches")],
    ),
]


@pytest.mark.parametrize(("case", "text", "expected"), BROKEN, ids=[c[0] for c in BROKEN])
def test_broken_rule_file_gives_exact_problems(
    rule_dir: Callable[..., Path], case: str, text: str, expected: list[tuple[int, str]]
) -> None:
    """Each broken rule file reports exactly these problems, each at its line."""
    directory = rule_dir(text)
    _, problems = load_rules([directory])
    shown = str(problems[0].location.path) if problems else ""
    assert [(p.location.line, p.message) for p in problems] == [
        (line, message.replace("{file}", shown)) for line, message in expected
    ]
    assert all(p.location.path.endswith("rules.yaml") for p in problems)


def test_problem_prints_as_file_and_line(rule_dir: Callable[..., Path]) -> None:
    """A problem prints as ``path:line: message``."""
    directory = rule_dir(file_of(rule(reason="nope")))
    _, problems = load_rules([directory])
    assert str(problems[0]).endswith("rules.yaml:7: rule 'a': unknown reason 'nope' (see rules/README.md)")


def test_missing_directory_is_a_problem(tmp_path: Path) -> None:
    """A configured rule directory that does not exist is reported, not silently skipped."""
    _, problems = load_rules([tmp_path / "absent"])
    assert [p.message for p in problems] == ["rule directory not found"]


def test_narrower_rule_after_wider_one_in_another_file_is_shadowed(rule_dir: Callable[..., Path]) -> None:
    """Shadowing is checked across the files of one directory, in file-name order."""
    directory = rule_dir(
        **{
            "10-first_yaml": file_of(rule("diagnostic: ['user unknown', 'no such user']")),
            "20-second_yaml": file_of(rule("diagnostic: 'no such user'\n      kind: failure", rule_id="b")),
        }
    )
    _, problems = load_rules([directory])
    assert [p.message.split(":")[0] for p in problems] == ["rule 'b' can never match"]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("status: '5.1.1'", "status: '5.1.*'"),
        ("diagnostic: 'user unknown'", "diagnostic: 'unknown'"),
        ("remote_mta: 'mx.example.com'", "remote_mta: '*.example.com'"),
        ("kind: failure\n      status: '5.1.1'", "status: '5.1.1'"),
        ("not: {status: '4.*.*'}", "status: '5.1.1'"),
        ("reply_code: '55x'", "reply_code: '5xx'"),
    ],
)
def test_wider_rule_after_narrower_one_is_not_shadowed(rule_dir: Callable[..., Path], first: str, second: str) -> None:
    """A rule after a narrower one (or one whose cover cannot be decided) is not reported."""
    directory = rule_dir(file_of(rule(first), rule(second, rule_id="b")))
    _, problems = load_rules([directory])
    assert problems == []


def test_same_id_in_an_earlier_directory_replaces_the_rule(rule_dir: Callable[..., Path]) -> None:
    """An operator rule with a default rule's id replaces it; nothing is reported."""
    mine = rule_dir(file_of(rule("status: '5.1.1'", reason="filtered")))
    defaults = rule_dir(file_of(rule("status: '5.1.1'"), rule("status: '5.1.2'", rule_id="b")))
    rules, problems = load_rules([mine, defaults])
    assert problems == []
    assert [(r.id, r.result.reason) for r in rules] == [("a", "filtered"), ("b", "userunknown")]


def test_well_formed_rule_is_read_completely(rule_dir: Callable[..., Path]) -> None:
    """Every part of a rule (conditions, combinators, result with action and ttl) is read."""
    text = (
        "rules:\n"
        "  - id: acme\n"
        "    description: ACME quota.\n"
        "    match:\n"
        "      kind: failure\n"
        "      remote_mta: ['*.ACME.example.', mx.acme.example]\n"
        "      not: {status: 4.*.*}\n"
        "      any:\n"
        "        - reply_code: 55X\n"
        "        - diagnostic: 'box at capacity'\n"
        "    result: {reason: mailboxfull, bounce_type: soft, action: count, ttl: 2w}\n"
    )
    rules, problems = load_rules([rule_dir(text)])
    assert problems == []
    (only,) = rules
    assert only.location.line == 2
    assert only.result.action is Action.COUNT
    assert only.result.bounce_type is BounceType.SOFT
    assert only.result.ttl is not None and only.result.ttl.days == 14
    assert isinstance(only.condition, AllOf)
    kind, mta, negation, either = only.condition.children
    assert kind == FieldTest("kind", ("failure",), kind.location)
    assert isinstance(mta, FieldTest) and mta.patterns == ("*.acme.example", "mx.acme.example")
    assert isinstance(negation, Not) and isinstance(negation.child, FieldTest)
    assert isinstance(either, AnyOf)
    reply = either.children[0]
    assert isinstance(reply, FieldTest) and reply.patterns == ("55*",)


def test_yaml_anchor_reuses_a_pattern_list(rule_dir: Callable[..., Path]) -> None:
    """A pattern family named with a YAML anchor can be reused by a later rule of the file."""
    text = file_of(
        rule("diagnostic: &unknown ['user unknown', 'no such user']\n      smtp_command: RCPT"),
        rule("diagnostic: *unknown", rule_id="b"),
    )
    rules, problems = load_rules([rule_dir(text)])
    assert problems == []
    second = rules[1].condition
    assert isinstance(second, FieldTest) and second.patterns == ("user unknown", "no such user")
