"""Extracting a ``.mar`` safely (the loader thread): into a folder of its own, every member
checked (``archive.check_members``) and the bytes counted as they are written."""

from __future__ import annotations

import atexit
import glob
import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
import zipfile
from pathlib import Path

from .archive import (
    DEFAULT_MAX_SIZE,
    TAR_SUFFIXES,
    ArchiveError,
    check_members,
    inflated,
    member_path,
)
from .archive_tar import extract_tar

log = logging.getLogger("fastserve.archive")

CHUNK = 1024 * 1024  # bytes read and written at a time

_root: Path | None = None
_EXTRACTING = threading.Lock()
CACHE_ENV = "FASTSERVE_ARCHIVE_CACHE"
# An older copy of a replaced archive is removed once this old (seconds): the version
# extracted from it may still be draining (here, or in a --workers sibling) meanwhile.
STALE_AFTER = 600.0


def extraction_root() -> Path:
    """Where extracted archives are kept between starts, so a restart does not extract
    again: $FASTSERVE_ARCHIVE_CACHE, else $XDG_CACHE_HOME/fastserve/archives (default
    ~/.cache). A folder that is not ours alone (owner, mode 0700) is not trusted: then a
    private folder of this process, removed at exit."""
    global _root
    if _root is None:
        _root = _private_cache() or _temporary_root()
    return _root


def _private_cache() -> Path | None:
    configured = os.environ.get(CACHE_ENV)
    if configured:
        folder = Path(configured)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"),
                                                                ".cache")
        folder = Path(base) / "fastserve" / "archives"
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = folder.stat()
    except OSError:
        return None
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        log.info("archive cache %s is not private to this user: extracting into a temporary "
                 "folder", folder)
        return None
    _prune(folder)
    return folder


def _prune(cache: Path) -> None:
    """Once per process: drop copies whose archive is gone from disk (its path is in the
    ``.<copy>.source`` beside it), and half-extracted folders a crash left behind."""
    try:
        entries = list(cache.iterdir())
    except OSError:
        return
    for entry in entries:
        if _age(entry) <= STALE_AFTER:
            continue
        if entry.name.endswith(".source") and entry.is_file():
            try:
                gone = not Path(entry.read_text(encoding="utf-8")).exists()
            except (OSError, UnicodeDecodeError):
                gone = True
            if gone:
                shutil.rmtree(cache / entry.name[1:-len(".source")], ignore_errors=True)
                entry.unlink(missing_ok=True)
        elif entry.name.startswith(".") and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)


def _temporary_root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="fastserve-mar-"))
    atexit.register(shutil.rmtree, root, True)
    return root


def prepare(source: Path, max_size: int = DEFAULT_MAX_SIZE, into: Path | None = None) -> Path:
    """The folder a handler runs in: a folder as it is, an archive extracted once per file
    version (path, size, mtime, inode) into ``into`` (default: ``extraction_root()``);
    another version of the same file replaces it there. Raises ArchiveError."""
    if source.is_dir():
        return source
    try:
        st = source.stat()
        where = str(source.resolve())
    except OSError as exc:
        raise ArchiveError(f"{source.name} cannot be read: {exc}") from None
    place = hashlib.sha1(where.encode()).hexdigest()[:12]
    version = hashlib.sha1(f"{st.st_size}|{st.st_mtime_ns}|{st.st_ino}".encode()).hexdigest()
    base = into or extraction_root()
    target = base / f"{source.name}-{place}-{version[:12]}"
    with _EXTRACTING:  # two loads of one archive (a reload, a second name) extract it once
        if target.is_dir():
            return target
        base.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{source.name}-", dir=base))
        try:
            extract(source, partial, max_size)
            if into is None:  # the cache's own bookkeeping (see _prune)
                (base / f".{target.name}.source").write_text(where, encoding="utf-8")
            os.replace(partial, target)
        except OSError as exc:
            shutil.rmtree(partial, ignore_errors=True)
            if not target.is_dir():  # else another process (a --workers sibling) won
                raise ArchiveError(f"{source.name} cannot be extracted: {exc}") from None
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        for stale in base.glob(f"{glob.escape(source.name)}-{place}-*"):
            if stale != target and _age(stale) > STALE_AFTER:  # an earlier version of this
                shutil.rmtree(stale, ignore_errors=True)  # file, no longer draining anywhere
                (base / f".{stale.name}.source").unlink(missing_ok=True)
        return target


def _age(folder: Path) -> float:
    try:
        return time.time() - folder.stat().st_mtime
    except OSError:
        return 0.0


def extract(source: Path, folder: Path, max_size: int) -> None:
    """Write every member of ``source`` below ``folder``, counting the bytes as written."""
    if source.name.endswith(TAR_SUFFIXES):
        extract_tar(source, folder, max_size)
        return
    label = source.name
    root = folder.resolve()
    written = 0
    try:
        with zipfile.ZipFile(source) as zf:
            check_members(zf, max_size, label)
            for info in zf.infolist():
                rel = member_path(info.filename, label)
                dest = root.joinpath(*[p for p in rel.parts if p not in ("", ".")])
                if dest != root and root not in dest.parents:
                    raise ArchiveError(f"{label}: member {info.filename!r} would be written "
                                       "outside the model's folder (zip-slip); refused")
                if info.is_dir():
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                if dest.parent.resolve() != dest.parent:  # a link on the way: never follow
                    raise ArchiveError(f"{label}: member {info.filename!r} passes a link")
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                with zf.open(info) as src, os.fdopen(os.open(dest, flags, 0o644), "wb") as out:
                    while chunk := src.read(CHUNK):
                        written = inflated(written, len(chunk), max_size, label)
                        out.write(chunk)
    except FileExistsError:
        raise ArchiveError(f"{label}: a member is stored twice; the archive is refused") from None
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as exc:
        raise ArchiveError(f"{label} is not a valid model archive: {exc}") from None
    except OSError as exc:
        raise ArchiveError(f"{label} cannot be extracted: {exc}") from None
