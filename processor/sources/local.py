"""``MailSource``s on the local file system: a Maildir, or a directory of message files.

Neither has UIDs: each cycle lists the files again, and the ledger's content hash keeps a file
that is read twice from counting twice. A ``read_only`` source never moves, flags or deletes
anything (the embedded default reads the project's samples/ that way).
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from processor.config import MailboxSettings
from processor.sources.base import Disposal, FetchedMessage, MailSource, SourceError, SourceState


def _move(path: Path, target_dir: Path, name: str | None = None) -> None:
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / (name or path.name)
    if target.exists():
        target = target_dir / f"{target.stem}.{os.getpid()}.{datetime.now(UTC).timestamp():.6f}{target.suffix}"
    try:
        os.replace(path, target)
    except OSError:  # another file system
        shutil.move(str(path), str(target))


class _FileSource(MailSource):
    def __init__(self, name: str, settings: MailboxSettings) -> None:
        assert settings.path is not None
        self.name = name
        self.settings = settings
        self.root = Path(settings.path)
        self.read_only = settings.read_only
        self.keeps_processed = settings.read_only or settings.processed == "keep"
        self._files: list[Path] = []

    def _list(self) -> list[Path]:
        raise NotImplementedError

    async def open(self) -> SourceState:
        if not self.root.is_dir():
            raise SourceError(f"{self.name}: {self.root} is not a directory")
        return SourceState(None)

    async def candidates(self, last_uid: int) -> list[int]:
        try:
            self._files = await asyncio.to_thread(self._list)
        except OSError as exc:
            raise SourceError(f"{self.name}: cannot list {self.root}: {exc.strerror or exc}") from None
        return list(range(len(self._files)))

    def _read(self, keys: Sequence[int]) -> list[FetchedMessage]:
        out = []
        for key in keys:
            path = self._files[key]
            try:
                data = path.read_bytes()
                mtime = datetime.fromtimestamp(path.stat().st_mtime, UTC)
            except FileNotFoundError:
                continue  # taken away meanwhile
            except OSError as exc:
                raise SourceError(f"{self.name}: cannot read {path}: {exc.strerror or exc}") from None
            out.append(FetchedMessage(key, None, data, mtime, str(path)))
        return out

    async def fetch(self, keys: Sequence[int]) -> list[FetchedMessage]:
        return await asyncio.to_thread(self._read, keys)

    def _dispose_one(self, path: Path, disposal: Disposal) -> None:
        raise NotImplementedError

    def _dispose(self, keys: Sequence[int], disposal: Disposal) -> None:
        for key in keys:
            path = self._files[key]
            if not path.exists():
                continue
            try:
                self._dispose_one(path, disposal)
            except OSError as exc:
                raise SourceError(f"{self.name}: cannot move {path}: {exc.strerror or exc}") from None

    async def dispose(self, keys: Sequence[int], disposal: Disposal) -> None:
        if self.read_only:
            return
        if disposal is Disposal.PROCESSED and self.settings.processed == "keep":
            return
        await asyncio.to_thread(self._dispose, keys, disposal)


class DirectorySource(_FileSource):
    """Every file below a directory whose name matches ``pattern`` (the processed and quarantine
    sub-directories excluded). Processed files move to ``<path>/<processed_folder>/``, are deleted,
    or stay; quarantined ones move to ``<path>/<quarantine_folder>/``."""

    def _list(self) -> list[Path]:
        skip = {self.settings.processed_folder, self.settings.quarantine_folder}
        found: list[Path] = []
        for root, dirs, files in os.walk(self.root):
            here = Path(root)
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not (here == self.root and d in skip))
            found.extend(here / f for f in sorted(files)
                         if not f.startswith(".") and fnmatch.fnmatch(f, self.settings.pattern))
        return found

    def _dispose_one(self, path: Path, disposal: Disposal) -> None:
        if disposal is Disposal.QUARANTINE:
            _move(path, self.root / self.settings.quarantine_folder)
        elif self.settings.processed == "delete":
            path.unlink()
        else:
            _move(path, self.root / self.settings.processed_folder)


class MaildirSource(_FileSource):
    """A Maildir (new/ and cur/). Processed messages move to the Maildir++ folder
    ``.<processed_folder>``, get the S (seen) flag, are deleted, or stay; quarantined ones move to
    ``.<quarantine_folder>``. With ``processed = "seen"`` messages already flagged S are skipped."""

    async def open(self) -> SourceState:
        if not (self.root / "cur").is_dir() or not (self.root / "new").is_dir():
            raise SourceError(f"{self.name}: {self.root} is not a Maildir (no cur/ and new/)")
        return SourceState(None)

    def _list(self) -> list[Path]:
        seen_only = self.settings.processed == "seen" and not self.read_only
        found: list[Path] = []
        for sub in ("new", "cur"):
            for path in sorted((self.root / sub).iterdir()):
                if path.name.startswith(".") or not path.is_file():
                    continue
                flags = path.name.rpartition(":2,")[2] if ":2," in path.name else ""
                if "T" in flags or (seen_only and "S" in flags):
                    continue
                found.append(path)
        return found

    def _folder(self, name: str) -> Path:
        folder = self.root / f".{name}"
        for sub in ("cur", "new", "tmp"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        return folder

    def _dispose_one(self, path: Path, disposal: Disposal) -> None:
        if disposal is Disposal.QUARANTINE:
            _move(path, self._folder(self.settings.quarantine_folder) / "cur")
        elif self.settings.processed == "delete":
            path.unlink()
        elif self.settings.processed == "seen":
            base, _, flags = path.name.partition(":2,")
            _move(path, self.root / "cur", f"{base}:2,{''.join(sorted(set(flags) | {'S'}))}")
        else:
            _move(path, self._folder(self.settings.processed_folder) / "cur")
