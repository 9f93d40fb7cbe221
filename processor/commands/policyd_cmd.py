"""``bounce-processor policyd``: the Postfix policy service (processor.policyd)."""

from __future__ import annotations

import argparse

from processor.commands import CommandError, settings_from


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "policyd",
        help="Postfix policy service: refuse suppressed recipients at RCPT TO",
        description="Answer Postfix's check_policy_service requests: REJECT or DEFER suppressed "
        "recipients, DUNNO the others. Settings: the [policyd] section.",
    )
    p.add_argument("--listen", metavar="ADDRESS",
                   help="inet:HOST:PORT or unix:/path (default: policyd.listen, inet:127.0.0.1:10040)")
    p.add_argument("--database", metavar="URL", help="database URL (default: from the configuration)")
    p.add_argument("--mode", choices=["memory", "query"], help="answer from memory or query per recipient")
    p.set_defaults(handler=run_policyd)


def run_policyd(args: argparse.Namespace) -> int:
    from processor.config import ConfigError
    from processor.policyd import ListenError, parse_listen, run

    settings = settings_from(args)
    try:
        if args.database:
            settings.database = settings.database.model_copy(update={"url": args.database})
        if args.mode:
            settings.policyd = settings.policyd.model_copy(update={"mode": args.mode})
        if args.listen:
            parse_listen(args.listen)
        run(settings, listen=args.listen)
    except (ListenError, ConfigError) as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        import os

        where = args.listen or settings.policyd.listen
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise CommandError(f"cannot listen on {where}: {reason}") from None
    return 0
