"""`bounce-processor suppress ...` and `db ...` on both engines: output, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from processor.cli import main
from processor.store.engine import head_revision
from tests.conftest import PROJECT


def run(capsys: pytest.CaptureFixture[str], db_url: str, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["--log-level", "WARNING", *argv, "--database", db_url])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_add_check_remove_cycle(capsys: pytest.CaptureFixture[str], db_url: str) -> None:
    """add suppresses, check exits 1 for a suppressed address and 0 otherwise, remove unsuppresses."""
    code, out, _ = run(capsys, db_url, "suppress", "add", "Ann@Example.org", "--reason", "asked", "--note", "t-1")
    assert code == 0 and out.startswith("suppressed  ann@example.org  global  manual  -  asked")
    code, out, _ = run(capsys, db_url, "suppress", "check", "ann@example.org")
    assert code == 1 and out.startswith("suppressed  ann@example.org")
    code, out, _ = run(capsys, db_url, "suppress", "check", "bob@example.org", "--json")
    assert code == 0 and json.loads(out) == {"address": "bob@example.org", "suppressed": False}
    code, out, _ = run(capsys, db_url, "suppress", "remove", "ann@example.org", "--note", "asked back")
    assert (code, out) == (0, "removed  ann@example.org\n")
    code, _, _ = run(capsys, db_url, "suppress", "check", "ann@example.org")
    assert code == 0
    code, out, _ = run(capsys, db_url, "suppress", "history", "ann@example.org")
    assert [line.split("  ")[1] for line in out.splitlines()] == ["manual_remove", "manual_add"]


def test_bad_address_is_one_line_error(capsys: pytest.CaptureFixture[str], db_url: str) -> None:
    """An invalid address exits 2 with one line naming it, and no traceback."""
    code, out, err = run(capsys, db_url, "suppress", "check", "nobody@")
    assert code == 2 and out == ""
    assert err == "bounce-processor: error: invalid address 'nobody@': empty domain after '@'\n"


def test_list_filters_and_cursor(capsys: pytest.CaptureFixture[str], db_url: str) -> None:
    """list applies filters and prints a cursor that continues where the page ended."""
    for address in ("a@one.example", "b@two.example", "c@one.example", "d@one.example"):
        run(capsys, db_url, "suppress", "add", address)
    code, out, err = run(capsys, db_url, "suppress", "list", "--domain", "one.example", "--limit", "2")
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == ["a@one.example", "c@one.example"]
    cursor = err.split("--cursor ")[1].strip()
    code, out, err = run(capsys, db_url, "suppress", "list", "--domain", "one.example", "--cursor", cursor, "--json")
    assert [json.loads(line)["email"] for line in out.splitlines()] == ["d@one.example"] and err == ""


def test_export_and_import_files(capsys: pytest.CaptureFixture[str], db_url: str, tmp_path: Path) -> None:
    """export writes a file import reads; import prints each rejected row's line and exits 1."""
    run(capsys, db_url, "suppress", "add", "x@example.org", "y@example.org")
    target = tmp_path / "list.jsonl"
    code, _, err = run(capsys, db_url, "suppress", "export", "-o", str(target))
    assert code == 0 and err == "exported 2 entries\n"
    assert [json.loads(line)["email"] for line in target.read_text().splitlines()] == ["x@example.org", "y@example.org"]
    source = tmp_path / "provider.csv"
    source.write_text("Email,Reason,Created\nnew@example.org,bounced,1700000000\nbad@,x,\nx@example.org,again,\n")
    code, out, err = run(capsys, db_url, "suppress", "import", str(source))
    assert code == 1
    assert out == "read 3 rows: 1 added, 1 already suppressed, 0 duplicates, 1 rejected\n"
    assert err == f"{source}: line 3: invalid address 'bad@': empty domain after '@'\n"
    code, out, _ = run(capsys, db_url, "suppress", "list", "--source", "import")
    assert out.split()[0] == "new@example.org"


def test_import_without_address_column_fails_cleanly(capsys: pytest.CaptureFixture[str], db_url: str,
                                                     tmp_path: Path) -> None:
    """A file with no address column is refused with one line and exit 2."""
    source = tmp_path / "wrong.csv"
    source.write_text("name,reason\nx,y\n")
    code, _, err = run(capsys, db_url, "suppress", "import", str(source))
    assert code == 2 and err.startswith("bounce-processor: error: no address column in the CSV header")


def test_purge_and_stats(capsys: pytest.CaptureFixture[str], db_url: str) -> None:
    """purge reports how many expired entries it removed; stats prints the active counts."""
    run(capsys, db_url, "suppress", "add", "p@example.org")
    code, out, _ = run(capsys, db_url, "suppress", "purge")
    assert (code, out) == (0, "purged 0 expired entries\n")
    code, out, _ = run(capsys, db_url, "suppress", "stats")
    assert code == 0 and "active entries by source: manual=1" in out and out.endswith("active entries: 1\n")


def test_db_upgrade_and_current_commands(tmp_path: Path) -> None:
    """The installed command migrates a new database and reports the revision (real processes)."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"

    def db(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "processor", "db", *argv, "--database", url],
                              capture_output=True, text=True, cwd=PROJECT, check=False, timeout=60)

    head = head_revision()
    first = db("upgrade")
    assert (first.returncode, first.stdout) == (0, f"database upgraded from empty to {head}\n")
    assert db("upgrade").stdout == f"database is at revision {head} (nothing to do)\n"
    current = db("current")
    assert (current.returncode, current.stdout) == (0, f"database revision {head}, code revision {head}: up to date\n")
