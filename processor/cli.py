"""The ``bounce-processor`` command line: one sub-command per job, each in processor/commands/.

Command modules register their arguments here cheaply and import their heavy dependencies only
when run, so that ``bounce-processor parse`` does not pay for the database or the web stack.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from processor.commands import QUICK_COMMANDS, CommandError, command_module

_GLOBAL_VALUED = ("--config", "-c", "--log-format", "--log-level")
"""The options before the command that take a value (the ones ``build_parser`` declares)."""


def command_named(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names, when it is plain to see: the first word after the global
    options, each given whole (``--config X``, ``-c X``, ``--config=X``...). None when in doubt
    (an abbreviated option, ``--``, ``-h``): the full parser then decides."""
    index = 0
    while index < len(argv):
        word = argv[index]
        if word in _GLOBAL_VALUED:
            index += 2
        elif word.startswith(("--config=", "--log-format=", "--log-level=")):
            index += 1
        else:
            return None if word.startswith("-") else word
    return None


def _terminal_columns() -> int:
    """``shutil.get_terminal_size().columns``: $COLUMNS, else the width of the terminal standard
    output is, else 80; without importing shutil (argparse imports it for this alone, each time a
    parser is declared, and shutil loads three compression libraries: ~3 ms of every start)."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's help formatter, its default width found as argparse finds it (the terminal's
    columns less 2) but without shutil."""

    def __init__(
        self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None
    ) -> None:
        super().__init__(prog, indent_increment, max_help_position, _terminal_columns() - 2 if width is None else width)


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose help formatter is ``_HelpFormatter`` unless told otherwise; its
    sub-command parsers are of its class, so theirs too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The command-line parser; given the arguments, and when they name a command of
    ``QUICK_COMMANDS``, only that command is imported and declared (same parse, same errors)."""
    parser = _Parser(
        prog="bounce-processor",
        description="Bounce and feedback-loop processor: parse, classify and suppress.",
    )
    parser.add_argument("--config", "-c", help="TOML configuration file (default: $BOUNCE_PROCESSOR_CONFIG)")
    parser.add_argument("--log-format", choices=["auto", "console", "json"], default="auto")
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    command = command_named(argv) if argv is not None else None
    if command in QUICK_COMMANDS:
        modules = [command_module(command)]
    else:
        from processor import commands

        modules = commands.COMMAND_MODULES
    for module in modules:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if getattr(args, "configure_logging", True):
        from processor import logs

        logs.configure(args.log_format, args.log_level)
    try:
        code = args.handler(args)
    except CommandError as exc:
        print(f"bounce-processor: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    return int(code or 0)


def entry() -> None:
    """The ``bounce-processor`` program (and ``python -m processor``): ``main``, then the process
    ends without tearing the interpreter down module by module (the database, IMAP and web stacks
    the command imported: ~0.2 s after the work is done). Exit handlers still run and the
    standard streams are flushed; with a non-daemon thread still running, the interpreter exits
    as usual (it waits for that thread)."""
    code = main()
    # (the interpreter waits at exit only for threads started with the threading module: when it
    # was never imported, there is none to wait for, and importing it now would be wasted)
    threading = sys.modules.get("threading")
    if threading is not None and any(
        t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()
    ):
        sys.exit(code)
    exit_now(code)


def exit_now(code: int) -> None:
    """Run the exit handlers, flush stdout and stderr, and end the process with ``code``."""
    import atexit
    import os

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: as at a normal exit, nothing more to write
            code = code or 120
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
