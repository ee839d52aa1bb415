"""TorchServe model archives: `.mar` zips, extracted archives and no-archive folders
(``.tar.gz``: ``core/archive_tar.py``).

torch-model-archiver 0.12 writes a zip (or, with ``--archive-format no-archive``, a
folder; with ``tgz``, a tar) holding the handler, the serialized model, extra files and
``MAR-INF/MANIFEST.json``::

    {"runtime": "python", "archiverVersion": "0.12.0",
     "model": {"modelName": "mnist", "modelVersion": "1.0", "handler": "mnist_handler.py",
               "serializedFile": "mnist_cnn.pt", "modelFile": "mnist.py",
               "configFile": "model-config.yaml", "requirementsFile": "requirements.txt"}}

The interface the repository and the TorchServe handler backend share:

- ``read_archive(source)`` -> ``TsArchive`` (cheap, no extraction): name and version
  from the manifest, its ``model-config.yaml`` parsed, every zip member checked.
  Raises ``ArchiveError`` (a ConfigError: the model FAILS with its message).
- The repository makes one model version of it: ``ModelVersion.folder`` is the
  source (the ``.mar`` file or the folder) and the model's ``ModelConfig`` has
  ``handler == "torchserve"`` (see ``core/ts_store.py``).
- The loader (``model_loader.TorchLoader``) calls ``archive_extract.prepare(source,
  limit)`` on the loader thread, which extracts an archive safely into its folder of
  the archive cache (a folder is used as it is) and returns that folder, then
  ``backends.ts_handler.load(folder, config, labels)``: ``folder`` holds
  ``MAR-INF/MANIFEST.json`` and everything the archive packed;
  ``read_archive(folder)`` gives the backend the manifest and ``model_yaml``
  (the handler's own keys included). ``config.name`` is the served name (it may
  differ from the manifest's, as with ``name=a.mar``); ``config.max_batch_size``,
  ``batch_delay_ms``, ``instances`` and ``timeout_ms`` already hold batchSize,
  maxBatchDelay, minWorkers and responseTimeout. Process-wide settings from
  config.properties (``service_envelope``, ``max_response_size``,
  ``install_py_dep_per_model``) are in ``backends.ts_envelope.settings``, and
  ``ts_envelope.wrap(handle)`` puts the envelope around a handler's entry point.

Extraction is safe: absolute names, ``..`` members, symlinks and archives that
inflate past the bound (the declared sizes, and the bytes actually written) FAIL
the model with a message; nothing is written outside its folder.
"""

from __future__ import annotations

import dataclasses
import logging
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import orjson

from ..errors import ConfigError

log = logging.getLogger("fastserve.archive")

MANIFEST = "MAR-INF/MANIFEST.json"
TAR_SUFFIXES = (".tar.gz", ".tgz")  # torch-model-archiver --archive-format tgz
FILE_SUFFIXES = (".mar", *TAR_SUFFIXES)
DEFAULT_MAX_SIZE = 32 * 1000**3  # bytes an archive may inflate to (--max-archive-size)
_SMALL_FILE = 16 * 1024 * 1024  # the manifest and model-config.yaml are read whole: cap them
MAX_MEMBERS = 100_000  # files one archive may hold (each is a file written at load)


class ArchiveError(ConfigError):
    """A model archive that cannot be served safely; the model FAILS with this message.

    ``name`` and ``version`` are set when the manifest could be read.
    """

    def __init__(self, message: str, name: str | None = None,
                 version: str | None = None) -> None:
        super().__init__(message)
        self.name, self.version = name, version


@dataclass(frozen=True)
class TsArchive:
    source: Path  # the .mar file, or the archive folder
    name: str  # served name: name= on the command line or the register call, else modelName
    version: str  # the manifest's modelVersion, as TorchServe writes it ("1.0")
    manifest: dict[str, Any]
    model_yaml: dict[str, Any] = field(default_factory=dict)  # model-config.yaml, {} if none
    size: int = 0  # bytes once extracted

    @property
    def packed(self) -> bool:
        return self.source.is_file()

    @property
    def model(self) -> dict[str, Any]:
        return self.manifest.get("model", {})

    @property
    def handler(self) -> str:
        return str(self.model.get("handler", ""))


