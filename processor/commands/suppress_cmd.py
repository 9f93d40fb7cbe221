"""``bounce-processor suppress add|remove|check|list|history|export|import|purge|stats``.

``check`` exits 0 when none of the addresses is suppressed and 1 when one is (so a shell script
can ask before it sends); errors exit 2. ``export`` and ``import`` stream: neither holds the file.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from processor.commands import CommandError, settings_from

IMPORT_PROVIDER_FORMATS = ("ses", "sendgrid-bounces", "sendgrid-spam-reports", "sendgrid-unsubscribes",
                           "mailgun-bounces", "postmark")
"""Kept in step with processor.store.provider_exports.PROVIDER_FORMATS (a test checks), without
importing the store at parser set-up."""


def _time(value: str) -> datetime:
    from processor.store.transfer import parse_time

    try:
        return parse_time(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_database(p: argparse.ArgumentParser) -> None:
    p.add_argument("--database", metavar="URL", help="database URL (default: from the configuration)")


def _add_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reason")
    p.add_argument("--type", dest="bounce_type", help="bounce type (hard, soft, complaint, ...)")
    p.add_argument("--source", help="bounce, complaint, unsubscribe, manual or import")
    p.add_argument("--scope", help="only this scope (default: every scope)")
    p.add_argument("--domain", help="only addresses at this domain")
    p.add_argument("--since", type=_time, help="suppressed at or after this time (ISO 8601)")
    p.add_argument("--until", type=_time, help="suppressed before this time (ISO 8601)")
    p.add_argument("--include-expired", action="store_true", help="also expired entries not purged yet")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("suppress", help="show and change the suppression list",
                       description="Show and change the suppression list.")
    actions = p.add_subparsers(dest="suppress_action", metavar="ACTION")
    actions.required = True

    a = actions.add_parser("add", help="suppress addresses by hand")
    a.add_argument("addresses", nargs="+", metavar="ADDRESS")
    a.add_argument("--reason", default="manual")
    a.add_argument("--scope", default="global")
    a.add_argument("--note", default="")
    expiry = a.add_mutually_exclusive_group()
    expiry.add_argument("--expires", type=_time, help="expiry time (default: permanent)")
    expiry.add_argument("--ttl-days", type=int, help="expire after this many days")
    _add_database(a)
    a.set_defaults(handler=run_add)

    r = actions.add_parser("remove", help="unsuppress addresses by hand (recorded as an event)")
    r.add_argument("addresses", nargs="+", metavar="ADDRESS")
    r.add_argument("--scope", default="global")
    r.add_argument("--note", default="")
    r.add_argument("--allow-days", type=int,
                   help="ignore bounces for this many days (default: policy.allow_window_days)")
    _add_database(r)
    r.set_defaults(handler=run_remove)

    c = actions.add_parser("check", help="is an address suppressed? (exit 1 if one is)")
    c.add_argument("addresses", nargs="+", metavar="ADDRESS")
    c.add_argument("--scope", default="global")
    c.add_argument("--json", action="store_true", help="one JSON object per address")
    _add_database(c)
    # check answers scripts at once: logging is set up only if the full path has to answer
    c.set_defaults(handler=run_check, configure_logging=False)

    ls = actions.add_parser("list", help="list entries, with filters and cursor pagination")
    _add_filters(ls)
    ls.add_argument("--limit", type=int, default=100)
    ls.add_argument("--cursor", help="continue after this cursor (printed after a page)")
    ls.add_argument("--json", action="store_true", help="JSON lines")
    _add_database(ls)
    ls.set_defaults(handler=run_list)

    h = actions.add_parser("history", help="an address's events, newest first")
    h.add_argument("address")
    h.add_argument("--limit", type=int, default=50)
    h.add_argument("--json", action="store_true")
    _add_database(h)
    h.set_defaults(handler=run_history)

    e = actions.add_parser("export", help="write the list as CSV or JSON lines (streamed)")
    _add_filters(e)
    e.add_argument("--output", "-o", default="-", help="file (default: standard output)")
    e.add_argument("--format", choices=["csv", "jsonl"], help="default: from the file name, else csv")
    _add_database(e)
    e.set_defaults(handler=run_export)

    i = actions.add_parser("import", help="read CSV or JSON lines into the list (streamed)")
    i.add_argument("path", metavar="FILE", help="file, or - for standard input")
    i.add_argument("--format", choices=["csv", "jsonl", *IMPORT_PROVIDER_FORMATS],
                   help="default: from the file name, else csv; or a provider's own export (ses, sendgrid-bounces, "
                        "sendgrid-spam-reports, sendgrid-unsubscribes, mailgun-bounces, postmark)")
    i.add_argument("--actor", help="recorded with each imported entry (default: import:FILE)")
    _add_database(i)
    i.set_defaults(handler=run_import)

    pg = actions.add_parser("purge", help="delete expired entries (for a scheduled job)")
    _add_database(pg)
    pg.set_defaults(handler=run_purge)

    st = actions.add_parser("stats", help="counts by type, reason, domain and mailbox")
    st.add_argument("--since", type=_time, help="default: 7 days ago")
    st.add_argument("--until", type=_time, help="default: now")
    _add_database(st)
    st.set_defaults(handler=run_stats)


@contextmanager
def opened(args: argparse.Namespace) -> Iterator[Any]:
    """The store for a command, with every store error turned into a one-line CommandError."""
    from processor.addresses import AddressError
    from processor.store import QueryError, StoreError, open_store
    from processor.store.transfer import TransferError

    settings = settings_from(args)
    try:
        store = open_store(settings, url=getattr(args, "database", None))
    except StoreError as exc:
        raise CommandError(str(exc), exit_code=2) from None
    try:
        yield store
    except (AddressError, QueryError, StoreError, TransferError) as exc:
        raise CommandError(str(exc), exit_code=2) from None
    finally:
        store.close()


def _filters(args: argparse.Namespace) -> Any:
    from processor.store import EntryFilter

    return EntryFilter(
        reason=args.reason,
        bounce_type=args.bounce_type,
        source=args.source,
        scope=args.scope,
        domain=args.domain,
        since=args.since,
        until=args.until,
        include_expired=args.include_expired,
    )


def _line(entry: Any) -> str:
    expiry = entry.expires_at.isoformat(timespec="seconds") if entry.expires_at else "permanent"
    bits = [entry.address, entry.scope, entry.source, entry.bounce_type or "-", entry.reason or "-",
            entry.first_seen.isoformat(timespec="seconds"), expiry]
    if entry.note:
        bits.append(entry.note)
    return "  ".join(bits)


def _json(entry: Any) -> str:
    from processor.store.transfer import _record

    return json.dumps(_record(entry), ensure_ascii=False)


def _actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def run_add(args: argparse.Namespace) -> int:
    expires = args.expires
    if args.ttl_days is not None:
        if args.ttl_days < 1:
            raise CommandError("--ttl-days must be at least 1")
        expires = datetime.now(UTC) + timedelta(days=args.ttl_days)
    with opened(args) as store:
        for address in args.addresses:
            entry = store.add(address, reason=args.reason, scope=args.scope, expires_at=expires,
                              note=args.note, actor=_actor())
            print(f"suppressed  {_line(entry)}")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    with opened(args) as store:
        for address in args.addresses:
            removed = store.remove(address, scope=args.scope, note=args.note, actor=_actor(),
                                   allow_days=args.allow_days)
            normal = store.normalise(address)
            print(f"removed  {normal}" if removed else f"not suppressed (removal recorded)  {normal}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from processor.commands._quick_check import quick_check

    quick = quick_check(args)
    if quick is not None:
        return quick
    from processor import logs

    logs.configure(args.log_format, args.log_level)
    return full_check(args)


def full_check(args: argparse.Namespace) -> int:
    """``check`` through the store (for what the quick path leaves to it)."""
    any_suppressed = False
    with opened(args) as store:
        for address in args.addresses:
            entry = store.is_suppressed(address, scope=args.scope)
            any_suppressed = any_suppressed or entry is not None
            if args.json:
                record = {"address": store.normalise(address), "suppressed": entry is not None}
                if entry is not None:
                    record.update(json.loads(_json(entry)))
                print(json.dumps(record, ensure_ascii=False))
            elif entry is not None:
                print(f"suppressed  {_line(entry)}")
            else:
                print(f"not suppressed  {store.normalise(address)}")
    return 1 if any_suppressed else 0


def run_list(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise CommandError("--limit must be at least 1")
    with opened(args) as store:
        page = store.list_entries(_filters(args), cursor=args.cursor, limit=args.limit)
        for entry in page.entries:
            print(_json(entry) if args.json else _line(entry))
        if page.next_cursor:
            print(f"more: --cursor {page.next_cursor}", file=sys.stderr)
    return 0


def run_history(args: argparse.Namespace) -> int:
    with opened(args) as store:
        for event in store.history(args.address, limit=args.limit):
            if args.json:
                values = ((name, getattr(event, name)) for name in event.__dataclass_fields__)
                record = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in values}
                print(json.dumps(record, ensure_ascii=False))
                continue
            bits = [event.received_at.isoformat(timespec="seconds"), event.kind, event.decision,
                    event.bounce_type or "-", event.reason or "-", event.status or "-"]
            if event.mailbox:
                bits.append(f"{event.mailbox}#{event.uid}")
            if event.actor:
                bits.append(event.actor)
            if event.explanation:
                bits.append(event.explanation)
            print("  ".join(bits))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from processor.store.transfer import format_for, write_entries

    with opened(args) as store:
        fmt = format_for(args.output, args.format)
        entries = store.iter_entries(_filters(args))
        if args.output == "-":
            count = write_entries(entries, sys.stdout, fmt)
            sys.stdout.flush()
        else:
            try:
                with open(args.output, "w", encoding="utf-8", newline="") as out:
                    count = write_entries(entries, out, fmt)
            except OSError as exc:
                raise CommandError(f"cannot write {args.output}: {exc.strerror}") from None
    print(f"exported {count} entries", file=sys.stderr)
    return 0


def run_import(args: argparse.Namespace) -> int:
    from processor.store.provider_exports import read_provider_rows
    from processor.store.transfer import format_for, read_rows

    provider = args.format if args.format in IMPORT_PROVIDER_FORMATS else None
    fmt = format_for(args.path, None if provider else args.format)
    stream: IO[bytes]
    if args.path == "-":
        stream = sys.stdin.buffer
    else:
        try:
            stream = open(args.path, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise CommandError(f"cannot read {args.path}: {exc.strerror}") from None

    def rejected(item: Any) -> None:
        print(f"{args.path}: {item}", file=sys.stderr)

    try:
        with opened(args) as store:
            rows = read_provider_rows(stream, provider) if provider else read_rows(stream, fmt)
            report = store.import_rows(rows, actor=args.actor or f"import:{args.path}",
                                       on_rejected=rejected)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    print(f"read {report.read} rows: {report.added} added, {report.already_suppressed} already suppressed, "
          f"{report.duplicates} duplicates, {report.rejected_count} rejected")
    return 1 if report.rejected_count else 0


def run_purge(args: argparse.Namespace) -> int:
    with opened(args) as store:
        print(f"purged {store.purge_expired()} expired entries")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    with opened(args) as store:
        stats = store.stats(args.since, args.until)
    print(f"events from {stats.since.isoformat(timespec='seconds')} to {stats.until.isoformat(timespec='seconds')}")
    for title, counts in (
        ("by bounce type", stats.events_by_bounce_type),
        ("by reason", stats.events_by_reason),
        ("by domain", stats.events_by_domain),
        ("by mailbox", stats.events_by_mailbox),
        ("by decision", stats.events_by_decision),
        ("active entries by source", stats.active_by_source),
        ("active entries by bounce type", stats.active_by_bounce_type),
    ):
        print(f"{title}: " + (", ".join(f"{k or '-'}={v}" for k, v in counts.items()) or "none"))
    print(f"active entries: {stats.active_total}")
    return 0
