"""Logging set-up: tracebacks and secret-looking fields never print secrets."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from processor import logs


def _fail_with_secret() -> None:
    password = "hunter2-very-secret"  # noqa: F841 - a local that a locals-printing traceback would show
    raise RuntimeError("login failed")


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_tracebacks_do_not_show_local_variables(fmt: str) -> None:
    """An exception logged with its traceback never prints the frames' local variables."""
    out = io.StringIO()
    logs.configure(fmt, "DEBUG", stream=out)  # type: ignore[arg-type]
    try:
        _fail_with_secret()
    except RuntimeError:
        structlog.get_logger("test").exception("boom")
    text = out.getvalue()
    assert "login failed" in text
    assert "hunter2-very-secret" not in text


def test_secret_fields_are_redacted() -> None:
    """A value logged under a secret-looking key is replaced."""
    out = io.StringIO()
    logs.configure("json", "INFO", stream=out)  # type: ignore[arg-type]
    structlog.get_logger("test").info("connecting", password="hunter2", token="abc123", user="bounces")
    record = json.loads(out.getvalue().strip().splitlines()[-1])
    assert record["password"] == "**********" and record["token"] == "**********"
    assert record["user"] == "bounces"


def teardown_module() -> None:
    logging.getLogger().handlers[:] = []
    structlog.reset_defaults()
