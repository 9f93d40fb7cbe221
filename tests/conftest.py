"""Shared test fixtures. Tests that need a real server skip with a reason on a developer's laptop,
but fail when the CI variable is set: in CI a missing server is a failure, not a skip."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.databases import ENGINES, PostgresDatabases, empty_database, postgres_problem, unreachable_reason

if TYPE_CHECKING:
    from processor.config import Settings
    from processor.store import Store
    from tests.servers import Dovecot, MailUser, Postfix, SmtpSink

PROJECT = Path(__file__).resolve().parent.parent
SAMPLES = PROJECT / "samples"
IN_CI = bool(os.environ.get("CI"))


def require(available: bool, reason: str) -> None:
    """Skip (laptop) or fail (CI) when a server or tool the test needs is missing."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}", pytrace=False)
    pytest.skip(reason)


# --- real mail servers (tests/servers.py) ------------------------------------------------------
# Session-wide Dovecot and Postfix on free loopback ports; the function-scoped fixtures restart a
# server that an earlier test stopped. Give every test its own users (``dovecot.new_user()``) so
# that tests sharing the servers never see each other's mail.


@pytest.fixture(scope="session")
def dovecot_server() -> Iterator[Dovecot]:
    """The session's Dovecot (IMAP, IMAPS with a generated CA, LMTP); see tests/servers.py."""
    from tests import servers

    missing = servers.dovecot_missing()
    require(not missing, missing)
    server = servers.Dovecot(servers.private_dir("bp-dovecot-"))
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture
def dovecot(dovecot_server: Dovecot) -> Dovecot:
    """The session's Dovecot, running (started again if a previous test stopped it)."""
    dovecot_server.ensure_running()
    return dovecot_server


@pytest.fixture
def bounce_mailbox(dovecot: Dovecot) -> MailUser:
    """A fresh Dovecot user ``bounces@<hex>.sender.example``: use it (or a VERP form such as
    ``bounces+alice=example.org@<hex>.sender.example``) as the envelope sender, and the DSNs
    Postfix produces land in its INBOX."""
    return dovecot.add_user(f"bounces@{os.urandom(4).hex()}.sender.example")


@pytest.fixture(scope="session")
def postfix_server(dovecot_server: Dovecot) -> Iterator[Postfix]:
    """The session's Postfix: smtpd on a free loopback port; mail for sender.example (and its
    subdomains) and mail.example.com goes over LMTP to the session's Dovecot (unknown users there
    bounce with a genuine DSN); local.example.net bounces every address (local(8): unknown user);
    any other domain fails with 5.4.4 (nothing leaves the machine)."""
    from tests import servers

    missing = servers.postfix_missing()
    require(not missing, missing)
    lmtp = f"lmtp:inet:{servers.LOOPBACK}:{dovecot_server.lmtp_port}"
    server = servers.Postfix(
        servers.private_dir("bp-postfix-"),
        routes={"sender.example": lmtp, ".sender.example": lmtp, "mail.example.com": lmtp},
    )
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture
def postfix(postfix_server: Postfix, dovecot: Dovecot) -> Postfix:
    """The session's Postfix, with the session's Dovecot running behind it."""
    return postfix_server


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A scriptable SMTP server on a free loopback port (``smtp_sink.reply(addr, stage, code, text)``)."""
    from tests import servers

    with servers.SmtpSink() as sink:
        yield sink


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresDatabases]:
    """Makes throwaway PostgreSQL databases, all dropped at the end of the session (a missing
    server skips on a laptop and fails in CI)."""
    problem = postgres_problem()
    require(problem is None, unreachable_reason(problem))
    databases = PostgresDatabases()
    yield databases
    databases.drop_all()


@pytest.fixture(scope="session")
def postgres_url(postgres: PostgresDatabases) -> str:
    """A PostgreSQL database of this test session's own (tests empty it with empty_store_tables)."""
    return postgres.create()


@pytest.fixture(params=ENGINES)
def engine_name(request: pytest.FixtureRequest) -> str:
    """Each store-backed test runs once per engine."""
    name: str = request.param
    return name


@pytest.fixture
def db_url(engine_name: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """An empty, migrated database of the engine under test (PostgreSQL: this session's own)."""
    return empty_database(engine_name, tmp_path, request)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    """The store of the directory's ``settings`` fixture (tests/api, tests/console, tests/webhooks
    define it), closed at the end."""
    from processor.store import open_store

    opened = open_store(settings)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """The project's logging, configured for this test to write JSON lines into a buffer (tests
    must not depend on how an earlier test left the process-wide logging)."""
    from processor import logs

    buffer = io.StringIO()
    logs.configure("json", "DEBUG", stream=buffer)
    yield buffer
    logs.configure("console", "INFO")
