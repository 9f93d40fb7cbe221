"""Reading rule directories: YAML files into ``Rule`` objects, with every problem at file:line.

Files of a directory are read in name order (``10-x.yaml`` before ``20-y.yaml``), rules within a
file top to bottom, directories in the order given (operator directories before the defaults).
A rule in an earlier directory replaces a rule with the same id in a later one: this is how an
operator changes a default rule. Within one directory an id may appear only once, and a rule that
an earlier rule of the same directory always pre-empts is reported as shadowed.

Over 500 lines on purpose: rule files and the phrase families they cite (rules/phrases/) are read
and checked together, so that every problem of a directory, in either kind of file, is reported
at its file:line in one pass and an operator's family replaces the default of the same name.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

import yaml

from processor.classify.schema import (
    COMBINATORS,
    FIELDS,
    FILE_KEYS,
    PHRASE_FILE_KEYS,
    REASONS,
    RESULT_KEYS,
    RULE_KEYS,
    SAYS,
    AllOf,
    AnyOf,
    Condition,
    FieldKind,
    FieldTest,
    Location,
    Not,
    PatternError,
    Result,
    Rule,
    RuleProblem,
    normalise_pattern,
    parse_ttl,
    pattern_covers,
    valid_rule_id,
)
from processor.records import Action, BounceType

_Choice = TypeVar("_Choice", bound=StrEnum)

RULE_FILE_SUFFIXES = (".yaml", ".yml")

try:  # the C loader is much faster; compose() gives nodes with line numbers either way
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - libyaml missing
    _Loader = yaml.SafeLoader


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (shorter messages)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def rule_files(directory: Path) -> list[Path]:
    """The rule files of one directory, in the order they are read."""
    return sorted(
        p for p in directory.iterdir() if p.suffix in RULE_FILE_SUFFIXES and p.is_file()
    )


PHRASES_DIRECTORY = "phrases"
"""Sub-directory of a rule directory holding one phrase family per file."""


@dataclass(frozen=True, slots=True)
class PhraseFamily:
    """A named list of reply patterns (one wording family, many languages) that rules cite with ``says:``."""

    name: str
    description: str
    patterns: tuple[str, ...]
    location: Location


def load_phrases(
    directories: Sequence[Path], *, unchecked: set[str] | None = None
) -> tuple[dict[str, PhraseFamily], list[RuleProblem]]:
    """The phrase families of ``directories``; a family in an earlier directory replaces a later one."""
    families: dict[str, PhraseFamily] = {}
    problems: list[RuleProblem] = []
    for directory in directories:
        folder = directory / PHRASES_DIRECTORY
        if not folder.is_dir():
            continue
        for path in rule_files(folder):
            reader = _FileReader(display_path(path), str(directory), unchecked=unchecked)
            family = reader.phrase_family(path)
            problems.extend(reader.problems)
            if family is not None and family.name not in families:
                families[family.name] = family
    return families, problems


def load_rules(
    directories: Sequence[Path], phrase_directories: Sequence[Path] = (), *, unchecked: set[str] | None = None
) -> tuple[list[Rule], list[RuleProblem]]:
    """All rules of ``directories`` in matching order, and every problem found in them. Phrase
    families come from ``directories`` and then ``phrase_directories`` (so that ``rules check`` of
    an operator directory knows the default families its rules cite).

    Each regex is compiled on its own to check it, unless ``unchecked`` is given: the regexes are
    then added to it as read, unchecked (two thirds of the reading time, ~24 ms for the default
    rules), for a caller that compiles them anyway and, should RE2 refuse one, reads the rules again
    with every check for the problem at its file:line (``RuleSet`` does)."""
    extra = [d for d in phrase_directories if d not in directories]
    phrases, problems = load_phrases([*directories, *extra], unchecked=unchecked)
    per_directory: list[list[Rule]] = []
    for directory in directories:
        if not directory.is_dir():
            problems.append(RuleProblem(Location(display_path(directory), 0), "rule directory not found"))
            continue
        rules: list[Rule] = []
        for path in rule_files(directory):
            found, file_problems = read_rule_file(
                path, origin=str(directory), phrases=phrases, unchecked=unchecked
            )
            rules.extend(found)
            problems.extend(file_problems)
        problems.extend(_duplicate_ids(rules))
        problems.extend(shadowed_rules(rules))
        per_directory.append(rules)

    taken: set[str] = set()
    ordered: list[Rule] = []
    for rules in per_directory:
        ordered.extend(r for r in rules if r.id not in taken)
        taken.update(r.id for r in rules)
    return ordered, problems


def read_rule_file(
    path: Path,
    origin: str = "",
    phrases: dict[str, PhraseFamily] | None = None,
    *,
    unchecked: set[str] | None = None,
) -> tuple[list[Rule], list[RuleProblem]]:
    """The rules of one file and its problems (a file with problems still yields its valid rules)."""
    reader = _FileReader(display_path(path), origin, phrases, unchecked=unchecked)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reader.problem_at(1, f"cannot read rule file: {exc}")
        return [], reader.problems
    return reader.read(text), reader.problems


def _duplicate_ids(rules: Iterable[Rule]) -> list[RuleProblem]:
    first: dict[str, Rule] = {}
    problems = []
    for rule in rules:
        if rule.id in first:
            problems.append(
                RuleProblem(
                    rule.location,
                    f"duplicate rule id '{rule.id}' (first defined at {first[rule.id].location})",
                )
            )
        else:
            first[rule.id] = rule
    return problems


class _FileReader:
    """Walks the YAML node tree (not plain Python values) so that every problem has its line."""

    def __init__(
        self,
        path: str,
        origin: str,
        phrases: dict[str, PhraseFamily] | None = None,
        *,
        unchecked: set[str] | None = None,
    ) -> None:
        self.path = path
        self.origin = origin
        self.unchecked = unchecked
        self.phrases = phrases or {}
        self.problems: list[RuleProblem] = []

    def loc(self, node: yaml.Node) -> Location:
        return Location(self.path, node.start_mark.line + 1)

    def problem_at(self, line: int, message: str) -> None:
        self.problems.append(RuleProblem(Location(self.path, line), message))

    def problem(self, node: yaml.Node, message: str) -> None:
        self.problems.append(RuleProblem(self.loc(node), message))

    def compose(self, text: str) -> yaml.Node | None:
        try:
            return yaml.compose(text, Loader=_Loader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            self.problem_at(mark.line + 1 if mark else 1, f"invalid YAML: {exc.problem or exc.context}")
        except yaml.YAMLError as exc:
            self.problem_at(1, f"invalid YAML: {exc}")
        return None

    def phrase_family(self, path: Path) -> PhraseFamily | None:
        """One phrases/<family>.yaml: ``family`` (the file's stem), ``description``, ``phrases``."""
        try:
            root = self.compose(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            self.problem_at(1, f"cannot read phrase file: {exc}")
            return None
        if root is None:
            return None
        keys = self.mapping(root, PHRASE_FILE_KEYS, "a phrase file", "a mapping with family, description, phrases")
        if keys is None:
            return None
        for required in PHRASE_FILE_KEYS:
            if required not in keys:
                self.problem(root, f"a phrase file needs '{required}'")
        if len(keys) < len(PHRASE_FILE_KEYS):
            return None
        name = self.text(keys["family"][1], "the family name") or ""
        if name and name != path.stem:
            self.problem(keys["family"][1], f"family '{name}' must be written in a file named {name}.yaml")
        description = self.text(keys["description"][1], "the description of a phrase family") or ""
        listing = keys["phrases"][1]
        test = self.test("diagnostic", listing, f"phrase family '{name}'")
        if test is None or not isinstance(test, FieldTest) or not name or name != path.stem:
            return None
        return PhraseFamily(name, description.strip(), test.patterns, self.loc(root))

    def read(self, text: str) -> list[Rule]:
        try:
            root = yaml.compose(text, Loader=_Loader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            self.problem_at(mark.line + 1 if mark else 1, f"invalid YAML: {exc.problem or exc.context}")
            return []
        except yaml.YAMLError as exc:
            self.problem_at(1, f"invalid YAML: {exc}")
            return []
        if root is None:
            return []
        top = self.mapping(root, FILE_KEYS, "a rule file", "a mapping with a 'rules' list")
        if top is None:
            return []
        if "rules" not in top:
            self.problem(root, "a rule file needs a 'rules' list")
            return []
        listing = top["rules"][1]
        if not isinstance(listing, yaml.SequenceNode):
            self.problem(listing, "'rules' must be a list of rules")
            return []
        rules = []
        for item in listing.value:
            rule = self.rule(item)
            if rule is not None:
                rules.append(rule)
        return rules

    def mapping(
        self, node: yaml.Node, allowed: Sequence[str], what: str, expected: str = "a mapping"
    ) -> dict[str, tuple[yaml.Node, yaml.Node]] | None:
        """The keys of a mapping node, reporting unknown and repeated keys."""
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, f"{what} must be {expected}")
            return None
        found: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str) or key not in allowed:
                shown = key if isinstance(key, str) else "(not a name)"
                self.problem(
                    key_node,
                    f"unknown key '{shown}' in {what} (expected one of: {', '.join(allowed)})",
                )
                continue
            if key in found:
                self.problem(key_node, f"key '{key}' is given twice in {what}")
                continue
            found[key] = (key_node, value_node)
        return found

    def text(self, node: yaml.Node, what: str) -> str | None:
        if not isinstance(node, yaml.ScalarNode) or node.tag.endswith(":null"):
            self.problem(node, f"{what} must be a single value")
            return None
        return str(node.value)

    def rule(self, node: yaml.Node) -> Rule | None:
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, "a rule must be a mapping with id, description, match and result")
            return None
        rule_id = "?"
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == "id":
                rule_id = str(value_node.value) if isinstance(value_node, yaml.ScalarNode) else "?"
        what = f"rule '{rule_id}'"
        before = len(self.problems)
        keys = self.mapping(node, RULE_KEYS, what)
        if keys is None:
            return None
        for required in RULE_KEYS:
            if required not in keys:
                self.problem(node, f"{what} has no '{required}'")
        if "id" in keys and not valid_rule_id(rule_id):
            self.problem(
                keys["id"][1],
                f"invalid rule id '{rule_id}' (lower-case letters, digits, '.', '_' and '-')",
            )
        description = ""
        if "description" in keys:
            description = self.text(keys["description"][1], f"the description of {what}") or ""
            if "\n" in description.strip():
                self.problem(keys["description"][1], f"the description of {what} must be one line")
        condition = self.condition(keys["match"][1], what) if "match" in keys else None
        result = self.result(keys["result"][1], what) if "result" in keys else None
        if len(self.problems) > before or condition is None or result is None:
            return None
        return Rule(rule_id, description.strip(), condition, result, self.loc(node), self.origin)

    def condition(self, node: yaml.Node, what: str) -> Condition | None:
        keys = self.mapping(node, (*FIELDS, SAYS, *COMBINATORS), f"the conditions of {what}")
        if keys is None:
            return None
        children: list[Condition] = []
        ok = True
        for name, (_key_node, value_node) in keys.items():
            child: Condition | None
            if name in ("all", "any"):
                child = self.group(name, value_node, what)
            elif name == SAYS:
                child = self.says(value_node, what)
            elif name == "not":
                inner = self.condition(value_node, what)
                child = Not(inner, self.loc(value_node)) if inner is not None else None
            else:
                child = self.test(name, value_node, what)
            if child is None:
                ok = False
            else:
                children.append(child)
        if not ok:
            return None
        if len(children) == 1:
            return children[0]
        return AllOf(tuple(children), self.loc(node))

    def group(self, name: str, node: yaml.Node, what: str) -> Condition | None:
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            self.problem(node, f"'{name}' in {what} must be a non-empty list of conditions")
            return None
        children = [self.condition(item, what) for item in node.value]
        if any(c is None for c in children):
            return None
        kept = tuple(c for c in children if c is not None)
        return AllOf(kept, self.loc(node)) if name == "all" else AnyOf(kept, self.loc(node))

    def says(self, node: yaml.Node, what: str) -> Condition | None:
        """``says: [family, ...]``: the reply matches a pattern of one of the named phrase families."""
        items = node.value if isinstance(node, yaml.SequenceNode) else [node]
        names: list[str] = []
        patterns: list[str] = []
        for item in items:
            name = self.text(item, f"each 'says' family of {what}")
            if name is None:
                return None
            family = self.phrases.get(name)
            if family is None:
                known = ", ".join(sorted(self.phrases)) or "none"
                self.problem(item, f"{what}: unknown phrase family '{name}' (known: {known})")
                return None
            names.append(name)
            patterns.extend(p for p in family.patterns if p not in patterns)
        if not names:
            self.problem(node, f"'says' in {what} names no phrase family")
            return None
        return FieldTest("diagnostic", tuple(patterns), self.loc(node), tuple(names))

    def test(self, name: str, node: yaml.Node, what: str) -> Condition | None:
        items = node.value if isinstance(node, yaml.SequenceNode) else [node]
        if not items:
            self.problem(node, f"'{name}' in {what} has no pattern")
            return None
        before = len(self.problems)
        patterns: list[str] = []
        for item in items:
            raw = self.text(item, f"each '{name}' pattern of {what}")
            if raw is None:
                continue
            try:
                pattern = normalise_pattern(name, raw, check_regex=self.unchecked is None)
                if self.unchecked is not None and FIELDS[name] is FieldKind.REGEX:
                    self.unchecked.add(pattern)
            except PatternError as exc:
                self.problem(item, f"{what}: invalid {name} pattern '{raw}': {exc}")
                continue
            if pattern not in patterns:
                patterns.append(pattern)
        if len(self.problems) > before:
            return None
        return FieldTest(name, tuple(patterns), self.loc(node))

    def choice(
        self, keys: dict[str, tuple[yaml.Node, yaml.Node]], name: str, what: str, kind: type[_Choice]
    ) -> _Choice | None:
        """The ``name`` member of a result as one of ``kind`` (a problem listing them if it is none)."""
        if name not in keys:
            return None
        value_node = keys[name][1]
        raw = self.text(value_node, f"the {name} of {what}")
        try:
            return kind(raw) if raw is not None else None
        except ValueError:
            self.problem(
                value_node, f"{what}: unknown {name} '{raw}' (expected one of: {', '.join(str(c) for c in kind)})"
            )
            return None

    def result(self, node: yaml.Node, what: str) -> Result | None:
        keys = self.mapping(node, RESULT_KEYS, f"the result of {what}")
        if keys is None:
            return None
        before = len(self.problems)
        reason = bounce_type = action = ttl = None
        for required in ("reason", "bounce_type"):
            if required not in keys:
                self.problem(node, f"the result of {what} has no '{required}'")
        if "reason" in keys:
            value_node = keys["reason"][1]
            reason = self.text(value_node, f"the reason of {what}")
            if reason is not None and reason not in REASONS:
                self.problem(value_node, f"{what}: unknown reason '{reason}' (see rules/README.md)")
        bounce_type = self.choice(keys, "bounce_type", what, BounceType)
        action = self.choice(keys, "action", what, Action)
        if "ttl" in keys:
            value_node = keys["ttl"][1]
            raw = self.text(value_node, f"the ttl of {what}")
            if raw is not None:
                try:
                    ttl = parse_ttl(raw)
                except PatternError as exc:
                    self.problem(value_node, f"{what}: invalid ttl '{raw}': {exc}")
        if len(self.problems) > before or reason is None or bounce_type is None:
            return None
        return Result(reason, bounce_type, action, ttl)


