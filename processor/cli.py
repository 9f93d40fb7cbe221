"""The ``bounce-processor`` command line: one sub-command per job, each in processor/commands/.

Command modules register their arguments here cheaply and import their heavy dependencies only
when run, so that ``bounce-processor parse`` does not pay for the database or the web stack.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from processor.commands import COMMAND_MODULES, CommandError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bounce-processor",
        description="Bounce and feedback-loop processor: parse, classify and suppress.",
    )
    parser.add_argument("--config", "-c", help="TOML configuration file (default: $BOUNCE_PROCESSOR_CONFIG)")
    parser.add_argument("--log-format", choices=["auto", "console", "json"], default="auto")
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
