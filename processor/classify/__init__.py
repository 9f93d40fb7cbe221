"""Classification: what an event MEANS (reason, bounce type), decided by YAML rules. Pure: no I/O
once the rules are loaded.

    rules = load_classifier(settings.rules)     # RulesError (with file:line problems) if invalid
    verdict = rules.classify(event)
    problems = rules.reload()                   # on SIGHUP / file change; keeps old rules on error
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from processor.classify.engine import CompiledRules, RuleSet
from processor.classify.schema import Rule, RuleProblem, RulesError
from processor.parse_defaults import DEFAULT_RULES_DIR
from processor.records import Event, Verdict

if TYPE_CHECKING:  # the settings model imports pydantic: the default rules never need it
    from processor.parse_settings import RulesSettings

__all__ = [
    "Classifier",
    "CompiledRules",
    "Rule",
    "RuleProblem",
    "RuleSet",
    "RulesError",
    "load_classifier",
    "rule_directories",
]


class Classifier(Protocol):
    def classify(self, event: Event) -> Verdict: ...


def rule_directories(settings: RulesSettings | None = None) -> list[Path]:
    """The rule directories in matching order: the operator's first, then the defaults."""
    if settings is None:
        return [DEFAULT_RULES_DIR]  # what RulesSettings() says: no operator directories, the defaults
    directories = [Path(d) for d in settings.dirs]
    if settings.include_defaults:
        directories.append(DEFAULT_RULES_DIR)
    return directories


def load_classifier(settings: RulesSettings | None = None) -> RuleSet:
    """The rules of the configured directories, compiled; RulesError lists every problem."""
    return RuleSet(rule_directories(settings))
