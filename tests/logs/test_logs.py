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


def test_json_lines_are_structlogs_own() -> None:
    """The JSON renderer (one encoder for every line) writes what structlog's default one writes:
    the same text for the same event, values JSON has no form for included (``__structlog__``,
    else ``repr``), non-ASCII escaped; a secret-looking key is redacted however it is written."""

    class Custom:
        def __structlog__(self) -> str:
            return "custom form"

    out = io.StringIO()
    logs.configure("json", "INFO", stream=out)
    fields = {"mailbox": "m", "uid": 7, "ratio": 0.5, "missing": None, "ok": True, "names": ["a@example.org", "é"],
              "nested": {"b": 1, "a": [2, 3]}, "custom": Custom(), "other": {1, 2}.__class__, "Api_Key": "k"}
    structlog.get_logger("processor.test").info("message.processed", **fields)
    line = out.getvalue().rstrip("\n")
    stamp = json.loads(line)["timestamp"]
    expected = structlog.processors.JSONRenderer()(None, "info", {
        **fields, "Api_Key": "**********", "event": "message.processed", "level": "info", "timestamp": stamp})
    assert line == expected
    assert '"custom": "custom form"' in line and "\\u00e9" in line


def teardown_module() -> None:
    logging.getLogger().handlers[:] = []
    structlog.reset_defaults()


def test_json_events_skip_stdlib_records_and_follow_redirect() -> None:
    """In JSON, the project's own events are rendered and written straight to the handler's stream
    (no stdlib record: the daemon logs one per message), the same fields in the same order, at the
    configured level; libraries' stdlib records still reach the handler; ``redirect`` moves both."""
    out = io.StringIO()
    logs.configure("json", "INFO", stream=out)
    handler = logging.getLogger().handlers[0]
    through_stdlib: list[str] = []
    handler.addFilter(lambda record: through_stdlib.append(record.getMessage()) or True)
    log = structlog.get_logger("processor.test")
    log.info("message.processed", mailbox="m", uid=7, recipients=["a@example.org"], decisions=["suppress"])
    log.debug("not shown at INFO")
    logging.getLogger("some.library").warning("from a library %s", 1)
    moved = io.StringIO()
    logs.redirect(moved)
    log.warning("after the redirect", password="hunter2")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [list(line) for line in lines] == [
        ["mailbox", "uid", "recipients", "decisions", "event", "level", "timestamp"],
        ["event", "level", "timestamp"],
    ]
    assert lines[0]["recipients"] == ["a@example.org"] and lines[0]["level"] == "info"
    assert lines[1]["event"] == "from a library 1"
    assert through_stdlib == ["from a library 1"]
    assert json.loads(moved.getvalue()) | {"timestamp": ""} == {
        "event": "after the redirect", "password": "**********", "level": "warning", "timestamp": ""}


def test_a_logger_used_before_a_reconfigure_writes_where_the_new_one_says() -> None:
    """Loggers keep their processors once used: an event still goes to the handler and in the
    format of the latest ``configure`` (a module-level logger outlives a test's set-up)."""
    log = structlog.get_logger("processor.test.kept")
    first, second = io.StringIO(), io.StringIO()
    logs.configure("json", "INFO", stream=first)
    log.info("one")
    logs.configure("json", "INFO", stream=second)
    log.info("two")
    logs.configure("console", "INFO", stream=first)
    log.info("three")
    assert json.loads(second.getvalue())["event"] == "two"
    lines = first.getvalue().splitlines()
    assert json.loads(lines[0])["event"] == "one" and "three" in lines[1] and not lines[1].startswith("{")


def test_a_logger_used_before_a_reconfigure_keeps_to_the_new_level() -> None:
    """A logger first used at INFO, after a configure at WARNING, writes no INFO line (a command
    that logs quietly, run after the daemon in one process), in JSON as in the console format."""
    log = structlog.get_logger("processor.test.level")
    first, second, third = io.StringIO(), io.StringIO(), io.StringIO()
    logs.configure("json", "INFO", stream=first)
    log.info("shown")
    logs.configure("json", "WARNING", stream=second)
    log.info("hidden")
    log.warning("kept")
    logs.configure("console", "WARNING", stream=third)
    log.info("hidden too")
    assert json.loads(first.getvalue())["event"] == "shown"
    assert [json.loads(line)["event"] for line in second.getvalue().splitlines()] == ["kept"]
    assert third.getvalue() == ""


def test_a_command_does_not_import_rich_for_structlog() -> None:
    """A fresh process that sets up logging loads structlog without rich (its tracebacks are
    never used here); rich can still be imported afterwards (the run report uses it)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from processor import logs\n"
        "logs.configure('console', 'INFO')\n"
        "import structlog.dev\n"
        "print('rich' in sys.modules, structlog.dev.rich is None)\n"
        "import rich.console\n"
        "print(rich.console.Console.__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True", "Console"]