def is_archive(path: Path) -> bool:
    """A .mar file, or a folder with MAR-INF/MANIFEST.json (extracted or no-archive)."""
    if path.name.startswith("."):
        return False
    if path.name.endswith(FILE_SUFFIXES):
        return path.is_file()
    return (path / MANIFEST).is_file()


def archive_stem(name: str) -> str:
    """"mnist" for mnist.mar, mnist.tar.gz or mnist.tgz."""
    for suffix in FILE_SUFFIXES:
        if name.endswith(suffix):
            return name[:-len(suffix)]
    return name


def find_archives(root: Path) -> list[Path]:
    try:
        return sorted(p for p in root.iterdir() if is_archive(p))
    except OSError:
        return []


def read_archive(source: Path, name: str | None = None,
                 max_size: int = DEFAULT_MAX_SIZE) -> TsArchive:
    """The archive at ``source``, checked but not extracted. Raises ArchiveError."""
    if source.is_dir():
        manifest_bytes = _read_small(source / MANIFEST, source)
        return _build(source, name, manifest_bytes,
                      lambda member: _read_small(source / member, source), 0)
    if source.name.endswith(TAR_SUFFIXES):
        from .archive_tar import open_tar  # it builds on this module

        return open_tar(source, max_size, lambda listing: _build(
            source, name, listing.read(MANIFEST), listing.read, listing.size))
    try:
        with zipfile.ZipFile(source) as zf:
            names = set(zf.namelist())
            if MANIFEST not in names:
                raise ArchiveError(f"{source.name}: no {MANIFEST} in the archive: build it with "
                                   "torch-model-archiver (0.12)")

            def reader(member: str) -> bytes:
                if member not in names:
                    raise ArchiveError(f"{source.name}: the manifest names {member}, which is "
                                       "not in the archive")
                return zf.read(member)

            archive = _build(source, name, reader(MANIFEST), reader, 0)
            try:
                size = check_members(zf, max_size, source.name)
            except ArchiveError as exc:
                raise ArchiveError(exc.message, archive.name, archive.version) from None
            return dataclasses.replace(archive, size=size)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise ArchiveError(f"{source.name} is not a valid model archive (a zip written by "
                           f"torch-model-archiver): {exc}") from None
    except OSError as exc:
        raise ArchiveError(f"{source.name} cannot be read: {exc}") from None


def check_members(zf: zipfile.ZipFile, max_size: int, label: str) -> int:
    """Refuse members that would land outside the folder, symlinks, and too many bytes.

    Returns the declared total size. (Extraction counts the bytes really written too.)
    """
    total = 0
    members = zf.infolist()
    if len(members) > MAX_MEMBERS:
        raise ArchiveError(f"{label} holds {len(members)} members, more than {MAX_MEMBERS}; "
                           "refused")
    for info in members:
        member_path(info.filename, label)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise ArchiveError(f"{label}: member {info.filename!r} is a symbolic link; "
                               "archives with links are refused")
        total = inflated(total, info.file_size, max_size, label)
    return total


def inflated(total: int, size: int, max_size: int, label: str) -> int:
    """The bytes an archive inflates to with one more member of ``size``; ArchiveError past
    ``max_size`` (zip and tar archives share the bound and its message)."""
    total += size
    if total > max_size:
        raise ArchiveError(f"{label} inflates to more than {max_size} bytes (the archive "
                           "size limit, --max-archive-size); refused")
    return total


def member_path(name: str, label: str) -> PurePosixPath:
    """The relative path a member may be written at; ArchiveError when it would escape."""
    clean = name.replace("\\", "/")
    path = PurePosixPath(clean)
    if (clean.startswith("/") or (len(clean) > 1 and clean[1] == ":")
            or any(part == ".." for part in path.parts) or "\0" in clean):
        raise ArchiveError(f"{label}: member {name!r} would be written outside the model's "
                           "folder (zip-slip); the archive is refused")
    return path


