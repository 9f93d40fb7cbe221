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


QUICK_COMMANDS = ("parse", "suppress")
"""Commands scripts run once per item, each in its module ``<name>_cmd``: a command line naming
one imports and declares only that command (the others' modules and parsers cost about 8 ms of
every start)."""


def command_module(name: str) -> ModuleType:
    """The module of a command of ``QUICK_COMMANDS``, imported alone."""
    if name not in QUICK_COMMANDS:
        raise KeyError(name)
    import importlib

    return importlib.import_module(f"processor.commands.{name}_cmd")


COMMAND_MODULES: list[ModuleType]  # set by __getattr__ on first use


def __getattr__(name: str) -> Any:
    """``COMMAND_MODULES``, every command's module in the order of ``bounce-processor --help``:
    imported on first use, so that a quick command does not import the others."""
    if name == "COMMAND_MODULES":
        modules = _modules()
        globals()["COMMAND_MODULES"] = modules
        return modules
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
