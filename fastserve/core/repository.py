"""The model repository: scan DIR, load every version off the event loop, track state.

DIR/<model>/[config.toml, labels.json]/<version>/model.pt2|model.pt. A broken model
is FAILED with its error and never stops the others.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..backends._base import Backend, BackendLoader
from ..errors import (
    ConfigError,
    FastServeError,
    ModelNotFoundError,
    ModelNotReadyError,
    VersionNotFoundError,
)
from .model_config import ModelConfig, parse_model_config
from .scheduler import DynamicBatcher
from .stats import ModelStats

log = logging.getLogger("fastserve.repository")

VERSION_RE = re.compile(r"[1-9][0-9]*\Z")
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

    def sorted_versions(self) -> list[ModelVersion]:
        return [self.versions[v] for v in sorted(self.versions, key=int)]

    @property
    def default(self) -> ModelVersion | None:
        """The pinned version, else the highest READY one, else the highest."""
        if self.pinned in self.versions:
            return self.versions[self.pinned]
        versions = self.sorted_versions()
        ready = [v for v in versions if v.ready]
        if ready:
            return ready[-1]
        return versions[-1] if versions else None


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


class ModelRepository:
    """Every model of DIR and its versions; the only owner of model state."""

    def __init__(self, root: Path, loader: BackendLoader) -> None:
        self.root = root
        self.loader = loader
        self.models: dict[str, ModelEntry] = {}
        self.loading = True
        self.loop: asyncio.AbstractEventLoop | None = None
        # Called on the loop after every state change (metrics).
        self.on_change: Callable[[ModelVersion], None] | None = None

    # Scanning (cheap: no torch)

    def scan(self) -> None:
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
            if folder.name.startswith("."):
                continue
            entry = self._scan_model(folder)
            if entry.name in self.models:
                log.warning("model folder %s: name %r is already used by %s; ignored",
                            folder, entry.name, self.models[entry.name].folder)
                continue
            self.models[entry.name] = entry

    def _scan_model(self, folder: Path) -> ModelEntry:
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

    # Loading (a background thread; state changes on the loop)

    def start_loading(self, loop: asyncio.AbstractEventLoop) -> threading.Thread:
        self.loop = loop
        t = threading.Thread(target=self._load_all, name="fastserve-loader", daemon=True)
        t.start()
        return t

    def _load_all(self) -> None:
        try:
            for entry in list(self.models.values()):
                for version in entry.sorted_versions():
                    if version.state is State.LOADING:
                        self._load_version(entry, version)
        finally:
            assert self.loop is not None
            self.loop.call_soon_threadsafe(self._loaded)

    def _loaded(self) -> None:
        self.loading = False
        failed = [f"{v.name}/{v.version}" for e in self.models.values()
                  for v in e.versions.values() if v.state is State.FAILED]
        log.info("models loaded: %d ready, %d failed%s",
                 sum(v.ready for e in self.models.values() for v in e.versions.values()),
                 len(failed), f" ({', '.join(failed)})" if failed else "")

    def _load_version(self, entry: ModelEntry, version: ModelVersion) -> None:
        assert entry.config is not None and self.loop is not None
        try:
            backend = self.loader(version.folder, entry.config, entry.labels)
            if entry.config.warmup:
                backend.warmup()
        except FastServeError as exc:
            self._set_failed(version, exc.message)
            return
        except Exception as exc:
            self._set_failed(version, f"{type(exc).__name__}: {exc}")
            return
        self.loop.call_soon_threadsafe(self._set_ready, entry, version, backend)

    def _set_failed(self, version: ModelVersion, error: str) -> None:
        log.error("model %s version %s failed to load: %s", version.name, version.version, error)

        def apply() -> None:
            version.state, version.error = State.FAILED, error
            self._changed(version)

        assert self.loop is not None
        self.loop.call_soon_threadsafe(apply)

    def _set_ready(self, entry: ModelEntry, version: ModelVersion, backend: Backend) -> None:
        assert entry.config is not None and self.loop is not None
        batcher = DynamicBatcher(entry.name, version.version, backend, entry.config, self.loop,
                                 stats=version.stats)
        batcher.start()
        version.backend, version.batcher = backend, batcher
        version.state = State.READY
        log.info("model %s version %s ready (%s on %s)", entry.name, version.version,
                 backend.platform, backend.device)
        self._changed(version)

    def _changed(self, version: ModelVersion) -> None:
        if self.on_change is not None:
            self.on_change(version)

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

    def __contains__(self, name: Any) -> bool:
        return name in self.models