# --- shadowed rules -------------------------------------------------------------------------------

Conjunction = dict[str, tuple[str, ...]]
"""One branch of a condition in disjunctive form: field -> patterns (any may match), all fields ANDed."""


@dataclass(frozen=True, slots=True)
class _RuleBranch:
    rule: Rule
    fields: frozenset[str]
    tests: Conjunction


def branches(condition: Condition, limit: int = 32) -> list[Conjunction] | None:
    """The condition as an OR of ANDed field tests, or None when it has a ``not`` (or too many branches).

    Two tests of one field in a branch are kept as the narrower one when one covers the other;
    otherwise the branch is dropped from analysis (returned as None), which only makes the shadow
    check more cautious.
    """
    if isinstance(condition, FieldTest):
        return [{condition.field: condition.patterns}]
    if isinstance(condition, Not):
        return None
    if isinstance(condition, AnyOf):
        out: list[Conjunction] = []
        for child in condition.children:
            sub = branches(child, limit)
            if sub is None:
                return None
            out.extend(sub)
        return out if len(out) <= limit else None
    product: list[Conjunction] = [{}]
    for child in condition.children:
        sub = branches(child, limit)
        if sub is None:
            return None
        combined: list[Conjunction] = []
        for left in product:
            for right in sub:
                merged = _merge(left, right)
                if merged is None:
                    return None
                combined.append(merged)
        if len(combined) > limit:
            return None
        product = combined
    return product


