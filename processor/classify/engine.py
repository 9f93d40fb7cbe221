"""The rule engine: rules compiled once into one matcher, and a reloadable holder for it.

Compilation splits every condition into *atoms* (one field, one pattern), numbered as bits.
Classifying an event first computes which atoms hold, with one look-up or one combined match per
field, whatever the number of rules:

- status and reply-code patterns: a dict look-up of the 8 wildcard forms of the event's code;
- words (kind, command, MTA family, feedback type, DSN action): a dict look-up;
- text regexes (diagnostic, notice): one RE2 set match (linear time) per field over all of them;
- host and domain patterns: a dict look-up for names, one RE2 set match for wildcards.

Each rule is indexed under a few atoms that must hold for it to match (its *trigger*); only rules
whose trigger holds, plus the few rules without a trigger (a ``not`` at the top), are then
evaluated, in file order, as boolean tests on the atom bits. The first that holds wins.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from processor.classify.loader import PHRASES_DIRECTORY, load_rules, rule_files
from processor.classify.schema import (
    FIELD_GETTERS,
    FIELDS,
    AnyOf,
    Condition,
    FieldKind,
    FieldTest,
    Location,
    Not,
    PatternError,
    Rule,
    RuleProblem,
    RulesError,
    code_variants,
    compile_regex,
    domain_regex,
    regex_options,
)
from processor.records import BounceType, Event, Verdict


def _log() -> Any:
    """The module's logger, imported on first use: classifying never logs, only reloading does."""
    import structlog

    return structlog.get_logger(__name__)

UNMATCHED_REASON = "undefined"
MAX_DIAGNOSTIC = 16_384
"""Only this much of a diagnostic is matched (reports put the useful text first)."""
MEMO_ENTRIES = 2048
MEMO_CHARACTERS = 2048
"""Each regex set remembers the atoms of up to MEMO_ENTRIES texts of at most MEMO_CHARACTERS
characters: a server's reply, once masked, is the same for every recipient. At most 4 MB of ASCII
text per set (replies are mostly under 300 characters, notices under 900: about 1 MB in all)."""

Predicate = Callable[[int], bool]
Reader = Callable[[Event], str]

_SELECTIVITY: dict[str, int] = {
    "diagnostic": 1,
    "notice": 1,
    "remote_mta": 2,
    "recipient_domain": 2,
    "reporting_mta": 3,
    "feedback_type": 20,
    "mta": 30,
    "provider_category": 5,
    "provider": 30,
    "smtp_command": 40,
    "dsn_action": 80,
    "kind": 100,
}
"""Rough share of events an atom of each field holds for: triggers prefer the rarest atoms."""


@lru_cache(maxsize=4096)
def _status_variants(code: str) -> tuple[str, ...]:
    return tuple(code_variants(code, "."))


@lru_cache(maxsize=4096)
def _reply_variants(code: str) -> tuple[str, ...]:
    return tuple(code_variants(code, ""))


def _bits(mask: int) -> Iterator[int]:
    """Indexes of the set bits of ``mask``, lowest first."""
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


