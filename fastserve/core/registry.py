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
from .files import (
    MODEL_LEVEL_FILES,
    VERSION_RE,
    Fingerprint,
    fingerprint,
    model_folders,
    model_name,
)
from .model_config import ModelConfig, parse_model_config
from .stats import ModelStats

if TYPE_CHECKING:
    from ..backends._base import Backend
    from .scheduler import DynamicBatcher

log = logging.getLogger("fastserve.repository")

MODEL_FILES = ("model.pt2", "model.pt")


class State(enum.Enum):
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

    def sorted_versions(self) -> list[ModelVersion]:
        return [self.versions[v] for v in sorted(self.versions, key=int)]

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


def scan_model(folder: Path) -> ModelEntry:
    """Read one model source of DIR (blocking: reads config.toml and labels; no torch)."""
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
    if not entry.versions and not error:
        entry.error = (f"no version folders in {folder}: put the model in "
                       f"{folder}/1/model.pt2 (or model.pt)")
    if entry.error:
        for v in entry.versions.values():
            v.state, v.error = State.FAILED, entry.error
    return entry


def scan_fresh(folder: Path) -> ModelEntry:
    """``scan_model`` plus the fingerprints of what it read (blocking: off the loop)."""
    entry = scan_model(folder)
    entry.files = fingerprint(folder, MODEL_LEVEL_FILES)
    for version in entry.versions.values():
        version.files = fingerprint(version.folder)
    return entry


class Registry:
    """Every model of DIR and its versions by name; lookups for the event loop."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.models: dict[str, ModelEntry] = {}

    def scan(self) -> None:
        """The initial scan: every model source of DIR (a duplicate name is skipped)."""
        for folder in model_folders(self.root):
            entry = scan_model(folder)
            if entry.name in self.models:
                log.warning("model folder %s: name %r is already used by %s; ignored",
                            folder, entry.name, self.models[entry.name].folder)
                continue
            self.models[entry.name] = entry

    def available(self) -> dict[str, Path]:
        """Model name -> folder, for every model folder of DIR (blocking: reads config.toml)."""
        return {model_name(folder): folder for folder in model_folders(self.root)}

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
