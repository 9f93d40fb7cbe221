"""Messages from the file system: single .eml files, directories of them, Maildirs, mbox files,
and standard input."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from stat import S_ISREG

from processor.records import RawMessage

_MBOX_START = b"From "
_SMALL = 64 * 1024
"""An mbox smaller than this is read whole (a one-message mbox is reported under its path)."""


class SourceError(Exception):
    """A path that cannot be read as messages."""


def is_maildir(path: Path) -> bool:
    return path.is_dir() and (path / "cur").is_dir() and (path / "new").is_dir()


def iter_mbox(path: Path) -> Iterator[RawMessage]:
    """Messages of an mbox file, streamed; '>From ' quoting is undone (mboxrd)."""
    with path.open("rb") as fh:
        yield from _mbox_messages(fh, str(path))


def _mbox_messages(lines_read: Iterable[bytes], name: str) -> Iterator[RawMessage]:
    index = 0
    lines: list[bytes] = []
    for line in lines_read:
        if line.startswith(_MBOX_START) and (not lines or lines[-1].strip() == b""):
            if lines:
                yield RawMessage(b"".join(lines), f"{name}#{index}")
                index += 1
            lines = []
            continue
        quoted = line.startswith(b">") and line.lstrip(b">").startswith(_MBOX_START)
        lines.append(line[1:] if quoted else line)
    if lines:
        yield RawMessage(b"".join(lines), f"{name}#{index}")


def iter_directory(path: Path) -> Iterator[Path]:
    """Message files below a directory (a Maildir's new/ and cur/, or any file), sorted."""
    return map(Path, _directory_files(str(path)))


def _directory_files(top: str) -> Iterator[str]:
    """``iter_directory``'s files, spelt as ``Path`` spells them (``top`` is a ``str(Path)``),
    without a ``Path`` object per file (a directory of 5,000 messages is listed in a third of the
    time). Symbolic links to directories are not followed; dot files, dot directories and tmp/
    are skipped; a directory that cannot be read is skipped, as ``os.walk`` does."""
    prefix = "" if top == "." else top if top.endswith("/") else top + "/"
    if is_maildir(Path(top)):
        for sub in ("new", "cur"):
            with os.scandir(prefix + sub) as entries:
                names = sorted(entry.name for entry in entries if not entry.name.startswith(".") and entry.is_file())
            yield from (f"{prefix}{sub}/{name}" for name in names)
        return
    yield from _walk(prefix)


def _walk(prefix: str) -> Iterator[str]:
    """Files below the directory ``prefix`` names (``''``: the current one), sorted by name, a
    directory's own files before those of its sub-directories (sorted too), as ``os.walk`` goes."""
    files: list[str] = []
    folders: list[str] = []
    try:
        with os.scandir(prefix or ".") as entries:
            for entry in entries:
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    is_dir = False
                if not is_dir:
                    files.append(entry.name)
                elif not entry.name.startswith(".") and entry.name != "tmp" and not entry.is_symlink():
                    folders.append(entry.name)
    except OSError:
        return
    files.sort()
    yield from (prefix + name for name in files if not name.startswith("."))
    for name in sorted(folders):
        yield from _walk(f"{prefix}{name}/")


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


def iter_files(given: str) -> Iterator[str | None]:
    """The files a command-line argument names, in the order ``iter_path`` reads them and spelt as
    it spells them (None for '-', standard input); each is read with ``read_file`` or
    ``read_small``. SourceError for a missing path."""
    if given == "-":
        yield None
        return
    path = Path(given)
    if path.is_dir():
        yield from _directory_files(str(path))
        return
    if not path.exists():
        raise SourceError(f"{given}: no such file or directory")
    yield str(path)


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


def read_small(name: str, below: int = _SMALL) -> list[RawMessage] | None:
    """The messages of the file ``name`` as ``read_file`` gives them, when the file is smaller than
    ``below`` bytes; None for a bigger one (to be streamed with ``read_file``). One open, one
    ``fstat`` and one read for the whole file: the per-file cost of ``parse`` over a directory of
    small .eml files. SourceError when it cannot be read."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if st.st_size >= below:
                return None
            # a regular file's read of more than its size stops at its end: one read
            data = os.read(fd, st.st_size + 1)
            if len(data) > st.st_size or not S_ISREG(st.st_mode):  # it grew, or a pipe: read on
                chunks = [data]
                while chunk := os.read(fd, 1 << 16):
                    chunks.append(chunk)
                data = b"".join(chunks)
        finally:
            os.close(fd)
    except OSError as exc:
        raise SourceError(f"{name}: {exc.strerror or exc}") from exc
    if not data.startswith(_MBOX_START):
        return [RawMessage(data, name)]
    if b"\nFrom " not in data and b"\n>" not in data:
        # one message after its envelope line, nothing quoted: what the line-by-line reading gives
        body = data[data.find(b"\n") + 1 :] if b"\n" in data else b""
        return [RawMessage(body, name)] if body else []
    messages = list(_mbox_messages(io.BytesIO(data), name))
    if len(messages) == 1:
        return [RawMessage(messages[0].data, name)]  # one message with an envelope line
    return messages


def _iter_file(path: Path) -> Iterator[RawMessage]:
    small = read_small(str(path))  # (SourceError when it cannot be read)
    if small is not None:
        yield from small
        return
    try:
        if is_mbox(path):  # a big mbox: streamed
            yield from iter_mbox(path)
        else:
            yield RawMessage(path.read_bytes(), str(path))
    except OSError as exc:
        raise SourceError(f"{path}: {exc.strerror or exc}") from exc