class _RegexSet:
    """Many RE2 regexes matched against one text; ``match`` gives the atom mask of the hits.

    An RE2 ``Filter`` (FilteredRE2): the literal strings each regex requires are found in one
    pass, and only the regexes whose literals are all present (plus those without any) run. A
    single RE2 ``Set`` of every regex gives the same answer, but its combined DFA is built state
    by state on new text: on replies never seen before it cost about 1.9x more per event
    (173 against 93 µs; tests/bench/classify_bench.py prints the "unseen replies" cost).

    The masks of recent texts are remembered (``MEMO_ENTRIES`` texts of up to ``MEMO_CHARACTERS``).
    The texts are what the rules read: ``diagnostic`` with its addresses, hosts, IPs and URLs
    masked, host and domain names, so a stream of bounces repeats them whenever a server gives the
    same reply to many recipients (``notice``, the report's prose, is not masked and seldom
    repeats). Over the training corpora and samples, each message once, 41% of the look-ups hit.
    The memo belongs to one compiled rule set: a reload starts a new one."""

    def __init__(self, sources: Sequence[str], bits: Sequence[int], anchor: str) -> None:
        import re2

        self._bits = tuple(bits)
        self._memo: dict[str, int] = {}
        self._filter: Any = None
        if not sources:
            return
        options = regex_options()
        compiled = re2.Filter()
        try:
            for source in sources:
                compiled.Add(source if anchor == "SearchSet" else rf"\A(?:{source})\z", options)
            compiled.Compile()
        except re2.error as exc:
            raise RulesError(
                [RuleProblem(Location("<rules>", 0), f"cannot compile the rule regexes: {exc}")]
            ) from None
        self._filter = compiled

    def match(self, text: str) -> int:
        if self._filter is None:
            return 0
        memo = self._memo
        mask = memo.get(text)
        if mask is not None:
            return mask
        mask = 0
        bits = self._bits
        for index in self._filter.Match(text.encode("utf-8")) or ():
            mask |= bits[index]
        if len(text) <= MEMO_CHARACTERS:
            if len(memo) >= MEMO_ENTRIES:
                memo.clear()  # cheaper than an LRU's book-keeping on every hit; refills at once
            memo[text] = mask
        return mask


@dataclass(frozen=True, slots=True)
class Atom:
    field: str
    pattern: str


