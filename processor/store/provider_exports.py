"""Imports of the sending providers' own suppression lists, so that the list starts with what
SES, SendGrid, Mailgun and Postmark already know (``bounce-processor suppress import --format``).

=========================  ===============================================================
format                     what it reads
=========================  ===============================================================
``ses``                    SES v2 ListSuppressedDestinations JSON (``SuppressedDestinationSummaries``,
                           one page or several pages one per line), the import-job JSON lines
                           (``{"emailAddress", "reason"}``) or CSV ``address,REASON`` (no header)
``sendgrid-bounces``       SendGrid bounce (or block) list CSV: email, created, reason, status
``sendgrid-spam-reports``  SendGrid spam report CSV: email, created, ip
``sendgrid-unsubscribes``  SendGrid global unsubscribe CSV: email, created
``mailgun-bounces``        Mailgun bounces CSV (address, code, error, created_at) or API JSON (``items``)
``postmark``               Postmark suppression dump JSON (``Suppressions``)
=========================  ===============================================================

Bounces become ``source = bounce`` (hard, or soft for a 4xx code), complaints ``complaint``,
unsubscribes ``unsubscribe``; the reason says which provider's list the entry came from. A row
that cannot be read is a ``Rejected`` and the rest are still imported.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from processor.decide import Source
from processor.store.transfer import TransferError, parse_time
from processor.store.types import ImportRow, Rejected

__all__ = ["PROVIDER_FORMATS", "read_provider_rows"]

Row = ImportRow | Rejected


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _row(line: int, address: str, *, provider: str, kind: str, created: Any = None, detail: str = "",
         soft: bool = False) -> Row:
    if not address:
        return Rejected(line, "", "no address in this row")
    when = None
    if _text(created):
        try:
            when = parse_time(_text(created))
        except ValueError as exc:
            return Rejected(line, _text(created), f"invalid time: {exc}")
    source = {"bounce": Source.BOUNCE, "complaint": Source.COMPLAINT, "unsubscribe": Source.UNSUBSCRIBE}[kind]
    bounce_type = "complaint" if kind == "complaint" else ("soft" if soft else "hard") if kind == "bounce" else ""
    note = f"from the {provider} suppression list" + (f": {detail}" if detail else "")
    return ImportRow(address, line, f"{provider} {kind} list", when, source=source, bounce_type=bounce_type,
                     note=note[:500])


def _csv_dicts(data: str) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(data))
    if reader.fieldnames is None:
        return
    names = {name: name.strip().lower().replace(" ", "_") for name in reader.fieldnames if name}
    for record in reader:
        yield reader.line_num, {names.get(k, k): (v or "") for k, v in record.items() if k}


def _json_documents(data: str) -> Iterator[Any]:
    """One JSON document, or one per line (pages, or newline-delimited objects)."""
    try:
        yield json.loads(data)
        return
    except json.JSONDecodeError:
        pass
    for number, line in enumerate(data.splitlines(), start=1):
        if line.strip():
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise TransferError(f"line {number}: invalid JSON: {exc.msg}") from None


def _ses(data: str) -> Iterator[Row]:
    stripped = data.lstrip()
    if not stripped.startswith(("{", "[")):
        for line, cells in enumerate(csv.reader(io.StringIO(data)), start=1):
            if not any(c.strip() for c in cells):
                continue
            reason = cells[1].strip().upper() if len(cells) > 1 else "BOUNCE"
            yield _ses_row(line, cells[0].strip(), reason, None)
        return
    line = 0
    for document in _json_documents(data):
        items = document.get("SuppressedDestinationSummaries", [document]) if isinstance(document, dict) else document
        for item in items if isinstance(items, list) else []:
            line += 1
            if not isinstance(item, dict):
                yield Rejected(line, "", "expected a JSON object")
                continue
            address = _text(item.get("EmailAddress") or item.get("emailAddress"))
            reason = _text(item.get("Reason") or item.get("reason") or "BOUNCE").upper()
            yield _ses_row(line, address, reason, item.get("LastUpdateTime"))


def _ses_row(line: int, address: str, reason: str, created: Any) -> Row:
    if reason not in ("BOUNCE", "COMPLAINT"):
        return Rejected(line, reason, "SES reason is BOUNCE or COMPLAINT")
    return _row(line, address, provider="ses", kind="bounce" if reason == "BOUNCE" else "complaint", created=created)


def _sendgrid(kind: str) -> Callable[[str], Iterator[Row]]:
    def read(data: str) -> Iterator[Row]:
        for line, record in _csv_dicts(data):
            status = record.get("status", "")
            detail = " ".join(p for p in (status, record.get("reason", "")) if p)
            yield _row(line, record.get("email", "").strip(), provider="sendgrid", kind=kind,
                       created=record.get("created"), detail=detail, soft=status.startswith("4"))
    return read


def _mailgun_bounces(data: str) -> Iterator[Row]:
    if data.lstrip().startswith("{"):
        document = json.loads(data)
        items = document.get("items", []) if isinstance(document, dict) else []
        for line, item in enumerate(items, start=1):
            code = _text(item.get("code"))
            yield _row(line, _text(item.get("address")), provider="mailgun", kind="bounce",
                       created=item.get("created_at"), detail=f"{code} {_text(item.get('error'))}".strip(),
                       soft=code.startswith("4"))
        return
    for line, record in _csv_dicts(data):
        code = record.get("code", "").strip()
        yield _row(line, record.get("address", "").strip(), provider="mailgun", kind="bounce",
                   created=record.get("created_at"), detail=f"{code} {record.get('error', '')}".strip(),
                   soft=code.startswith("4"))


_POSTMARK_KINDS = {"HardBounce": "bounce", "SpamComplaint": "complaint", "ManualSuppression": "unsubscribe"}


def _postmark(data: str) -> Iterator[Row]:
    line = 0
    for document in _json_documents(data):
        if not isinstance(document, dict) or not isinstance(document.get("Suppressions"), list):
            raise TransferError('not a Postmark suppression dump: expected {"Suppressions": [...]}')
        for item in document["Suppressions"]:
            line += 1
            reason = _text(item.get("SuppressionReason"))
            kind = _POSTMARK_KINDS.get(reason)
            if kind is None:
                yield Rejected(line, reason, "unknown Postmark SuppressionReason")
                continue
            yield _row(line, _text(item.get("EmailAddress")), provider="postmark", kind=kind,
                       created=item.get("CreatedAt"), detail=_text(item.get("Origin")))


PROVIDER_FORMATS: dict[str, Callable[[str], Iterator[Row]]] = {
    "ses": _ses,
    "sendgrid-bounces": _sendgrid("bounce"),
    "sendgrid-spam-reports": _sendgrid("complaint"),
    "sendgrid-unsubscribes": _sendgrid("unsubscribe"),
    "mailgun-bounces": _mailgun_bounces,
    "postmark": _postmark,
}


def read_provider_rows(stream: Iterable[bytes], fmt: str) -> Iterator[Row]:
    """The rows of a provider's export (read whole: JSON documents cannot be streamed by line)."""
    reader = PROVIDER_FORMATS.get(fmt)
    if reader is None:
        raise TransferError(f"unknown provider format {fmt!r} (expected one of: {', '.join(PROVIDER_FORMATS)})")
    data = b"".join(stream).decode("utf-8-sig", errors="replace")
    try:
        yield from reader(data)
    except (json.JSONDecodeError, AttributeError, TypeError) as exc:
        raise TransferError(f"not a {fmt} export: {exc}") from None
