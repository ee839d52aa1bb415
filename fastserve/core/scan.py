"""Reading the model sources of DIR into entries (blocking: config.toml, labels; no torch).

DIR/<model>/[config.toml, labels.json]/<version>/model.pt2|model.pt. A broken model
is FAILED with its error and never stops the others.

Hook for new kinds of model source (a .mar archive, a Triton config.pbtxt folder):
``files.model_folders`` lists the sources of DIR (the initial scan, the poller and the
management API all use it) and ``scan_model`` reads one source into a ``ModelEntry``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import orjson

from ..errors import ConfigError
from .archive import is_archive
from .entries import ModelEntry, ModelVersion, State
from .files import MODEL_LEVEL_FILES, VERSION_RE, fingerprint, source_fingerprint
from .model_config import ModelConfig, parse_model_config
from .ts_store import StoreSettings, archive_config, failed_name, read_store_archive

log = logging.getLogger("fastserve.repository")

MODEL_FILES = ("model.pt2", "model.pt")


def read_labels(folder: Path) -> dict[str, str]:
    """labels.json: {"0": "tench"}; TorchServe's index_to_name.json {"0": [id, "tench"]} too."""
    for filename in ("labels.json", "index_to_name.json"):
        path = folder / filename
        if not path.exists():
            continue
        try:
            raw = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError as exc:
            raise ConfigError(f"{filename} is not valid JSON: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{filename} cannot be read: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{filename} must be an object mapping class index to label")
        labels = {}
        for key, value in raw.items():
            if isinstance(value, list) and value:
                value = value[-1]
            if not isinstance(value, str):
                raise ConfigError(f"{filename}: label for {key!r} must be a string or a list")
            labels[str(key)] = value
        return labels
    return {}


def scan_model(folder: Path, store: StoreSettings | None = None) -> ModelEntry:
    """Read one model source of DIR (blocking: reads config.toml and labels; no torch)."""
    if is_archive(folder):
        return scan_archive(folder, store or StoreSettings())
    config: ModelConfig | None = None
    labels: dict[str, str] = {}
    error = ""
    try:
        config = parse_model_config(folder)
        labels = read_labels(folder)
    except ConfigError as exc:
        error = exc.message
    entry = ModelEntry(config.name if config else folder.name, folder, config, labels, error)
    for sub in sorted(folder.iterdir()):
        if not sub.is_dir() or sub.name.startswith((".", "_")):
            continue
        if not VERSION_RE.match(sub.name):
            log.warning("model %s: folder %s/ is not a version number (1, 2, ...); ignored",
                        entry.name, sub.name)
            continue
        entry.versions[sub.name] = ModelVersion(entry.name, sub.name, sub)
    if config is not None and config.version_policy is not None:
        # Triton's version_policy: versions outside it are not served (404)
        served = set(config.version_policy.select(entry.versions))
        entry.versions = {k: v for k, v in entry.versions.items() if k in served}
    if not entry.versions and not error:
        entry.error = (f"no version folders in {folder}: put the model in "
                       f"{folder}/1/model.pt2 (or model.pt)")
    if entry.error:
        # One line per failed version with its reason, as a load failure logs it.
        for v in entry.versions.values():
            v.state, v.error = State.FAILED, entry.error
            log.error("model %s version %s failed to load: %s", entry.name, v.version,
                      entry.error)
        if not entry.versions:
            log.error("model %s failed to load: %s", entry.name, entry.error)
    return entry


def scan_archive(source: Path, store: StoreSettings) -> ModelEntry:
    """A TorchServe archive: one model version named by its manifest (ts_store.py)."""
    try:
        archive = read_store_archive(source, store)
        entry = ModelEntry(archive.name, source, archive_config(archive, store), {},
                           archive=True)
        version: str | None = archive.version
    except ConfigError as exc:
        name = getattr(exc, "name", None) or failed_name(source, store)
        version = getattr(exc, "version", None)
        entry = ModelEntry(name, source, None, {}, exc.message, archive=True)
        log.error("model %s (%s) failed to load: %s", name, source.name, exc.message)
    if version is not None:
        entry.versions[version] = ModelVersion(entry.name, version, source)
        entry.pinned = store.default_version(entry.name)
    for v in entry.versions.values():
        if entry.error:
            v.state, v.error = State.FAILED, entry.error
    return entry


def merge_archive_versions(current: ModelEntry | None, entry: ModelEntry) -> bool:
    """Two archives of one model name with different versions (TorchServe's way of
    versioning) serve as one model; each version keeps its archive's settings."""
    if (current is None or not (current.archive and entry.archive)
            or set(current.versions) & set(entry.versions) or entry.config is None):
        return False
    for version in entry.versions.values():
        version.config = entry.config
        current.versions[version.version] = version
    current.pinned = current.pinned or entry.pinned
    return True


def can_add_version(current: ModelEntry, fresh: ModelEntry) -> bool:
    """``fresh`` is an archive adding a new, loadable version to the archive model
    ``current`` (TorchServe registers versions of a model from separate archives)."""
    return (current.archive and fresh.archive and fresh.config is not None
            and len(fresh.versions) == 1 and not set(fresh.versions) & set(current.versions))


def scan_fresh(folder: Path, store: StoreSettings | None = None) -> ModelEntry:
    """``scan_model`` plus the fingerprints of what it read (blocking: off the loop)."""
    entry = scan_model(folder, store)
    if entry.archive:  # the archive is one source: its file (or folder) as a whole
        entry.files = source_fingerprint(folder)
        for version in entry.versions.values():
            version.files = source_fingerprint(version.folder)
        return entry
    entry.files = fingerprint(folder, MODEL_LEVEL_FILES)
    for version in entry.versions.values():
        version.files = fingerprint(version.folder)
    return entry
