"""``rules suggest``: group the replies no rule decided (or that an operator corrected by hand) by
their normalised text and propose a rule for each group, for an operator to review and paste.

The normal form is the reply as the rules see it (processor/classify/reply.py: envelope cut off,
addresses, hosts, IPs and URLs masked) with numbers and identifiers masked as well, so that one
server's refusal of a thousand recipients is one group. The proposed pattern is that text after
the leading codes, escaped, with the masks turned back into patterns that match what they hid.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from processor.classify.reply import split_reply

_ID = re.compile(r"(?<![A-Za-z0-9+/=_.-])(?=[A-Za-z0-9+/=_.-]*\d)(?=[A-Za-z0-9+/=_.-]*[A-Za-z])[A-Za-z0-9+/=_.-]{12,}")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)*(?![\w])")
_LEADING_CODES = re.compile(r"^\s*(?:[245]\d\d[\s-]+)?(?:#?[245]\.\d{1,3}\.\d{1,3}\s*)?[-:]?\s*")
_MASKS = {"<address>": r"<address>", "<host>": r"<host>", "<ip>": r"<ip>", "<url>": r"<url>",
          "<id>": r"\S+", "<n>": r"[\d.]+"}
_TOKEN = re.compile("|".join(re.escape(t) for t in _MASKS))
_WORDS = 12
"""Words of the normal form kept in a proposed pattern: enough to be specific, short enough to generalise."""


def normal_form(diagnostic: str) -> str:
    """The reply with addresses, hosts, IPs, URLs, numbers and ids masked, lower-case."""
    text = split_reply(diagnostic).text
    codes = _LEADING_CODES.match(text)
    head = text[: codes.end()].strip() if codes else ""
    body = text[codes.end() :] if codes else text
    body = _ID.sub("<id>", body)
    body = _NUMBER.sub("<n>", body)
    return " ".join(f"{head} {body}".lower().split())


def _pattern(normal: str) -> str:
    body = normal[_LEADING_CODES.match(normal).end() :]  # type: ignore[union-attr]
    words = body.split()[:_WORDS]
    text = " ".join(words).rstrip(".,;:")
    out: list[str] = []
    last = 0
    for m in _TOKEN.finditer(text):
        out.append(re.escape(text[last : m.start()]).replace("\\ ", " "))
        out.append(_MASKS[m.group(0)])
        last = m.end()
    out.append(re.escape(text[last:]).replace("\\ ", " "))
    return "".join(out)


@dataclass
class Group:
    """Stored events whose replies share one normal form."""

    normal: str
    count: int = 0
    examples: list[tuple[str, str, str]] = field(default_factory=list)
    """(received at, recipient, diagnostic) of the first few events."""
    statuses: dict[str, int] = field(default_factory=dict)
    corrections: dict[str, int] = field(default_factory=dict)
    kinds: dict[str, int] = field(default_factory=dict)


def group_events(
    events: Iterable[tuple[str, str, str, str, str, str]], examples: int = 3
) -> list[Group]:
    """Groups of (received_at, recipient, kind, status, diagnostic, correction) rows, largest first."""
    groups: dict[str, Group] = {}
    for received, recipient, kind, status, diagnostic, correction in events:
        if not diagnostic.strip():
            continue
        normal = normal_form(diagnostic)
        group = groups.setdefault(normal, Group(normal))
        group.count += 1
        if len(group.examples) < examples:
            group.examples.append((received, recipient, diagnostic))
        group.statuses[status] = group.statuses.get(status, 0) + 1
        group.kinds[kind] = group.kinds.get(kind, 0) + 1
        if correction:
            group.corrections[correction] = group.corrections.get(correction, 0) + 1
    return sorted(groups.values(), key=lambda g: (-g.count, g.normal))


def _most(counts: dict[str, int]) -> str:
    return max(sorted(counts), key=lambda k: counts[k]) if counts else ""


def _yaml_quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def proposed_rule(group: Group, number: int) -> str:
    """A rule for ``group`` in the rule-file format, with its count and examples as comments."""
    correction = _most(group.corrections)
    if correction.startswith("manual_add"):
        reason = correction.partition(":")[2] or "userunknown"
        bounce_type = "hard"
        why = f"an operator suppressed these addresses by hand ({correction})"
    elif correction == "manual_remove":
        reason, bounce_type = "filtered", "soft"
        why = "an operator lifted the suppression of these addresses by hand"
    else:
        reason, bounce_type = "undefined", "undetermined"
        why = "no rule decided them: choose reason and bounce_type"
    status = _most(group.statuses)
    slug = re.sub(r"[^a-z0-9]+", "-", _pattern(group.normal).lower()).strip("-")[:40].strip("-") or "reply"
    kind = _most(group.kinds) or "failure"
    lines = [
        f"  # {group.count} event(s); {why}; most common status {status or '(none)'}",
        *(f"  #   {when} {rcpt}: {diag[:160]}" for when, rcpt, diag in group.examples),
        f"  - id: suggested-{number}-{slug}",
        f"    description: {_yaml_quote('TODO: say which family of replies this covers: ' + group.normal[:80])}",
        "    match:",
        f"      kind: {kind}",
        f"      diagnostic: {_yaml_quote(_pattern(group.normal))}",
        "    result:",
        f"      reason: {reason}",
        f"      bounce_type: {bounce_type}",
    ]
    return "\n".join(lines)


def render(groups: Sequence[Group], limit: int) -> str:
    """A rule file proposing one rule per group (the ``limit`` largest groups)."""
    if not groups:
        return "# no stored event left undecided or corrected by hand in that period\n"
    shown = groups[:limit]
    head = [
        f"# rules suggest: {len(groups)} group(s) of replies, the {len(shown)} largest below.",
        "# Review each rule (reason, bounce_type, description), keep the ones you agree with in your",
        "# own rule directory, then run 'bounce-processor rules check' and 'bounce-processor rules test'.",
        "rules:",
    ]
    return "\n".join(head + [proposed_rule(g, i) + "\n" for i, g in enumerate(shown, 1)])
