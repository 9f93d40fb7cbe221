"""`bounce-processor verp make|verify`: the CLI senders use, with secrets from the settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from processor.cli import main
from processor.verp import verify_return_path

SECRET = "cli secret of sufficient length"
OLD_SECRET = "the secret used before rotation"


@pytest.fixture
def verp_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """[verp] settings from the environment (the secret) and a file (the rotated-out one)."""
    monkeypatch.delenv("BOUNCE_PROCESSOR_CONFIG", raising=False)
    secrets_file = tmp_path / "verp-secrets"
    secrets_file.write_text(f"# old secrets, verify only\n{OLD_SECRET}\n")
    monkeypatch.setenv("BOUNCE_VERP__SECRETS", f'["{SECRET}"]')
    monkeypatch.setenv("BOUNCE_VERP__SECRETS_FILE", str(secrets_file))
    monkeypatch.setenv("BOUNCE_VERP__SENDER_DOMAIN", "Sender.Example")
    return secrets_file


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["--log-level", "WARNING", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_make_prints_a_path_that_verifies(capsys: pytest.CaptureFixture[str], verp_env: Path) -> None:
    """make prints one signed return path for the recipient, signed with the first secret."""
    code, out, err = run(capsys, "verp", "make", "Alice@Example.org", "--tag", "spring26")
    assert (code, err) == (0, "")
    path = out.strip()
    assert out.count("\n") == 1 and path.startswith("bounces+") and path.endswith("=Alice=example.org@sender.example")
    result = verify_return_path(path, secrets=[SECRET])
    assert (result.valid, result.recipient, result.tag) == (True, "Alice@example.org", "spring26")
    assert SECRET not in out + err


def test_verify_valid_invalid_and_json(capsys: pytest.CaptureFixture[str], verp_env: Path) -> None:
    """verify exits 0 for a valid path (including one signed with a rotated-out secret), 1 with
    the reason for a forged one; --json prints one object."""
    _, out, _ = run(capsys, "verp", "make", "bob@example.org")
    path = out.strip()
    assert run(capsys, "verp", "verify", path) == (0, "valid: recipient bob@example.org\n", "")
    forged = path.replace("=bob=", "=mallory=")
    assert run(capsys, "verp", "verify", forged) == (1, "invalid: signature does not match\n", "")
    assert run(capsys, "verp", "verify", "bounces@sender.example", "--json") == (
        1, '{"valid": false, "recipient": "", "tag": "", "reason": "not a signed return path"}\n', "")
    from processor.verp import make_return_path

    old = make_return_path("carol@example.org", secret=OLD_SECRET, sender_domain="sender.example", tag="t1")
    assert run(capsys, "verp", "verify", old) == (0, "valid: recipient carol@example.org, tag t1\n", "")


def test_errors_are_one_line_and_never_show_secrets(
    capsys: pytest.CaptureFixture[str], verp_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad recipient, a bad tag, a missing domain or secret: exit 2, one line, no secret."""
    cases = [
        (["verp", "make", "not-an-address"], "not an address: 'not-an-address'"),
        (["verp", "make", "a@example.org", "--tag", "no spaces"], "a tag may hold only A-Z a-z 0-9 _ . (up to 32)"),
    ]
    for argv, message in cases:
        code, out, err = run(capsys, *argv)
        assert (code, out) == (2, "") and err.startswith(f"bounce-processor: error: {message}")
        assert err.count("\n") == 1 and SECRET not in err
    monkeypatch.setenv("BOUNCE_VERP__SENDER_DOMAIN", "")
    assert run(capsys, "verp", "make", "a@example.org") == (
        2, "", "bounce-processor: error: no sender domain: set verp.sender_domain or give --sender-domain\n")
    monkeypatch.setenv("BOUNCE_VERP__SECRETS", '["short"]')
    code, _, err = run(capsys, "verp", "make", "a@example.org", "--sender-domain", "s.example")
    assert code == 2 and err == "bounce-processor: error: the VERP secret must be at least 16 bytes long\n"
    monkeypatch.setenv("BOUNCE_VERP__SECRETS", "[]")
    monkeypatch.delenv("BOUNCE_VERP__SECRETS_FILE")
    code, _, err = run(capsys, "verp", "verify", "bounces+x@sender.example")
    assert code == 2 and err.startswith("bounce-processor: error: no VERP secret is configured")
    monkeypatch.setenv("BOUNCE_VERP__SECRETS_FILE", str(verp_env.parent / "missing"))
    code, _, err = run(capsys, "verp", "verify", "bounces+x@sender.example")
    assert code == 2 and "cannot read verp.secrets_file" in err and err.count("\n") == 1
