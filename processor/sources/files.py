"""Messages from the file system: single .eml files, directories of them, Maildirs, mbox files,
and standard input."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

from processor.records import RawMessage

_MBOX_START = b"From "


class SourceError(Exception):
    """A path that cannot be read as messages."""


def is_maildir(path: Path) -> bool:
    return path.is_dir() and (path / "cur").is_dir() and (path / "new").is_dir()


def iter_mbox(path: Path) -> Iterator[RawMessage]:
    """Messages of an mbox file, streamed; '>From ' quoting is undone (mboxrd)."""
    index = 0
    lines: list[bytes] = []
    with path.open("rb") as fh:
        for line in fh:
            if line.startswith(_MBOX_START) and (not lines or lines[-1].strip() == b""):
                if lines:
                    yield RawMessage(b"".join(lines), f"{path}#{index}")
                    index += 1
                lines = []
                continue
            quoted = line.startswith(b">") and line.lstrip(b">").startswith(_MBOX_START)
            lines.append(line[1:] if quoted else line)
    if lines:
        yield RawMessage(b"".join(lines), f"{path}#{index}")


def iter_directory(path: Path) -> Iterator[Path]:
    """Message files below a directory (a Maildir's new/ and cur/, or any file), sorted."""
    if is_maildir(path):
        for sub in ("new", "cur"):
            yield from sorted(p for p in (path / sub).iterdir() if p.is_file() and not p.name.startswith("."))
        return
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "tmp")
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(root) / name


def iter_path(given: str) -> Iterator[RawMessage]:
    """Every message a command-line argument names: a file, directory, Maildir, mbox, or '-'."""
    if given == "-":
        yield RawMessage(sys.stdin.buffer.read(), "-")
        return
    path = Path(given)
    if path.is_dir():
        for file in iter_directory(path):
            yield from _iter_file(file)
        return
    if not path.exists():
        raise SourceError(f"{given}: no such file or directory")
    yield from _iter_file(path)


def iter_files(given: str) -> Iterator[Path | None]:
    """The files a command-line argument names, in the order ``iter_path`` reads them (None for
    '-', standard input); each is read with ``read_file``. SourceError for a missing path."""
    if given == "-":
        yield None
        return
    path = Path(given)
    if path.is_dir():
        yield from iter_directory(path)
        return
    if not path.exists():
        raise SourceError(f"{given}: no such file or directory")
    yield path


def read_file(path: Path) -> Iterator[RawMessage]:
    """The messages of one file: one .eml, or each message of an mbox."""
    return _iter_file(path)


def is_mbox(path: str | Path) -> bool:
    """Whether a file starts as an mbox does ('From '), so that it may hold many messages; False
    for a file that cannot be read (``read_file`` says why)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(len(_MBOX_START)) == _MBOX_START
    except OSError:
        return False


def _iter_file(path: Path) -> Iterator[RawMessage]:
    try:
        with open(path, "rb") as fh:  # opened once: an .eml is read whole from here
            head = fh.read(len(_MBOX_START))
            data = None if head == _MBOX_START else head + fh.read()
        if data is None:
            messages = list(iter_mbox(path)) if path.stat().st_size < 64 * 1024 else None
            if messages is not None and len(messages) == 1:
                # one message with an envelope line: report it under its own path
                yield RawMessage(messages[0].data, str(path))
                return
            yield from (messages if messages is not None else iter_mbox(path))
            return
        yield RawMessage(data, str(path))
    except OSError as exc:
        raise SourceError(f"{path}: {exc.strerror or exc}") from exc
