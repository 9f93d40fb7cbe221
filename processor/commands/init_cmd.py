"""``bounce-processor init [DIR]``: a working installation in one command.

Writes ``DIR/config.toml`` listing every setting with its default and what it does (taken from
the Settings models themselves, so the file cannot drift from the code), creates and migrates
the database, makes ``DIR/incoming/`` (a directory source, so that ``run --once`` has something
to read at once), and prints a first API token with the read, write and ui (web console) scopes
once; only its hash is written to the file. An existing configuration is never overwritten.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from processor.commands import CommandError

CONFIG_NAME = "config.toml"
INCOMING = "incoming"

# The sections written, in this order, with the Settings field and model class of each.
_SECTIONS = [
    ("database", "DatabaseSettings"),
    ("parse", "ParseSettings"),
    ("rules", "RulesSettings"),
    ("policy", "PolicySettings"),
    ("verp", "VerpSettings"),
    ("daemon", "DaemonSettings"),
    ("api", "ApiSettings"),
    ("policyd", "PolicydSettings"),
]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "init",
        help="write a commented configuration, create the database and print a first API token",
        description="Set up DIR (default: the current directory): DIR/config.toml with every setting, "
        "its default and what it does; the database (SQLite DIR/bounce-processor.db unless "
        "--database-url), migrated; DIR/incoming/ as a first mailbox (a directory of .eml files); and an "
        "API token with read, write and ui (web console) scopes, printed once. An existing config.toml is never "
        "overwritten.",
    )
    p.add_argument("directory", nargs="?", default=".", type=Path, help="where to set up (created if missing)")
    p.add_argument("--database-url", help="SQLAlchemy URL (default: sqlite:///DIR/bounce-processor.db)")
    p.add_argument("--token-name", default="admin", help="name of the first API token (default: admin)")
    p.set_defaults(handler=run)


# --------------------------------------------------------------------------- the file


def field_docs() -> dict[tuple[str, str], str]:
    """(model class, field) -> the docstring written under the field, in the module of each
    settings model (processor/config.py and the modules it re-exports from)."""
    import ast
    import inspect

    from processor import config

    modules = {sys.modules[model.__module__] for model in _models(config)}
    docs: dict[tuple[str, str], str] = {}
    for module in modules:
        tree = ast.parse(inspect.getsource(module))
        for node in tree.body:
            if not isinstance(node, ast.ClassDef):
                continue
            for field, after in itertools.pairwise(node.body):
                if (isinstance(field, ast.AnnAssign) and isinstance(field.target, ast.Name)
                        and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                        and isinstance(after.value.value, str)):
                    docs[(node.name, field.target.id)] = inspect.cleandoc(after.value.value)
    return docs


def _models(config: Any) -> list[type]:
    return [getattr(config, name) for _, name in _SECTIONS] + [config.MailboxSettings, config.ApiToken]


class _OctalMode(int):
    """A file mode, written in octal (0o660) as people read modes."""


def toml_value(value: Any) -> str:
    """A default value written as TOML."""
    from pydantic import BaseModel, SecretStr

    if isinstance(value, _OctalMode):
        return f"0o{value:o}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, SecretStr):
        return '""'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, BaseModel):
        return toml_value(value.model_dump())
    raise TypeError(f"no TOML form for {value!r}")


def _comment(text: str) -> list[str]:
    return [f"# {line}".rstrip() for line in text.splitlines()]


def render_config(database_url: str, incoming: Path, token_name: str, token_hash: str) -> str:
    """The whole configuration file: set values plain, every other setting commented out at its default."""
    import inspect

    from pydantic import BaseModel

    from processor import config

    docs = field_docs()
    set_values: dict[tuple[str, str], Any] = {("database", "url"): database_url}
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# bounce-processor configuration, written by `bounce-processor init` on {stamp}.",
        "#",
        "# Every setting is listed under its section with what it does. A line `# name = value` is the",
        "# default, left commented out: remove the `# ` to change it. Any value can also come from the",
        "# environment: BOUNCE_<SECTION>__<NAME>, e.g. BOUNCE_DATABASE__URL or",
        "# BOUNCE_MAILBOXES__BOUNCES__PASSWORD (keep passwords there or in a *_file, not in this file).",
        "# Check it with: bounce-processor --config THIS_FILE config check",
        "",
    ]
    for section, class_name in _SECTIONS:
        model = getattr(config, class_name)
        class_doc = inspect.getdoc(model)
        lines.append(f"[{section}]")
        if class_doc and class_doc != inspect.getdoc(BaseModel):
            lines.extend(_comment(class_doc.splitlines()[0]))
        for name, field in model.model_fields.items():
            if section == "api" and name == "tokens":
                continue  # written below as [[api.tokens]]
            doc = docs.get((class_name, name))
            if doc:
                lines.extend(_comment(doc))
            default = field.get_default(call_default_factory=True)
            if isinstance(default, int) and name.endswith("_mode"):
                default = _OctalMode(default)
            if (section, name) in set_values:
                lines.append(f"{name} = {toml_value(set_values[(section, name)])}")
            elif default is None:
                lines.append(f"# {name} =     (not set by default)")
            else:
                lines.append(f"# {name} = {toml_value(default)}")
        lines.append("")
        if section == "api":
            lines += [
                "# API clients: the SHA-256 of each bearer token (`bounce-processor api new-token NAME`",
                "# prints a new one). With no token the API is open, which is allowed on loopback only.",
                "[[api.tokens]]",
                f"name = {json.dumps(token_name)}",
                f"hash = {json.dumps(token_hash)}",
                'scopes = ["read", "write", "ui"]',
                "",
            ]
    lines += _mailbox_section(incoming, docs)
    return "\n".join(lines) + "\n"


def _mailbox_section(incoming: Path, docs: dict[tuple[str, str], str]) -> list[str]:
    from processor import config

    lines = [
        "# Mailboxes: where reports arrive. Each [mailboxes.NAME] is one source (names: a-z 0-9 . _ -).",
        "# This one reads the .eml files dropped into the directory below; processed files move to its",
        "# Processed/ sub-directory, unreadable ones to Quarantine/ (never deleted).",
        "[mailboxes.incoming]",
        'source = "directory"',
        f"path = {toml_value(incoming)}",
        'kind = "auto"',
        "",
        "# An IMAP bounce mailbox: remove the `# ` of the lines you need. Every MailboxSettings field:",
        "# [mailboxes.bounces]",
    ]
    example = {"source": "imap", "host": "imap.example.org", "username": "bounces@example.org",
               "password_file": "/etc/bounce-processor/bounces-password", "kind": "bounce"}
    for name, field in config.MailboxSettings.model_fields.items():
        doc = docs.get(("MailboxSettings", name))
        if doc:
            lines.extend(_comment(doc))
        if name in example:
            lines.append(f"# {name} = {toml_value(example[name])}")
            continue
        default = field.get_default(call_default_factory=True)
        lines.append(f"# {name} =     (not set by default)" if default is None
                     else f"# {name} = {toml_value(default)}")
    return lines


# --------------------------------------------------------------------------- the command


def run(args: argparse.Namespace) -> int:
    from processor.api.auth import hash_token, new_token
    from processor.config import ConfigError

    directory: Path = args.directory.resolve()
    config_path = directory / CONFIG_NAME
    if config_path.exists():
        raise CommandError(f"{config_path} exists already; init never overwrites a configuration "
                           "(move it away, or edit it)")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        incoming = directory / INCOMING
        incoming.mkdir(exist_ok=True)
    except OSError as exc:
        raise CommandError(f"cannot create {directory}: {exc.strerror}") from None
    database_url = args.database_url or f"sqlite:///{directory / 'bounce-processor.db'}"
    token = new_token()
    text = render_config(database_url, incoming, args.token_name, hash_token(token))
    try:
        settings = load_settings_from_text(text, config_path)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    _create_database(settings)
    # written only once everything else worked, so that a failed init can simply be run again
    fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)

    shown = settings.database.url if "@" not in settings.database.url else "(from the configuration)"
    out_ = sys.stdout
    print(f"wrote {config_path} (every setting, its default and what it does)", file=out_)
    print(f"database {shown}: created, migrations applied", file=out_)
    print(f"API token {args.token_name!r} with read, write and ui scopes (shown only this once; config.toml "
          f"keeps its hash):\n    {token}", file=out_)
    print("\nnext:", file=out_)
    print(f"  put bounce messages (.eml files) into {incoming}/ and read them:", file=out_)
    print(f"      bounce-processor --config {config_path} run --once", file=out_)
    print("  see what was suppressed, and why:", file=out_)
    print(f"      bounce-processor --config {config_path} suppress list", file=out_)
    print(f"  add your IMAP bounce mailbox in {config_path} ([mailboxes.bounces]), check it with", file=out_)
    print(f"      bounce-processor --config {config_path} config check --connect", file=out_)
    print(f"  and run the service (mailboxes + HTTP API on {settings.api.host}:{settings.api.port}):", file=out_)
    print(f"      bounce-processor --config {config_path} run", file=out_)
    return 0


def load_settings_from_text(text: str, path: Path) -> Any:
    """Validate the rendered file exactly as ``--config`` would read it (through a temporary copy)."""
    import tempfile

    from processor.config import load_settings

    with tempfile.NamedTemporaryFile("w", suffix=".toml", dir=path.parent, delete=False) as tmp:
        tmp.write(text)
    try:
        return load_settings(tmp.name)
    finally:
        os.unlink(tmp.name)


def _create_database(settings: Any) -> None:
    from processor.store import StoreError, open_store

    try:
        store = open_store(settings)
    except StoreError as exc:
        raise CommandError(f"cannot create the database: {exc}") from None
    store.close()
