"""Fixtures for the daemon's tests: a throwaway PostgreSQL database per test, stores, settings.

PostgreSQL is the server at 127.0.0.1:5432 (user postgres, trust auth; override with
BOUNCE_TEST_POSTGRES_URL). Each test that asks for ``pg_url`` gets its own database
``bp_daemon_<pid>_<hex>``, dropped afterwards, so that nothing else on the server is touched.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require
from tests.databases import PostgresDatabases


@pytest.fixture
def pg_url(postgres: PostgresDatabases) -> Iterator[str]:
    """A PostgreSQL database of this test's own (dropped at the end)."""
    url = postgres.create()
    yield url
    postgres.drop(url)


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A directory the servers' users can read (for CA files and configurations)."""
    from tests import servers

    path = servers.private_dir("bp-daemon-")
    yield path
    import shutil

    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'daemon.db'}"


# --- a Dovecot that offers neither MOVE nor IDLE (the fallback paths) ------------------------------

FALLBACK_CAPABILITIES = "IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE SORT UIDPLUS UNSELECT CHILDREN NAMESPACE"


@pytest.fixture(scope="session")
def plain_dovecot() -> Iterator[object]:
    """A second Dovecot whose CAPABILITY lists no MOVE and no IDLE (UIDPLUS only): the daemon must
    COPY + \\Deleted + UID EXPUNGE, and poll."""
    from tests import servers

    missing = servers.dovecot_missing()
    require(not missing, missing)

    class NoMoveDovecot(servers.Dovecot):
        def _write_config(self) -> None:
            super()._write_config()
            with self.config.open("a") as out:
                out.write(f"imap_capability = {FALLBACK_CAPABILITIES}\n")

    server = NoMoveDovecot(servers.private_dir("bp-dovecot-nomove-"))
    server.start()
    yield server
    server.stop()
    import shutil

    shutil.rmtree(server.root, ignore_errors=True)
