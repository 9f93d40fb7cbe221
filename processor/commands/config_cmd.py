"""``bounce-processor config check [--connect]``: validate the configuration (file and environment)
and show what ``run`` would do with it. Secrets are never printed."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from processor.commands import CommandError, settings_from


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("config", help="check the configuration", description="Check the configuration.")
    actions = p.add_subparsers(dest="config_action", metavar="ACTION")
    actions.required = True
    c = actions.add_parser(
        "check",
        help="validate the configuration file and environment (exit 1 on a problem)",
        description="Validate the configuration (TOML file and BOUNCE_* environment variables), the rule "
        "files, the VERP secrets and every mailbox, and print a summary without secrets.",
    )
    c.add_argument("--connect", action="store_true", help="also log in to every IMAP mailbox and select its folders")
    c.set_defaults(handler=check)


def _describe(name: str, box: Any) -> str:
    if box.source == "imap":
        where = f"imap {box.username}@{box.host}:{box.imap_port} tls={box.tls}"
        if box.tls != "none":
            where += f" ca={box.ca_file or 'system'}" + ("" if box.tls_verify else " (NOT VERIFIED)")
        where += f" folders={','.join(box.folders)} idle={'on' if box.idle else 'off'}"
    else:
        where = f"{box.source} {box.path}" + (" read-only" if box.read_only else "")
    disposal = box.processed + (f"->{box.processed_folder}" if box.processed == "folder" else "")
    extra = " signed-return-path" if box.require_signed_return_path else ""
    return (f"  {name}: {where} kind={box.kind} processed={disposal} quarantine={box.quarantine_folder} "
            f"every {box.poll_interval_seconds:g}s batch {box.batch_size}{extra}")


async def _try_connect(boxes: dict[str, Any]) -> list[str]:
    from processor.sources.base import SourceError
    from processor.sources.imap import ImapConnection

    problems = []
    for name, box in boxes.items():
        if box.source != "imap":
            continue
        connection = ImapConnection(name, box)
        try:
            await connection.connect()
            for folder in box.folders:
                state = await connection.select(folder)
                print(f"  {name}/{folder}: connected, {state.exists} message(s), UIDVALIDITY {state.uidvalidity}")
        except SourceError as exc:
            problems.append(str(exc))
        finally:
            await connection.logout()
    return problems


def check(args: argparse.Namespace) -> int:
    import asyncio

    import sqlalchemy as sa

    from processor.classify import RulesError, load_classifier
    from processor.config import ConfigError
    from processor.daemon.scheduler import effective_mailboxes

    settings = settings_from(args)
    problems: list[str] = []
    try:
        rules = load_classifier(settings.rules)
        rules_line = f"{len(rules.rules)} rules"
    except RulesError as exc:
        problems.append(str(exc))
        rules_line = "INVALID"
    try:
        secrets = settings.verp.all_secrets()
    except ConfigError as exc:
        problems.append(str(exc))
        secrets = []
    if any(len(s.encode()) < 16 for s in secrets):
        problems.append("verp: every secret must be at least 16 bytes long")
    boxes = effective_mailboxes(settings)
    for name, box in boxes.items():
        if box.require_signed_return_path and not secrets:
            problems.append(f"mailbox {name}: require_signed_return_path needs verp.secrets")
        if box.source == "imap":
            try:
                box.secret_password()
            except ConfigError as exc:
                problems.append(f"mailbox {name}: {exc}")
            if box.tls != "none":
                from processor.sources.imap import tls_context

                try:
                    tls_context(box)
                except (OSError, ValueError) as exc:
                    problems.append(f"mailbox {name}: cannot load ca_file {box.ca_file}: {exc}")
        elif box.path is not None and not box.path.is_dir():
            problems.append(f"mailbox {name}: {box.path} is not a directory")
    try:
        database = sa.make_url(settings.database.url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        problems.append("database.url is not a valid URL")
        database = "INVALID"
    print(f"database: {database}")
    print(f"rules: {rules_line}")
    print(f"verp secrets: {len(secrets)}")
    if not settings.mailboxes:
        print("mailboxes: none configured" + (", using the embedded default:" if boxes else ""))
    else:
        print(f"mailboxes: {len(boxes)} enabled")
    for name, box in boxes.items():
        print(_describe(name, box))
    if args.connect and not problems:
        problems += asyncio.run(_try_connect(boxes))
    if problems:
        for problem in problems:
            print(f"problem: {problem}", file=sys.stderr)
        raise CommandError(f"{len(problems)} problem(s) in the configuration", exit_code=1)
    print("configuration OK")
    return 0
