"""What the model repository holds: model sources in DIR, read into entries and versions.

DIR/<model>/[config.toml, labels.json]/<version>/model.pt2|model.pt. A broken model
is FAILED with its error and never stops the others.

Hook for new kinds of model source (a .mar archive, a Triton config.pbtxt folder):
``files.model_folders`` lists the sources of DIR (the initial scan, the poller and the
management API all use it) and ``scan_model`` reads one source into a ``ModelEntry``.
Nothing here loads a model or starts a thread (that is ``lifecycle``).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import ConfigError, ModelNotFoundError, ModelNotReadyError, VersionNotFoundError
from .archive import find_archives, is_archive
from .files import (
    MODEL_LEVEL_FILES,
    VERSION_RE,
    Fingerprint,
    fingerprint,
    model_folders,
    model_name,
    version_key,
)
from .model_config import ModelConfig, parse_model_config
from .stats import ModelStats
from .ts_store import (
    StoreSettings,
    archive_config,
    failed_name,
    read_store_archive,
    store_names,
)

if TYPE_CHECKING:
    from ..backends._base import Backend
    from .scheduler import DynamicBatcher

log = logging.getLogger("fastserve.repository")

MODEL_FILES = ("model.pt2", "model.pt")


class State(str, enum.Enum):
    """A version's state; equal to its value, the plain string the doors hand out."""

    LOADING = "LOADING"
    READY = "READY"
    FAILED = "FAILED"
    UNLOADING = "UNLOADING"


@dataclass
class ModelVersion:
    name: str
    version: str
    folder: Path
    state: State = State.LOADING
    error: str = ""
    backend: Backend | None = None
    batcher: DynamicBatcher | None = None
    stats: ModelStats = field(default_factory=ModelStats)
    # Runtime changes: the files it was loaded from, and when it became READY.
    files: Fingerprint = ()
    loaded_at: float = 0.0
    # Its own settings (a TorchServe archive's model-config.yaml); None: the model's.
    config: ModelConfig | None = None

    @property
    def ready(self) -> bool:
        return self.state is State.READY


@dataclass
class ModelEntry:
    name: str
    folder: Path
    config: ModelConfig | None
    labels: dict[str, str]
    error: str = ""
    versions: dict[str, ModelVersion] = field(default_factory=dict)
    pinned: str | None = None
    files: Fingerprint = ()  # config.toml, labels and handler.py when last read
    archive: bool = False  # a TorchServe archive (folder: the .mar or its folder)

    def sorted_versions(self) -> list[ModelVersion]:
        return [self.versions[v] for v in sorted(self.versions, key=version_key)]

    @property
    def default(self) -> ModelVersion | None:
        """The pinned version, else the highest READY one, else the highest."""
        if self.pinned in self.versions:
            return self.versions[self.pinned]
        if len(self.versions) == 1:  # the common case, on every request: no sorting
            return next(iter(self.versions.values()))
        versions = self.sorted_versions()
        ready = [v for v in versions if v.ready]
        if ready:
            return ready[-1]
        return versions[-1] if versions else None

    @property
    def servable(self) -> bool:
        """Some version is loaded or on its way (not every one FAILED)."""
        return any(v.state is not State.FAILED for v in self.versions.values())


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
    entry.files = fingerprint(folder, MODEL_LEVEL_FILES)
    for version in entry.versions.values():
        version.files = fingerprint(version.folder)
    return entry


class Registry:
    """Every model of DIR and its versions by name; lookups for the event loop."""

    def __init__(self, root: Path, store: StoreSettings | None = None) -> None:
        self.root = root
        self.store = store or StoreSettings()  # TorchServe archives: selection, defaults
        self.models: dict[str, ModelEntry] = {}

    def scan(self) -> None:
        """The initial scan: every model source of DIR (a duplicate name is skipped)."""
        sources = sorted(model_folders(self.root) + find_archives(self.root))
        for folder in (s for s in sources if self.store.selects(s)):
            entry = scan_model(folder, self.store)
            if merge_archive_versions(self.models.get(entry.name), entry):
                continue
            if entry.name in self.models:
                log.warning("model folder %s: name %r is already used by %s; ignored",
                            folder, entry.name, self.models[entry.name].folder)
                continue
            self.models[entry.name] = entry

    def available(self) -> dict[str, Path]:
        """Model name -> folder, for every model folder of DIR (blocking: reads config.toml)."""
        found = {model_name(folder): folder for folder in model_folders(self.root)}
        return {**store_names(self.root, self.store), **found}

    def find_folder(self, name: str) -> Path:
        """The folder of DIR that serves model ``name`` (blocking). Raises ModelNotFoundError."""
        entry = self.models.get(name)
        if entry is not None:
            return entry.folder
        folder = self.available().get(name)
        if folder is None:
            raise ModelNotFoundError(f"no model '{name}' in the model repository {self.root}")
        return folder

    # Lookup (event loop)

    def entry(self, name: str) -> ModelEntry:
        entry = self.models.get(name)
        if entry is None:
            raise ModelNotFoundError(f"model '{name}' not found")
        return entry

    def version(self, name: str, version: str | None) -> ModelVersion:
        """The named version (default: the default version), in whatever state it is."""
        entry = self.entry(name)
        if version is None:
            found = entry.default
            if found is None:
                raise ModelNotReadyError(f"model '{name}' failed to load: {entry.error}")
            return found
        found = entry.versions.get(version)
        if found is None:
            raise VersionNotFoundError(f"model '{name}' has no version '{version}'")
        return found

    def ready_version(self, name: str, version: str | None) -> ModelVersion:
        """The version to run a request on; 503 unless it is READY."""
        found = self.version(name, version)
        if found.state is not State.READY:
            if found.state is State.FAILED:
                raise ModelNotReadyError(
                    f"model '{name}' version {found.version} failed to load: {found.error}")
            raise ModelNotReadyError(
                f"model '{name}' version {found.version} is {found.state.value.lower()}")
        return found

    def all_versions(self) -> list[ModelVersion]:
        return [v for e in self.models.values() for v in e.versions.values()]

    def config_of(self, name: str) -> ModelConfig:
        entry = self.entry(name)
        if entry.config is None:
            raise ModelNotReadyError(f"model '{name}' failed to load: {entry.error}")
        return entry.config

    def accepts(self, version: ModelVersion) -> bool:
        """True while ``version`` is registered and not being unloaded."""
        entry = self.models.get(version.name)
        return (entry is not None and entry.versions.get(version.version) is version
                and version.state is not State.UNLOADING)

    def __contains__(self, name: Any) -> bool:
        return name in self.models
