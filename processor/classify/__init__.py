"""Classification: what an event MEANS (reason, bounce type), decided by rules. Pure: no I/O."""

from __future__ import annotations

from typing import Protocol

from processor.config import RulesSettings
from processor.records import Event, Verdict


class Classifier(Protocol):
    def classify(self, event: Event) -> Verdict: ...


def load_classifier(settings: RulesSettings | None = None) -> Classifier:
    """The classifier for the configured rule directories (placeholder: built-in mapping)."""
    from processor.classify.builtin import BuiltinClassifier

    return BuiltinClassifier()
