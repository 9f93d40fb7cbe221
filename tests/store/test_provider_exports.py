"""`bounce-processor suppress import --format <provider>`: the providers' own suppression exports
(written here from their documented fields) become entries with the right source and type."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from processor.cli import main
from processor.commands.suppress_cmd import IMPORT_PROVIDER_FORMATS
from processor.config import DatabaseSettings, Settings
from processor.store import open_store
from processor.store.provider_exports import PROVIDER_FORMATS

EXPORTS: dict[str, tuple[str, str, dict[str, str]]] = {
    "ses-page": ("ses", json.dumps({"SuppressedDestinationSummaries": [
        {"EmailAddress": "ses-gone@example.com", "Reason": "BOUNCE", "LastUpdateTime": 1775553000},
        {"EmailAddress": "ses-angry@example.com", "Reason": "COMPLAINT", "LastUpdateTime": 1775553100.5}],
        "NextToken": "page-2"}),
        {"ses-gone@example.com": "bounce/hard", "ses-angry@example.com": "complaint/complaint"}),
    "ses-jsonl": ("ses", '{"emailAddress":"ses-line@example.com","reason":"BOUNCE"}\n'
                         '{"emailAddress":"ses-line2@example.com","reason":"COMPLAINT"}\n',
                  {"ses-line@example.com": "bounce/hard", "ses-line2@example.com": "complaint/complaint"}),
    "ses-csv": ("ses", "ses-csv@example.com,BOUNCE\nses-csv2@example.com,COMPLAINT\n",
                {"ses-csv@example.com": "bounce/hard", "ses-csv2@example.com": "complaint/complaint"}),
    "sendgrid-bounces": ("sendgrid-bounces", "email,created,reason,status\n"
                         "sg-gone@example.net,1775553000,550 5.1.1 user unknown,5.1.1\n"
                         "sg-full@example.net,1775553001,452 4.2.2 over quota,4.2.2\n",
                         {"sg-gone@example.net": "bounce/hard", "sg-full@example.net": "bounce/soft"}),
    "sendgrid-spam": ("sendgrid-spam-reports", "email,created,ip\nsg-spam@example.net,1775553000,198.51.100.9\n",
                      {"sg-spam@example.net": "complaint/complaint"}),
    "sendgrid-unsub": ("sendgrid-unsubscribes", "email,created\nsg-unsub@example.net,1775553000\n",
                       {"sg-unsub@example.net": "unsubscribe/"}),
    "mailgun-csv": ("mailgun-bounces", "address,code,error,created_at\n"
                    "mg-gone@example.org,550,No such mailbox,\"Tue, 07 Apr 2026 09:15:00 GMT\"\n",
                    {"mg-gone@example.org": "bounce/hard"}),
    "mailgun-json": ("mailgun-bounces", json.dumps({"items": [
        {"address": "mg-api@example.org", "code": "550", "error": "unknown user",
         "created_at": "Tue, 07 Apr 2026 09:15:00 GMT"}], "paging": {}}),
        {"mg-api@example.org": "bounce/hard"}),
    "postmark": ("postmark", json.dumps({"Suppressions": [
        {"EmailAddress": "pm-hard@example.com", "SuppressionReason": "HardBounce", "Origin": "Recipient",
         "CreatedAt": "2026-04-07T09:15:00.1234567-04:00"},
        {"EmailAddress": "pm-spam@example.com", "SuppressionReason": "SpamComplaint", "Origin": "Recipient",
         "CreatedAt": "2026-04-07T09:16:00Z"},
        {"EmailAddress": "pm-manual@example.com", "SuppressionReason": "ManualSuppression", "Origin": "Customer",
         "CreatedAt": "2026-04-07T09:17:00Z"}]}),
        {"pm-hard@example.com": "bounce/hard", "pm-spam@example.com": "complaint/complaint",
         "pm-manual@example.com": "unsubscribe/"}),
}


def test_cli_formats_match_the_readers() -> None:
    """The CLI offers exactly the provider formats there are readers for."""
    assert set(IMPORT_PROVIDER_FORMATS) == set(PROVIDER_FORMATS)


@pytest.mark.parametrize("case", list(EXPORTS))
def test_provider_export_is_imported(capsys: pytest.CaptureFixture[str], db_url: str, tmp_path: Path,
                                     case: str) -> None:
    """Each address of a provider export is suppressed with the source and type its list means."""
    fmt, content, expected = EXPORTS[case]
    export = tmp_path / "export.txt"
    export.write_text(content, encoding="utf-8")
    code = main(["--log-level", "WARNING", "suppress", "import", "--format", fmt, str(export), "--database", db_url])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"{len(expected)} added" in out
    store = open_store(Settings(database=DatabaseSettings(url=db_url)))
    try:
        got = {}
        for address in expected:
            entry = store.is_suppressed(address)
            assert entry is not None, address
            got[address] = f"{entry.source}/{entry.bounce_type}"
        assert got == expected
    finally:
        store.close()


def test_bad_rows_are_named_and_the_rest_imported(capsys: pytest.CaptureFixture[str], db_url: str,
                                                  tmp_path: Path) -> None:
    """A row with an unknown reason is reported with its line; the good rows are still imported (exit 1)."""
    export = tmp_path / "ses.csv"
    export.write_text("ok@example.com,BOUNCE\nodd@example.com,OTHER\n", encoding="utf-8")
    code = main(["--log-level", "WARNING", "suppress", "import", "--format", "ses", str(export), "--database", db_url])
    captured = capsys.readouterr()
    assert code == 1
    assert "line 2: SES reason is BOUNCE or COMPLAINT" in captured.err
    assert "1 added" in captured.out


def test_not_an_export_is_one_clear_error(capsys: pytest.CaptureFixture[str], db_url: str, tmp_path: Path) -> None:
    """A file that is not the named provider's export fails with one line, not a traceback."""
    export = tmp_path / "p.json"
    export.write_text("[1, 2, 3]", encoding="utf-8")
    code = main(["--log-level", "WARNING", "suppress", "import", "--format", "postmark", str(export),
                 "--database", db_url])
    captured = capsys.readouterr()
    assert code == 2
    assert "not a Postmark suppression dump" in captured.err
    assert "Traceback" not in captured.err
