"""Sub-commands of ``bounce-processor``. Each module has ``register(subparsers)``, which only
declares arguments; its handler imports what it needs when it runs."""

from __future__ import annotations

import argparse
from types import ModuleType
from typing import Any


class CommandError(Exception):
    """A user-facing error: printed as one line, no traceback."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def settings_from(args: argparse.Namespace) -> Any:
    """The Settings for a command, with configuration errors turned into a one-line error."""
    from processor.config import ConfigError, load_settings

    try:
        return load_settings(getattr(args, "config", None))
    except ConfigError as exc:
        raise CommandError(str(exc)) from None


def _modules() -> list[ModuleType]:
    from processor.commands import (
        api_cmd,
        config_cmd,
        db_cmd,
        init_cmd,
        parse_cmd,
        policyd_cmd,
        reprocess_cmd,
        rules_cmd,
        run_cmd,
        suppress_cmd,
        verp_cmd,
    )

    return [
        init_cmd,
        run_cmd,
        parse_cmd,
        rules_cmd,
        suppress_cmd,
        db_cmd,
        reprocess_cmd,
        api_cmd,
        policyd_cmd,
        verp_cmd,
        config_cmd,
    ]


COMMAND_MODULES: list[ModuleType] = _modules()
