"""Listing the files below a directory: the order and the spelling ``parse`` prints them in."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from processor.sources.files import is_mbox, iter_directory, iter_files


def _reference(path: Path) -> Iterator[Path]:
    """The definition: os.walk with Path objects (the listing as it was first written)."""
    if (path / "cur").is_dir() and (path / "new").is_dir():
        for sub in ("new", "cur"):
            yield from sorted(p for p in (path / sub).iterdir() if p.is_file() and not p.name.startswith("."))
        return
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "tmp")
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(root) / name


def _tree(top: Path) -> None:
    for name in ("b.eml", "a.eml", "A.eml", ".hidden", "z", "10.eml", "9.eml"):
        (top / name).write_bytes(b"x")
    for folder in ("sub", "sub/deeper", "Sub2", ".dot", "tmp", "sub/tmp", "empty"):
        (top / folder).mkdir()
        if folder != "empty":
            (top / folder / "m.eml").write_bytes(b"x")
    (top / "sub" / "deeper" / "n.eml").write_bytes(b"x")
    (top / "link-to-dir").symlink_to(top / "sub")  # not followed
    (top / "link-to-file.eml").symlink_to(top / "a.eml")
    (top / "dangling.eml").symlink_to(top / "missing")  # listed: reading it says why it fails
    maildir = top / "box"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    (maildir / "new" / "2.x").write_bytes(b"x")
    (maildir / "new" / "1.x").write_bytes(b"x")
    (maildir / "cur" / "0.x").write_bytes(b"x")
    (maildir / "cur" / ".x").write_bytes(b"x")
    (maildir / "tmp" / "t.x").write_bytes(b"x")


@pytest.mark.parametrize("spelling", ["{top}", "{top}/", "{top}//", "{top}/./", "rel", "./rel/", "rel/box", "."])
def test_listing_is_os_walk_order_and_path_spelling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spelling: str
) -> None:
    """Same files, same order, same strings as os.walk over Path objects: dot files, dot
    directories and tmp/ skipped, links to directories not followed, a Maildir's new/ then cur/."""
    top = tmp_path / "rel"
    top.mkdir()
    _tree(top)
    monkeypatch.chdir(tmp_path if spelling != "." else top)
    given = spelling.format(top=top)
    expected = [str(p) for p in _reference(Path(given))]
    assert len(expected) >= 3
    assert list(iter_files(given)) == expected
    assert [str(p) for p in iter_directory(Path(given))] == expected


def test_a_file_is_spelt_as_path_spells_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "one.eml").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    assert list(iter_files("./one.eml")) == ["one.eml"] and list(iter_files("-")) == [None]


def test_is_mbox(tmp_path: Path) -> None:
    (tmp_path / "a.mbox").write_bytes(b"From someone Thu Jan  1 00:00:00 2026\nSubject: x\n\n")
    (tmp_path / "a.eml").write_bytes(b"Return-Path: <>\nFrom: x\n\n")
    assert is_mbox(tmp_path / "a.mbox") and not is_mbox(tmp_path / "a.eml")
    assert not is_mbox(tmp_path / "missing")
