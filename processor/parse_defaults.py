"""The defaults of the [parse] and [rules] sections, and where the default rules live, without
pydantic: ``bounce-processor parse`` with no configuration starts from these alone (importing
pydantic would double its start-up). ``processor.parse_settings`` builds its models on them, so
the two cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent
# The default rules live in rules/ at the top of the repository; processor/default_rules links
# there, so that a wheel ships them inside the package and a checkout reads them in place.
# (processor is a namespace package, so the path is taken from this file, not importlib.resources.)
DEFAULT_RULES_DIR = (PACKAGE_DIR / "default_rules").resolve()

MAX_MESSAGE_BYTES = 10 * 1024 * 1024
CORRELATION_HEADERS = ("X-Campaign-ID", "X-Mailer-RecptId", "X-Message-Tag")
VERP_PREFIXES = ("bounces", "bounce", "return")
