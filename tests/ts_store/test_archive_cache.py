"""Extracted archives are kept between starts (keyed by the file's path, size, mtime and
inode), so a restart does not extract again; only a private folder is trusted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fastserve.core import archive_extract
from fastserve.core.archive import read_archive
from fastserve.core.archive_extract import CACHE_ENV, extraction_root, prepare

from ts_archives import build_mar


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(folder))
    monkeypatch.setattr(archive_extract, "_root", None)  # as a fresh process finds it
    return folder


def restart(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive_extract, "_root", None)


def test_a_restart_reuses_the_extracted_folder(tmp_path: Path, cache: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    mar = build_mar(tmp_path, tmp_path / "store", "tiny", "1.0")
    folder = prepare(mar)
    assert folder.parent == cache and (folder / "handler.py").is_file()
    (folder / "handler.py").write_text("# seen by the next start\n")
    restart(monkeypatch)
    assert prepare(mar) == folder
    assert (folder / "handler.py").read_text() == "# seen by the next start\n"  # not redone


def test_a_replaced_archive_is_extracted_again_and_old_copies_removed_later(
        tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "store"
    old = prepare(build_mar(tmp_path / "a", store, "tiny", "1.0"))
    new_mar = build_mar(tmp_path / "b", tmp_path / "next", "tiny", "2.0")
    os.replace(new_mar, store / "tiny.mar")
    restart(monkeypatch)
    new = prepare(store / "tiny.mar")
    assert new != old and read_archive(new).version == "2.0"
    assert old.exists()  # just replaced: its version may still be draining
    os.utime(old, (1, 1))  # long ago
    os.utime(store / "tiny.mar")  # a third copy of the file
    newest = prepare(store / "tiny.mar")
    assert not old.exists() and new.exists()
    assert sorted(p.name for p in cache.iterdir() if not p.name.startswith(".")) == sorted(
        [new.name, newest.name])


def test_a_cache_others_can_write_is_not_trusted(tmp_path: Path, cache: Path) -> None:
    cache.mkdir(mode=0o777)
    cache.chmod(0o777)
    root = extraction_root()
    assert root != cache and root.name.startswith("fastserve-mar-")
    assert (root.stat().st_mode & 0o077) == 0  # mkdtemp: ours alone


def test_copies_of_archives_gone_from_disk_are_dropped_at_the_next_start(
        tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kept_mar = build_mar(tmp_path, tmp_path / "store", "kept", "1.0")
    gone_mar = build_mar(tmp_path, tmp_path / "store", "gone", "1.0")
    kept, gone = prepare(kept_mar), prepare(gone_mar)
    crashed = cache / ".half-extracted-abc"  # what a crash mid-extraction leaves
    crashed.mkdir()
    gone_mar.unlink()
    for path in cache.iterdir():
        os.utime(path, (1, 1))  # long ago
    restart(monkeypatch)
    assert extraction_root() == cache
    assert kept.is_dir() and not gone.exists() and not crashed.exists()
    assert sorted(p.name for p in cache.iterdir()) == sorted([kept.name,
                                                              f".{kept.name}.source"])
