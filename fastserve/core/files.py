"""What DIR holds on disk: model and version folders, and fingerprints of their files.

A fingerprint is the sorted ``(relative path, size, mtime_ns)`` of the files below a
folder: it changes when a file is written, replaced, added or removed. The poller
loads a folder only once its fingerprint held still for one poll interval (so a copy
in progress is not loaded half-written), and retries a FAILED version when it changes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from ..errors import ConfigError, InvalidInputError, ModelNotFoundError
from .archive import FILE_SUFFIXES, find_archives, is_archive
from .model_config import parse_model_config

VERSION_RE = re.compile(r"[1-9][0-9]*\Z")
# Model-level files: a change to one of them retries a model whose config was broken.
MODEL_LEVEL_FILES = ("config.toml", "config.pbtxt", "labels.json", "index_to_name.json",
                     "handler.py")

Fingerprint = tuple[tuple[str, int, int], ...]


def version_key(version: str) -> tuple[int, tuple[int, ...], str]:
    """Sort key of version names: folders' 1 < 2 < 10, TorchServe's 1.0 < 1.10 < 2.0."""
    parts = version.split(".")
    if all(p.isdigit() for p in parts):
        return (0, tuple(int(p) for p in parts), "")
    return (1, (), version)


def fingerprint(folder: Path, names: Iterable[str] | None = None) -> Fingerprint:
    """Every file below ``folder`` (or only the listed ``names`` in it), with size and mtime."""
    found: list[tuple[str, int, int]] = []
    if names is not None:
        for name in names:
            try:
                st = (folder / name).stat()
            except OSError:
                continue
            found.append((name, st.st_size, st.st_mtime_ns))
        return tuple(found)
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
            except OSError:  # removed while we looked
                continue
            found.append((os.path.relpath(path, folder), st.st_size, st.st_mtime_ns))
    return tuple(found)


def source_fingerprint(source: Path) -> Fingerprint:
    """A model source's fingerprint: an archive file's own size and mtime, a folder's files
    but for ``__pycache__`` (importing its handler writes there: not a change to load)."""
    if source.is_dir():
        return tuple(f for f in fingerprint(source)
                     if "__pycache__" not in Path(f[0]).parts)
    try:
        st = source.stat()
    except OSError:
        return ()
    return ((source.name, st.st_size, st.st_mtime_ns),)


def archive_snapshot(root: Path) -> dict[Path, Fingerprint]:
    """Every TorchServe archive of DIR (file or folder) with its fingerprint (blocking)."""
    return {source: source_fingerprint(source) for source in find_archives(root)}


def model_folders(root: Path) -> list[Path]:
    """The model folders of DIR, as the initial scan sees them."""
    try:
        return sorted(p for p in root.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and not is_archive(p))
    except OSError:
        return []


def version_names(folder: Path) -> list[str]:
    """The version folders of a model folder (1, 2, ...), as the scan loads them."""
    try:
        subs = list(folder.iterdir())
    except OSError:
        return []
    return sorted((p.name for p in subs if p.is_dir() and VERSION_RE.match(p.name)), key=int)


def model_name(folder: Path) -> str:
    """The name a model folder serves under: config.toml's ``name``, else the folder name."""
    try:
        return parse_model_config(folder).name
    except ConfigError:
        return folder.name


@dataclass(frozen=True)
class FolderFiles:
    """One model folder at one poll."""

    name: str
    files: Fingerprint  # the model-level files
    versions: dict[str, Fingerprint]


def snapshot(root: Path) -> dict[Path, FolderFiles]:
    """Every model folder of DIR with its fingerprints (blocking: run it off the loop)."""
    snap = {}
    for folder in model_folders(root):
        versions = {v: fingerprint(folder / v) for v in version_names(folder)}
        snap[folder] = FolderFiles(model_name(folder), fingerprint(folder, MODEL_LEVEL_FILES),
                                   versions)
    return snap


def resolve_model_folder(root: Path, url: str) -> Path:
    """The model source of DIR that ``url`` names: a model folder or a TorchServe archive
    (``a.mar``, an archive folder), by name, path or file:// URL.

    Raises:
        InvalidInputError: not a source of DIR: a remote URL (no downloads at run time),
            a path outside DIR, a subfolder (400, as TorchServe answers).
        ModelNotFoundError: no such folder or archive in DIR (404).
    """
    text = url.strip()
    if not text:
        raise InvalidInputError("'url' is required: the name of a model folder or archive "
                                f"(.mar) in the model repository {root}")
    if text.lower().startswith("file://"):
        text = unquote(urlparse(text).path)
    elif "://" in text:
        raise InvalidInputError(
            f"url {url!r}: only folders and archives inside the model repository {root} can "
            "be registered (fastserve downloads nothing); copy the model there first")
    path = Path(text)
    if not path.is_absolute():
        path = root / path
    # Lexical: '..' cannot climb out; the folder must be one the scan itself would serve.
    folder = Path(os.path.normpath(path))
    if folder.parent != root:
        if folder == root or root in folder.parents:
            raise InvalidInputError(
                f"url {url!r} names {folder}, not a model folder: give a folder or archive "
                f"directly inside the model repository {root}")
        raise InvalidInputError(f"url {url!r} is outside the model repository {root}; only "
                                "its folders and archives can be registered")
    if folder.name.startswith("."):
        raise InvalidInputError(f"url {url!r}: hidden folders are not model folders")
    if folder.name.endswith(FILE_SUFFIXES):
        if not folder.is_file():
            raise ModelNotFoundError(f"no model archive {folder.name!r} in the model "
                                     f"repository {root}")
        return folder
    if not folder.is_dir():
        raise ModelNotFoundError(f"no model folder {folder.name!r} in the model repository "
                                 f"{root}")
    return folder
