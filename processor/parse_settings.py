"""The settings that parsing and classification read, apart from ``processor.config``.

``bounce-processor parse`` needs only these two sections; importing them costs pydantic alone,
where the whole ``Settings`` also imports pydantic-settings (and with it asyncio and dotenv).
``processor.config`` re-exports both classes: ``Settings.parse`` and ``Settings.rules`` are
these. ``read_parse_sections`` reads them from the TOML file and the environment the way
``load_settings`` does, for commands that need nothing else.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from processor.parse_defaults import (
    CORRELATION_HEADERS,
    DEFAULT_RULES_DIR,
    MAX_MESSAGE_BYTES,
    PACKAGE_DIR,
    PROJECT_DIR,
    VERP_PREFIXES,
)

__all__ = [  # the paths are re-exported, as before processor.parse_defaults held them
    "DEFAULT_RULES_DIR",
    "PACKAGE_DIR",
    "PROJECT_DIR",
    "ParseSettings",
    "RulesSettings",
    "SectionsError",
    "read_parse_sections",
]


class ParseSettings(BaseModel):
    max_message_bytes: int = MAX_MESSAGE_BYTES
    """Only this many bytes of a message are parsed; reports come first, so this loses nothing."""
    correlation_headers: list[str] = Field(default_factory=lambda: list(CORRELATION_HEADERS))
    """Headers of the original message that are copied into events (for example a campaign id)."""
    verp_prefixes: list[str] = Field(default_factory=lambda: list(VERP_PREFIXES))
    """Local-part prefixes of VERP return paths such as bounces+alice=example.org@sender.example."""


class RulesSettings(BaseModel):
    dirs: list[Path] = Field(default_factory=list)
    """Operator rule directories, consulted before the default rules."""
    include_defaults: bool = True
    """Also load the default rules shipped with the package (after the operator directories)."""


class SectionsError(Exception):
    """The [parse] or [rules] values are invalid (the message says which and why)."""


def read_parse_sections(config: str | None) -> tuple[ParseSettings, RulesSettings] | None:
    """[parse] and [rules] from the TOML file (``config``, else $BOUNCE_PROCESSOR_CONFIG) and
    ``BOUNCE_PARSE__*`` / ``BOUNCE_RULES__*``; None when only the full settings can say (a
    section given as one JSON variable). SectionsError for invalid values."""
    chosen = config if config is not None else os.environ.get("BOUNCE_PROCESSOR_CONFIG")
    tables: dict[str, dict[str, Any]] = {"parse": {}, "rules": {}}
    if chosen:
        import tomllib

        try:
            with Path(chosen).open("rb") as fh:
                document = tomllib.load(fh)
        except OSError:
            raise SectionsError(f"configuration file not found: {chosen}") from None
        except ValueError as exc:
            raise SectionsError(f"cannot read {chosen}: {exc}") from None
        for name, values in tables.items():
            table = document.get(name, {})
            if not isinstance(table, dict):
                raise SectionsError(f"invalid configuration in {chosen}: [{name}] is not a table")
            values.update(table)
    for variable, value in os.environ.items():
        upper = variable.upper()
        for name, values in tables.items():
            prefix = f"BOUNCE_{name.upper()}"
            if upper == prefix:
                return None
            if upper.startswith(prefix + "__"):
                field = upper.removeprefix(prefix + "__").lower()
                try:
                    values[field] = json.loads(value) if value.lstrip().startswith(("[", "{")) else value
                except json.JSONDecodeError as exc:
                    raise SectionsError(f"invalid configuration: {name}.{field}: not valid JSON ({exc})") from None
    where = f" in {chosen}" if chosen else ""
    try:
        parse = ParseSettings(**tables["parse"])
        rules = RulesSettings(**tables["rules"])
    except ValidationError as exc:
        section = "parse" if exc.title == ParseSettings.__name__ else "rules"
        problems = "; ".join(f"{'.'.join((section, *(str(p) for p in e['loc'])))}: {e['msg']}" for e in exc.errors())
        raise SectionsError(f"invalid configuration{where}: {problems}") from None
    return parse, rules