def _merge(left: Conjunction, right: Conjunction) -> Conjunction | None:
    merged = dict(left)
    for field, patterns in right.items():
        if field not in merged or _covers_all(field, merged[field], patterns):
            merged[field] = patterns
        elif not _covers_all(field, patterns, merged[field]):
            return None
    return merged


def _covers_all(field: str, wide: tuple[str, ...], narrow: tuple[str, ...]) -> bool:
    return all(any(pattern_covers(field, w, n) for w in wide) for n in narrow)


def _branch_covers(wide: _RuleBranch, narrow: _RuleBranch) -> bool:
    return all(_covers_all(f, wide.tests[f], narrow.tests[f]) for f in wide.fields)


class _EarlierBranches:
    """Branches of earlier rules with one field set, indexed by the patterns of one exact field.

    For regex and word fields a wide branch covers a narrow one only if it has every one of the
    narrow branch's patterns, so candidates are found by one of them instead of by a full scan.
    """

    def __init__(self, fields: frozenset[str]) -> None:
        exact = sorted(f for f in fields if FIELDS[f] in (FieldKind.REGEX, FieldKind.WORD))
        exact.sort(key=lambda f: (FIELDS[f] is not FieldKind.REGEX, f == "kind"))
        self.key = exact[0] if exact else None
        self.by_pattern: dict[str, list[_RuleBranch]] = defaultdict(list)
        self.scan: list[_RuleBranch] = []

    def add(self, branch: _RuleBranch) -> None:
        if self.key is None:
            self.scan.append(branch)
        else:
            for pattern in branch.tests[self.key]:
                self.by_pattern[pattern].append(branch)

    def candidates(self, narrow: _RuleBranch) -> list[_RuleBranch]:
        if self.key is None:
            return self.scan
        return self.by_pattern.get(narrow.tests[self.key][0], [])


