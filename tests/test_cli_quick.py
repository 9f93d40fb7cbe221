"""The command-line parser declares only the command a quick command line names (``parse``,
``suppress``): what it parses, and every error it reports, are the full parser's."""

from __future__ import annotations

import contextlib
import io

import pytest

from processor import cli

ARGVS = [
    ["parse", "x.eml"],
    ["parse", "--jsonl", "-j", "2", "a", "b"],
    ["--config", "c.toml", "parse", "--jsonl", "x"],
    ["-c", "parse", "parse", "x"],
    ["--log-level=DEBUG", "--log-format", "json", "parse", "x"],
    ["--config=parse", "suppress", "check", "someone@example.org"],
    ["suppress", "list"],
    ["parse"],
    ["parse", "--bogus", "x"],
    ["parse", "--jobs", "0", "x"],
    ["parse", "-h"],
    ["suppress", "--help"],
    ["--log-format", "bad", "parse", "x"],
    ["--conf", "c.toml", "parse", "x"],
    ["pars", "x"],
    ["rules", "check"],
    ["-h"],
    [],
]


def _outcome(parser_argv: list[str] | None, argv: list[str]) -> tuple[object, str, str, int | str | None]:
    parser = cli.build_parser(parser_argv)
    out, err = io.StringIO(), io.StringIO()
    code: int | str | None = None
    args = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            args = vars(parser.parse_args(argv))
        except SystemExit as exc:
            code = exc.code
    if args is not None:
        args = {k: getattr(v, "__qualname__", v) for k, v in args.items()}  # handlers by name
    return args, out.getvalue(), err.getvalue(), code


@pytest.mark.parametrize("argv", ARGVS, ids=lambda a: " ".join(a) or "(none)")
def test_quick_parser_parses_and_fails_as_the_full_one(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    assert _outcome(argv, argv) == _outcome(None, argv)


def test_the_command_is_named_only_when_plain() -> None:
    assert cli.command_named(["parse", "x"]) == "parse"
    assert cli.command_named(["-c", "parse", "--log-level", "DEBUG", "suppress"]) == "suppress"
    assert cli.command_named(["--config=x", "parse"]) == "parse"
    assert cli.command_named(["--conf", "x", "parse"]) is None
    assert cli.command_named(["-cx", "parse"]) is None
    assert cli.command_named(["--", "parse"]) is None
    assert cli.command_named(["--config"]) is None


def test_a_quick_parser_declares_only_its_command() -> None:
    parser = cli.build_parser(["parse", "x"])
    choices = next(a for a in parser._actions if a.dest == "command").choices
    assert choices is not None and list(choices) == ["parse"]


def test_a_quick_command_imports_no_other_command_module() -> None:
    import subprocess
    import sys

    code = (
        "import sys\nfrom processor import cli\ncli.build_parser(['parse', 'x'])\n"
        "print(sorted(m for m in sys.modules if m.startswith('processor.commands.')))\n"
        "from processor import commands\nprint(len(commands.COMMAND_MODULES))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "['processor.commands.parse_cmd']"
    assert out[1] == "11"


def test_command_module_is_only_for_quick_commands() -> None:
    from processor import commands

    assert commands.command_module("suppress").__name__ == "processor.commands.suppress_cmd"
    with pytest.raises(KeyError):
        commands.command_module("rules")


@pytest.mark.parametrize("columns", [None, "100", "45", "0", "wide"])
def test_the_help_width_is_the_one_shutil_gives(columns: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The help formatter finds the terminal's width without shutil, as shutil finds it."""
    import shutil

    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert cli._terminal_columns() == shutil.get_terminal_size().columns
    parser = cli.build_parser(["parse", "x"])
    subparser = next(a for a in parser._actions if a.dest == "command").choices["parse"]  # type: ignore[index]
    assert isinstance(subparser._get_formatter(), cli._HelpFormatter)


def test_a_parse_start_imports_no_shutil() -> None:
    import subprocess
    import sys

    code = "import sys\nfrom processor import cli\ncli.build_parser(['parse', 'x']).parse_args(['parse', 'x'])\n" \
           "print('shutil' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "False"
