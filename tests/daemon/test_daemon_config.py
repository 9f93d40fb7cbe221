"""The mailbox and daemon configuration: validation, secrets from the environment or a file,
the embedded default, and one source per IMAP folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from processor.config import ConfigError, MailboxSettings, is_loopback_host, load_settings
from processor.daemon import build_sources, effective_mailboxes
from processor.sources.imap import ImapSource
from processor.sources.local import DirectorySource, MaildirSource
from tests.conftest import SAMPLES
from tests.daemon.helpers import write_config

IMAP = {"host": "imap.example.com", "username": "bounces@example.com"}


def test_password_from_environment_overrides_and_never_prints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """BOUNCE_MAILBOXES__<NAME>__PASSWORD completes a mailbox from the file; repr hides it."""
    config = write_config(tmp_path / "c.toml", {"mailboxes.bounces": IMAP})
    monkeypatch.setenv("BOUNCE_MAILBOXES__BOUNCES__PASSWORD", "Env-Secret-123")
    box = load_settings(config).mailboxes["bounces"]
    assert box.secret_password() == "Env-Secret-123"
    assert "Env-Secret-123" not in repr(box) and "Env-Secret-123" not in str(box.model_dump())


def test_password_from_a_file(tmp_path: Path) -> None:
    """password_file: its first line is the password; a missing file is a configuration error."""
    secret = tmp_path / "pw"
    secret.write_text("From-File-456\nignored\n")
    config = write_config(tmp_path / "c.toml", {"mailboxes.bounces": {**IMAP, "password_file": str(secret)}})
    assert load_settings(config).mailboxes["bounces"].secret_password() == "From-File-456"
    secret.unlink()
    with pytest.raises(ConfigError, match=r"password_file .* is not a readable file"):
        load_settings(config)


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"host": "imap.example.com", "password": "p"}, "needs a username"),
        ({"username": "u", "password": "p"}, "needs a host"),
        ({**IMAP}, "needs a password or a password_file"),
        ({**IMAP, "password": "p", "tls": "none"}, "loopback"),
        ({**IMAP, "password": "p", "tls": "tls"}, "tls"),
        ({**IMAP, "password": "p", "batch_size": 0}, "batch_size"),
        ({**IMAP, "password": "p", "kind": "dsn"}, "kind"),
        ({**IMAP, "password": "p", "folders": []}, "folders"),
        ({**IMAP, "password": "p", "ca_file": "/nonexistent/ca.pem"}, "ca_file"),
        ({**IMAP, "password": "p", "quarantine_folder": " "}, "quarantine_folder is empty"),
        ({**IMAP, "password": "p", "backoff_initial_seconds": 10, "backoff_max_seconds": 1}, "backoff"),
        ({"source": "directory"}, "needs a path"),
        ({"source": "directory", "path": "/tmp", "processed": "seen"}, "a directory has no flags"),
        ({**IMAP, "password": "p", "colour": "blue"}, "colour"),
    ],
)
def test_invalid_mailboxes_name_the_problem(tmp_path: Path, values: dict[str, object], error: str) -> None:
    """Each invalid mailbox gives an error that names the value and the mailbox."""
    config = write_config(tmp_path / "c.toml", {"mailboxes.bounces": values})
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert error in str(caught.value) and "mailboxes.bounces" in str(caught.value)


def test_mailbox_names_must_suit_the_environment(tmp_path: Path) -> None:
    """Mailbox names are lower-case (so that BOUNCE_MAILBOXES__NAME__... can address them)."""
    config = write_config(tmp_path / "c.toml", {"mailboxes.Bounces": {**IMAP, "password": "p"}})
    with pytest.raises(ConfigError, match="invalid mailbox name 'Bounces'"):
        load_settings(config)


def test_loopback_hosts() -> None:
    """Only names and addresses of this machine count as loopback."""
    assert all(is_loopback_host(h) for h in ("localhost", "127.0.0.1", "127.8.9.1", "::1", "[::1]"))
    assert not any(is_loopback_host(h) for h in ("imap.example.com", "10.0.0.1", "128.0.0.1", ""))


def test_embedded_default_and_sources(tmp_path: Path) -> None:
    """No mailbox: the samples/ directory read-only; otherwise one source per IMAP folder."""
    settings = load_settings(write_config(tmp_path / "empty.toml", {"database": {"url": "sqlite:///x.db"}}))
    default = effective_mailboxes(settings)
    assert list(default) == ["samples"]
    assert default["samples"].path == SAMPLES and default["samples"].read_only
    settings = load_settings(write_config(tmp_path / "c.toml", {
        "mailboxes.bounces": {**IMAP, "password": "p", "folders": ["INBOX", "Bounces/Old"]},
        "mailboxes.local": {"source": "maildir", "path": str(tmp_path)},
        "mailboxes.drop": {"source": "directory", "path": str(tmp_path)},
        "mailboxes.off": {**IMAP, "password": "p", "enabled": False},
    }))
    sources = build_sources(effective_mailboxes(settings))
    assert [(type(s).__name__, s.name) for s, _ in sources] == [
        (ImapSource.__name__, "bounces/INBOX"), (ImapSource.__name__, "bounces/Bounces/Old"),
        (MaildirSource.__name__, "local"), (DirectorySource.__name__, "drop"),
    ]


def test_default_ports() -> None:
    """Implicit TLS defaults to 993, STARTTLS and plain to 143."""
    assert MailboxSettings(**IMAP, password="p").imap_port == 993
    assert MailboxSettings(**IMAP, password="p", tls="starttls").imap_port == 143
    assert MailboxSettings(**IMAP, password="p", tls="starttls", port=1143).imap_port == 1143