def shadowed_rules(rules: Sequence[Rule]) -> list[RuleProblem]:
    """Rules that can never match because an earlier rule matches every event they match."""
    earlier: dict[frozenset[str], _EarlierBranches] = {}
    problems = []
    for rule in rules:
        mine = branches(rule.condition)
        own = [_RuleBranch(rule, frozenset(b), b) for b in mine] if mine is not None else []
        if own:
            blocker = _covering_rule(own, earlier)
            if blocker is not None:
                problems.append(
                    RuleProblem(
                        rule.location,
                        f"rule '{rule.id}' can never match: rule '{blocker.id}' ({blocker.location}) "
                        "matches every event it matches",
                    )
                )
        for branch in own:
            if branch.fields not in earlier:
                earlier[branch.fields] = _EarlierBranches(branch.fields)
            earlier[branch.fields].add(branch)
    return problems


def _covering_rule(own: list[_RuleBranch], earlier: dict[frozenset[str], _EarlierBranches]) -> Rule | None:
    """The earliest rule that covers all of ``own``'s branches (each maybe by a different branch)."""
    blockers: set[str] | None = None
    first: dict[str, Rule] = {}
    for branch in own:
        found: set[str] = set()
        for fields, group in earlier.items():
            if not fields <= branch.fields:
                continue
            for candidate in group.candidates(branch):
                if candidate.rule.id not in found and _branch_covers(candidate, branch):
                    found.add(candidate.rule.id)
                    first.setdefault(candidate.rule.id, candidate.rule)
        blockers = found if blockers is None else blockers & found
        if not blockers:
            return None
    if not blockers:
        return None
    return min((first[b] for b in blockers), key=lambda r: r.location)