class CompiledRules:
    """An immutable matcher for an ordered list of rules."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.atoms: list[Atom] = []
        self._atom_index: dict[Atom, int] = {}
        for rule in self.rules:
            self._collect(rule.condition)

        self._codes: list[tuple[Reader, Callable[[str], tuple[str, ...]], dict[str, int]]] = []
        self._words: list[tuple[Reader, dict[str, int]]] = []
        self._domains: list[tuple[Reader, dict[str, int], _RegexSet | None]] = []
        self._texts: list[tuple[Reader, _RegexSet]] = []
        self._build_tables()

        self._predicates: list[Predicate] = []
        self._rules_by_atom: list[int] = [0] * len(self.atoms)
        self._always = 0
        for position, rule in enumerate(self.rules):
            self._predicates.append(self._compile(rule.condition))
            trigger = self._trigger(rule.condition)
            if trigger is None:
                self._always |= 1 << position
            else:
                for atom in trigger[1]:
                    self._rules_by_atom[atom] |= 1 << position
        self._verdicts = [
            (r.id, r.result.reason, r.result.bounce_type, r.result.action, r.result.ttl) for r in self.rules
        ]

    # --- compilation --------------------------------------------------------------------------

    def _atom(self, field: str, pattern: str) -> int:
        atom = Atom(field, pattern)
        index = self._atom_index.get(atom)
        if index is None:
            index = self._atom_index[atom] = len(self.atoms)
            self.atoms.append(atom)
        return index

    def _collect(self, condition: Condition) -> None:
        if isinstance(condition, FieldTest):
            for pattern in condition.patterns:
                self._atom(condition.field, pattern)
        elif isinstance(condition, Not):
            self._collect(condition.child)
        else:
            for child in condition.children:
                self._collect(child)

    def _build_tables(self) -> None:
        by_field: dict[str, list[tuple[int, str]]] = {}
        for index, atom in enumerate(self.atoms):
            by_field.setdefault(atom.field, []).append((index, atom.pattern))
        for field, atoms in by_field.items():
            kind = FIELDS[field]
            read = FIELD_GETTERS[field]
            if kind is FieldKind.REGEX:
                self._texts.append((read, _RegexSet([p for _, p in atoms], [1 << i for i, _ in atoms], "SearchSet")))
                continue
            exact: dict[str, int] = {}
            wild: list[tuple[int, str]] = []
            for index, pattern in atoms:
                if kind is FieldKind.DOMAIN and "*" in pattern:
                    wild.append((index, pattern))
                else:
                    exact[pattern] = exact.get(pattern, 0) | 1 << index
            if kind is FieldKind.STATUS:
                self._codes.append((read, _status_variants, exact))
            elif kind is FieldKind.REPLY:
                self._codes.append((read, _reply_variants, exact))
            elif kind is FieldKind.DOMAIN:
                globs = (
                    _RegexSet([domain_regex(p) for _, p in wild], [1 << i for i, _ in wild], "FullMatchSet")
                    if wild
                    else None
                )
                self._domains.append((read, exact, globs))
            else:
                self._words.append((read, exact))

    def regexes(self) -> set[str]:
        """The regexes the text fields' RE2 sets compiled (each with ``regex_options``, as
        ``compile_regex`` does)."""
        return {atom.pattern for atom in self.atoms if FIELDS[atom.field] is FieldKind.REGEX}

    def _mask(self, test: FieldTest) -> int:
        mask = 0
        for pattern in test.patterns:
            mask |= 1 << self._atom_index[Atom(test.field, pattern)]
        return mask

    def _compile(self, condition: Condition) -> Predicate:
        if isinstance(condition, FieldTest):
            wanted = self._mask(condition)
            return lambda atoms: bool(atoms & wanted)
        if isinstance(condition, Not):
            inner = self._compile(condition.child)
            return lambda atoms: not inner(atoms)
        if all(isinstance(c, FieldTest) for c in condition.children):
            masks = tuple(self._mask(c) for c in condition.children if isinstance(c, FieldTest))
            if isinstance(condition, AnyOf):
                either = 0
                for m in masks:
                    either |= m
                return lambda atoms: bool(atoms & either)
            return lambda atoms: all(atoms & m for m in masks)
        parts = tuple(self._compile(c) for c in condition.children)
        if isinstance(condition, AnyOf):
            return lambda atoms: any(p(atoms) for p in parts)
        return lambda atoms: all(p(atoms) for p in parts)

    def _trigger(self, condition: Condition) -> tuple[int, frozenset[int]] | None:
        """(cost, atoms): one of ``atoms`` holds whenever ``condition`` does; None if no such set."""
        if isinstance(condition, FieldTest):
            cost = sum(self._selectivity(condition.field, p) for p in condition.patterns)
            return cost, frozenset(self._atom_index[Atom(condition.field, p)] for p in condition.patterns)
        if isinstance(condition, Not):
            return None
        found = [self._trigger(c) for c in condition.children]
        if isinstance(condition, AnyOf):
            if any(t is None for t in found):
                return None
            atoms = frozenset().union(*(t[1] for t in found if t is not None))
            return sum(t[0] for t in found if t is not None), atoms
        candidates = [t for t in found if t is not None]
        return min(candidates, key=lambda t: t[0]) if candidates else None

    @staticmethod
    def _selectivity(field: str, pattern: str) -> int:
        if field in ("status", "reply_code"):
            return 3 + 10 * pattern.count("*")
        return _SELECTIVITY.get(field, 10)

    # --- matching -----------------------------------------------------------------------------

    def atom_mask(self, event: Event) -> int:
        """The atoms that hold for ``event``, as bits."""
        mask = 0
        for read, variants, table in self._codes:
            code = read(event)
            if code:
                for variant in variants(code):
                    mask |= table.get(variant, 0)
        for read, table in self._words:
            mask |= table.get(read(event), 0)
        for read, table, globs in self._domains:
            name = read(event)
            if name:
                mask |= table.get(name, 0)
                if globs is not None:
                    mask |= globs.match(name)
        for read, regexes in self._texts:
            text = read(event)
            if text:
                mask |= regexes.match(text[:MAX_DIAGNOSTIC])
        return mask

    def _candidates(self, atoms: int) -> int:
        rules = self._always
        by_atom = self._rules_by_atom
        for index in _bits(atoms):
            rules |= by_atom[index]
        return rules

    def first_match(self, event: Event) -> int | None:
        """The position of the rule that classifies ``event``, or None."""
        atoms = self.atom_mask(event)
        predicates = self._predicates
        for position in _bits(self._candidates(atoms)):
            if predicates[position](atoms):
                return position
        return None

    def all_matches(self, event: Event) -> list[int]:
        """Positions of every rule that matches ``event``, in order (the first one wins)."""
        atoms = self.atom_mask(event)
        return [p for p in _bits(self._candidates(atoms)) if self._predicates[p](atoms)]

    def classify(self, event: Event) -> Verdict:
        position = self.first_match(event)
        if position is None:
            return Verdict(event, UNMATCHED_REASON, BounceType.UNDETERMINED, "")
        rule_id, reason, bounce_type, action, ttl = self._verdicts[position]
        return Verdict(event, reason, bounce_type, rule_id, action, ttl)


def _fingerprint(directories: Sequence[Path]) -> tuple[tuple[str, int, int], ...]:
    """What the rule files look like on disk now (names, sizes, modification times)."""
    seen = []
    for directory in directories:
        try:
            paths = [directory, *rule_files(directory)]
            phrases = directory / PHRASES_DIRECTORY
            if phrases.is_dir():
                paths += [phrases, *rule_files(phrases)]
        except OSError:
            seen.append((str(directory), -1, -1))
            continue
        for path in paths:
            try:
                st = os.stat(path)
            except OSError:
                seen.append((str(path), -1, -1))
                continue
            seen.append((str(path), st.st_mtime_ns, st.st_size))
    return tuple(seen)


class RuleSet:
    """The rules of some directories, reloadable: a failed reload keeps the rules already loaded.

    ``classify`` is safe to call from other threads while ``reload`` runs: the compiled rules are
    swapped in one assignment once they are complete.
    """

    def __init__(self, directories: Sequence[Path]) -> None:
        self.directories = tuple(Path(d) for d in directories)
        fingerprint = _fingerprint(self.directories)
        self._compiled = self._build()
        self._fingerprint = fingerprint

    def _build(self) -> CompiledRules:
        # Compiling the rules compiles their regexes: read the files without compiling each regex
        # on its own first, then check alone only those the rules do not use (a phrase family no
        # rule cites, a default rule an operator's replaces). Should RE2 refuse any, the files
        # are read again with every check, for the same problems at the same file:line.
        unchecked: set[str] = set()
        rules, problems = load_rules(self.directories, unchecked=unchecked)
        if not problems:
            try:
                compiled = CompiledRules(rules)
                for pattern in unchecked - compiled.regexes():
                    compile_regex(pattern)
                return compiled
            except (RulesError, PatternError):
                pass
        rules, problems = load_rules(self.directories)
        if problems:
            raise RulesError(problems)
        return CompiledRules(rules)

    @property
    def compiled(self) -> CompiledRules:
        return self._compiled

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self._compiled.rules

    def classify(self, event: Event) -> Verdict:
        return self._compiled.classify(event)

    def changed(self) -> bool:
        """True when a rule file was added, removed or modified since the last (re)load."""
        return _fingerprint(self.directories) != self._fingerprint

    def reload(self) -> list[RuleProblem]:
        """Read the rule files again. On any problem, keep the current rules and return the problems."""
        fingerprint = _fingerprint(self.directories)
        try:
            compiled = self._build()
        except RulesError as exc:
            for problem in exc.problems:
                _log().error("rules_invalid", location=str(problem.location), problem=problem.message)
            _log().warning("rules_reload_failed", kept_rules=len(self._compiled.rules))
            self._fingerprint = fingerprint
            return exc.problems
        self._compiled = compiled
        self._fingerprint = fingerprint
        _log().info("rules_reloaded", rules=len(compiled.rules))
        return []