def _read_small(path: Path, folder: Path) -> bytes:
    if folder.resolve() not in path.resolve().parents:
        raise ArchiveError(f"{folder.name}: the manifest names {path.name}, which is outside "
                           "the archive's folder")
    try:
        if path.stat().st_size > _SMALL_FILE:
            raise ArchiveError(f"{path} is larger than {_SMALL_FILE} bytes")
        return path.read_bytes()
    except FileNotFoundError:
        raise ArchiveError(f"{folder.name}: {path.relative_to(folder)} is missing") from None
    except OSError as exc:
        raise ArchiveError(f"{path} cannot be read: {exc}") from None


def _build(source: Path, name: str | None, manifest_bytes: bytes, reader: Any,
           size: int) -> TsArchive:
    label = source.name
    try:
        manifest = orjson.loads(manifest_bytes)
    except orjson.JSONDecodeError as exc:
        raise ArchiveError(f"{label}: {MANIFEST} is not valid JSON: {exc}") from None
    model = manifest.get("model") if isinstance(manifest, dict) else None
    if not isinstance(model, dict):
        raise ArchiveError(f"{label}: {MANIFEST} has no \"model\" object")
    served = name or model.get("modelName")
    if not isinstance(served, str) or not served or "/" in served:
        raise ArchiveError(f"{label}: {MANIFEST} needs a modelName (a name without '/'), "
                           f"got {served!r}")
    version = str(model.get("modelVersion") or "1.0")
    if "/" in version or not version.strip():
        raise ArchiveError(f"{label}: modelVersion {version!r} cannot be used in a URL")
    if not model.get("handler"):
        raise ArchiveError(f"{label}: {MANIFEST} names no handler")
    model_yaml: dict[str, Any] = {}
    config_file = model.get("configFile")
    if config_file:
        model_yaml = _parse_yaml(reader(str(config_file)), f"{label}: {config_file}")
    return TsArchive(source, served, version, manifest, model_yaml, size)


def _parse_yaml(raw: bytes, label: str) -> dict[str, Any]:
    import yaml  # only archives with a model-config.yaml need it

    if len(raw) > _SMALL_FILE:
        raise ArchiveError(f"{label} is larger than {_SMALL_FILE} bytes")
    try:
        doc = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ArchiveError(f"{label} is not valid YAML: {exc}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ArchiveError(f"{label} must be a mapping of keys (minWorkers, batchSize, ...)")
    return doc


# requirements.txt (config.properties install_py_dep_per_model=true)

PIP_TIMEOUT = 600.0


def install_requirements(folder: Path, manifest: dict[str, Any]) -> None:
    """Install an archive's requirementsFile into its folder, as TorchServe does
    (``pip install -t <model dir> -r requirements.txt``), from the package index pip is
    configured with (pip.conf, PIP_INDEX_URL). Raises ArchiveError with pip's reason."""
    import subprocess
    import sys

    name = (manifest.get("model") or {}).get("requirementsFile")
    if not name:
        return
    requirements = folder / str(name)
    if not requirements.is_file() or folder.resolve() not in requirements.resolve().parents:
        raise ArchiveError(f"the manifest names requirementsFile {name}, which is not in the "
                           "archive")
    if (folder / ".fastserve-deps-installed").exists():
        return
    log.info("installing %s of %s (install_py_dep_per_model=true)", name, folder.name)
    cmd = [sys.executable, "-m", "pip", "install", "--no-input", "--disable-pip-version-check",
           "--no-warn-script-location", "--retries", "1", "--timeout", "30", "--target",
           str(folder), "-r", str(requirements)]
    try:
        done = subprocess.run(cmd, cwd=folder, capture_output=True, text=True,
                              timeout=PIP_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ArchiveError(f"installing {name} failed: {exc}") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise ArchiveError(f"installing {name} failed (pip exit {done.returncode}): "
                           + " | ".join(tail))
    (folder / ".fastserve-deps-installed").touch()
