"""Why an event got its verdict: the rule that matched, which condition matched what text, and the
rules that would have matched next. Used by ``bounce-processor explain``; slow on purpose (it
re-checks every pattern one by one), never on the per-message path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from processor.classify.engine import CompiledRules
from processor.classify.reply import split_reply
from processor.classify.schema import (
    FIELDS,
    AnyOf,
    Condition,
    FieldKind,
    FieldTest,
    Not,
    Rule,
    code_variants,
    compile_regex,
    field_value,
    pattern_covers,
)
from processor.records import Event, Verdict

SHOWN_FIELDS = (
    "kind",
    "status",
    "reply_code",
    "smtp_command",
    "dsn_action",
    "mta",
    "remote_mta",
    "reporting_mta",
    "recipient_domain",
    "feedback_type",
    "diagnostic_type",
)


@dataclass(frozen=True, slots=True)
class RuleMatch:
    rule: Rule
    why: list[str]
    """One line per condition, indented by depth: what matched what."""


@dataclass(frozen=True, slots=True)
class Explanation:
    event: Event
    verdict: Verdict
    matched: RuleMatch | None
    also: list[Rule] = field(default_factory=list)
    """The next rules that match too (they lose because an earlier rule wins)."""
    evidence: list[str] = field(default_factory=list)
    """Each piece of evidence the event offers (text family, status, reply code, stage, MTA)."""
    decided_by: str = ""
    """Which pieces of evidence the deciding rule tested."""
    codes_say: str = ""
    """What the first matching rule that reads no text (codes, stage, kind) would have said, and
    whether it agrees with the verdict ("" when no such rule matches)."""


EVIDENCE_OF_FIELD = {
    "diagnostic": "text",
    "notice": "text",
    "mentioned_hosts": "host",
    "remote_mta": "host",
    "reporting_mta": "host",
    "recipient_domain": "host",
    "status": "status",
    "reply_code": "reply code",
    "smtp_command": "stage",
    "mta": "mta",
    "diagnostic_type": "mta",
    "names_recipient": "address",
    "kind": "kind",
    "dsn_action": "kind",
    "feedback_type": "kind",
}
"""The kind of evidence each condition field is (rules/README.md, "Evidence and precedence")."""


def explain(compiled: CompiledRules, event: Event, next_rules: int = 3) -> Explanation:
    positions = compiled.all_matches(event)
    verdict = compiled.classify(event)
    evidence = _evidence(compiled, event)
    if not positions:
        return Explanation(event, verdict, None, evidence=evidence)
    first = compiled.rules[positions[0]]
    why: list[str] = []
    _trace(first.condition, event, why, 0)
    return Explanation(
        event,
        verdict,
        RuleMatch(first, why),
        [compiled.rules[p] for p in positions[1 : 1 + next_rules]],
        evidence,
        _decided_by(first.condition),
        _codes_say(compiled, positions, verdict),
    )


def _codes_say(compiled: CompiledRules, positions: list[int], verdict: Verdict) -> str:
    for position in positions[1:]:
        rule = compiled.rules[position]
        if "text" in _decided_by(rule.condition) or "host" in _decided_by(rule.condition):
            continue
        same = (rule.result.reason, rule.result.bounce_type) == (verdict.reason, verdict.bounce_type)
        return (
            f"{rule.result.reason} ({rule.result.bounce_type}) by {rule.id}: "
            f"{'agrees' if same else 'overruled by the text'}"
        )
    return ""


def _families(condition: Condition, found: dict[str, tuple[str, ...]]) -> None:
    if isinstance(condition, FieldTest):
        if len(condition.families) == 1:
            found.setdefault(condition.families[0], condition.patterns)
    elif isinstance(condition, Not):
        _families(condition.child, found)
    else:
        for child in condition.children:
            _families(child, found)


def _evidence(compiled: CompiledRules, event: Event) -> list[str]:
    families: dict[str, tuple[str, ...]] = {}
    for rule in compiled.rules:
        _families(rule.condition, families)
    reply = field_value(event, "diagnostic")
    said = sorted(
        name for name, patterns in families.items() if reply and any(compile_regex(p).search(reply) for p in patterns)
    )
    lines = [f"text says {', '.join(said)}" if said else "text: no phrase family"]
    for name, label in (("status", "status"), ("reply_code", "reply code"), ("smtp_command", "stage"), ("mta", "mta")):
        value = field_value(event, name)
        lines.append(f"{label} {value}" if value else f"{label}: none")
    return lines


def _decided_by(condition: Condition) -> str:
    """The evidence kinds the (positive) conditions of a rule test, in a stable order."""
    kinds: list[str] = []

    def walk(node: Condition) -> None:
        if isinstance(node, FieldTest):
            kind = "text (" + " or ".join(node.families) + ")" if node.families else EVIDENCE_OF_FIELD[node.field]
            if kind not in kinds:
                kinds.append(kind)
        elif isinstance(node, AnyOf) or not isinstance(node, Not):
            for child in node.children:
                walk(child)

    walk(condition)
    return ", ".join(k for k in kinds if k != "kind") or "kind"


def _pattern_hit(field: str, pattern: str, value: str) -> str | None:
    """The text ``pattern`` matched in ``value`` (for display), or None."""
    if not value:
        return None
    kind = FIELDS[field]
    if kind is FieldKind.REGEX:
        found = compile_regex(pattern).search(value)
        return str(found.group(0)) if found is not None else None
    if kind is FieldKind.STATUS or kind is FieldKind.REPLY:
        return value if pattern in code_variants(value, "." if kind is FieldKind.STATUS else "") else None
    if kind is FieldKind.DOMAIN:
        return value if pattern_covers(field, pattern, value) else None
    return value if value == pattern else None


def _holds(condition: Condition, event: Event) -> bool:
    if isinstance(condition, FieldTest):
        value = field_value(event, condition.field)
        return any(_pattern_hit(condition.field, p, value) is not None for p in condition.patterns)
    if isinstance(condition, Not):
        return not _holds(condition.child, event)
    if isinstance(condition, AnyOf):
        return any(_holds(c, event) for c in condition.children)
    return all(_holds(c, event) for c in condition.children)


def _trace(condition: Condition, event: Event, lines: list[str], depth: int) -> None:
    pad = "  " * depth
    if isinstance(condition, FieldTest):
        value = field_value(event, condition.field)
        for pattern in condition.patterns:
            hit = _pattern_hit(condition.field, pattern, value)
            if hit is None:
                continue
            if condition.families:
                lines.append(
                    f"{pad}says {' or '.join(condition.families)}: /{_clip(pattern, 80)}/ on \"{_clip(hit)}\""
                )
            elif FIELDS[condition.field] is FieldKind.REGEX:
                lines.append(f"{pad}{condition.field} matches /{pattern}/ on \"{_clip(hit)}\"")
            elif hit == pattern:
                lines.append(f"{pad}{condition.field} is {hit}")
            else:
                lines.append(f"{pad}{condition.field} {hit} matches {pattern}")
            return
        lines.append(f"{pad}{condition.field}: no pattern matched \"{_clip(value)}\"")
        return
    if isinstance(condition, Not):
        state = "does not hold" if not _holds(condition.child, event) else "HOLDS"
        lines.append(f"{pad}not ({_describe(condition.child)}): {state}")
        return
    if isinstance(condition, AnyOf):
        lines.append(f"{pad}any of:")
        for child in condition.children:
            if _holds(child, event):
                _trace(child, event, lines, depth + 1)
                return
        return
    if not condition.children:
        lines.append(f"{pad}(no conditions: matches every event)")
        return
    if depth:
        lines.append(f"{pad}all of:")
        depth += 1
    for child in condition.children:
        _trace(child, event, lines, depth)


def _describe(condition: Condition) -> str:
    if isinstance(condition, FieldTest):
        if condition.families:
            return f"says {', '.join(condition.families)}"
        return f"{condition.field}: {', '.join(condition.patterns)}"
    if isinstance(condition, Not):
        return f"not ({_describe(condition.child)})"
    glue = " or " if isinstance(condition, AnyOf) else " and "
    return glue.join(_describe(c) for c in condition.children) or "anything"


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def render(explanation: Explanation, index: int = 1) -> str:
    """A human-readable explanation of one event."""
    event = explanation.event
    verdict = explanation.verdict
    lines = [f"event {index}: {event.kind} {event.recipient or '(no recipient)'}"]
    for name in SHOWN_FIELDS:
        value = field_value(event, name)
        if value:
            lines.append(f"  {name:17} {value}")
    if event.diagnostic:
        lines.append(f"  {'diagnostic':17} {_clip(event.diagnostic, 400)}")
        reply = split_reply(event.diagnostic)
        lines.append(f"  {'reply':17} {_clip(reply.text, 400)}")
        if reply.mentioned_hosts:
            lines.append(f"  {'mentioned_hosts':17} {_clip(reply.mentioned_hosts, 200)}")
    if event.notice:
        lines.append(f"  {'notice':17} {_clip(event.notice, 200)}")
    lines.append(f"  verdict: {verdict.reason} ({verdict.bounce_type})")
    matched = explanation.matched
    if matched is None:
        lines.append("  rule: none matched, so the event is undetermined (it is kept, never dropped)")
        lines.append(f"  evidence: {'; '.join(explanation.evidence)}")
        return "\n".join(lines)
    rule = matched.rule
    extra = []
    if rule.result.action is not None:
        extra.append(f"action {rule.result.action}")
    if rule.result.ttl is not None:
        extra.append(f"ttl {rule.result.ttl}")
    lines.append(f"  rule: {rule.id} ({rule.location}){'  ' + ', '.join(extra) if extra else ''}")
    lines.append(f"    {rule.description}")
    lines.append(f"  evidence: {'; '.join(explanation.evidence)}")
    lines.append(f"  decided by: {explanation.decided_by}")
    if explanation.codes_say and "text" in explanation.decided_by:
        lines.append(f"  codes alone: {explanation.codes_say}")
    lines.append("  why:")
    lines.extend(f"    {line}" for line in matched.why)
    if explanation.also:
        lines.append("  would also match:")
        lines.extend(
            f"    {r.id} ({r.location}): {r.result.reason} ({r.result.bounce_type})" for r in explanation.also
        )
    return "\n".join(lines)
