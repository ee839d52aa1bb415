"""The model repository: scan DIR, load every version off the event loop, track state.

DIR/<model>/[config.toml, labels.json]/<version>/model.pt2|model.pt. A broken model
is FAILED with its error and never stops the others.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..backends._base import Backend, BackendLoader
from ..errors import (
    AlreadyExistsError,
    ConfigError,
    FastServeError,
    InvalidInputError,
    ModelNotFoundError,
    ModelNotReadyError,
    VersionNotFoundError,
)
from .files import (
    MODEL_LEVEL_FILES,
    VERSION_RE,
    Fingerprint,
    FolderFiles,
    fingerprint,
    model_folders,
    model_name,
    snapshot,
)
from .model_config import ModelConfig, parse_model_config
from .scheduler import DynamicBatcher
from .stats import ModelStats

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
        # Runtime changes (management API, --poll-interval)
        self.unloaded: set[str] = set()  # models unloaded through the API: the poller skips them
        self.unloaded_versions: set[tuple[str, str]] = set()
        self.overrides: dict[str, dict[str, Any]] = {}  # config keys set through the API
        self.drain_timeout = 30.0  # unloading a version: longest wait for its queue
        self._locks: dict[str, asyncio.Lock] = {}
        self._previous: dict[Path, FolderFiles] | None = None  # the last poll's snapshot
        self._rejected: dict[Path, FolderFiles] = {}  # new folders the poller could not add

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
        # NOTE: the work list is fixed here, on the loop: versions added later by the
        # management API or the poller are loaded by them, never twice.
        jobs = [(e, v) for e in self.models.values() for v in e.sorted_versions()
                if v.state is State.LOADING]
        t = threading.Thread(target=self._load_all, args=(jobs,), name="fastserve-loader",
                             daemon=True)
        t.start()
        return t

    def _load_all(self, jobs: list[tuple[ModelEntry, ModelVersion]] | None = None) -> None:
        if jobs is None:
            jobs = [(e, v) for e in list(self.models.values()) for v in e.sorted_versions()]
        try:
            for entry, version in jobs:
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
            if not self._accepts(version):
                return  # unloaded while it loaded
            version.state, version.error = State.FAILED, error
            self._changed(version)

        assert self.loop is not None
        self.loop.call_soon_threadsafe(apply)

    def _set_ready(self, entry: ModelEntry, version: ModelVersion, backend: Backend) -> None:
        assert entry.config is not None and self.loop is not None
        if not self._accepts(version):
            backend.close()  # unloaded while it loaded
            return
        version.loaded_at = time.time()
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

    # Runtime changes (event loop): the management API and --poll-interval.
    # One lock per model name: a load, unload or poll of a model waits for the one before.

    def _lock(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    def _accepts(self, version: ModelVersion) -> bool:
        """True while ``version`` is registered and not being unloaded."""
        entry = self.models.get(version.name)
        return (entry is not None and entry.versions.get(version.version) is version
                and version.state is not State.UNLOADING)

    @staticmethod
    def _servable(entry: ModelEntry) -> bool:
        return any(v.state is not State.FAILED for v in entry.versions.values())

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

    async def load_model(self, folder: Path, overrides: dict[str, Any] | None = None,
                         *, reload: bool = False) -> ModelEntry:
        """Register the model in ``folder`` (a folder of DIR) and load its versions.

        Returns once every version is READY or FAILED (look at their states). With
        ``reload``, a model already loaded is read again: new versions load, removed
        ones unload, and the others are loaded, warmed up and swapped in while the old
        ones drain. A model unloaded through the API counts as loaded again.

        Args:
            folder: the model folder (``files.resolve_model_folder`` checks a user's path).
            overrides: ModelConfig keys to set (max_batch_size, batch_delay_ms, instances).
            reload: load a loaded model again rather than refuse.
        Raises:
            AlreadyExistsError: loaded already (without ``reload``), or the name is taken
                by another folder (409).
            InvalidInputError: overrides that do not fit the model, or a reload whose
                config.toml is broken; the loaded versions keep serving (400).
        """
        fresh = await asyncio.to_thread(self._scan_fresh, folder)
        name = fresh.name
        async with self._lock(name):
            current = self.models.get(name)
            if current is not None and current.folder != folder:
                raise AlreadyExistsError(f"model '{name}' is already served from "
                                         f"{current.folder}; folder {folder} has the same name")
            if current is not None and not reload and self._servable(current):
                raise AlreadyExistsError(
                    f"model '{name}' is already loaded; unload it first (DELETE /models/{name}) "
                    f"or reload it (POST /v2/repository/models/{name}/load)")
            if overrides:
                merged = {**self.overrides.get(name, {}), **overrides}
                if fresh.config is not None:
                    apply_overrides(fresh.config, merged)  # refuse before anything changes
                self.overrides[name] = merged
            self.unloaded.discard(name)
            self.unloaded_versions = {k for k in self.unloaded_versions if k[0] != name}
            self._configure(fresh)
            if current is None:
                self.models[name] = fresh
                for version in fresh.versions.values():
                    self._changed(version)
                log.info("model %s: loading %d version(s) from %s", name, len(fresh.versions),
                         folder)
                await asyncio.gather(*(self._load_one(fresh, v) for v in fresh.versions.values()
                                       if v.state is State.LOADING))
                return fresh
            await self._reload(current, fresh)
            return current

    async def unload_model(self, name: str, version: str | None = None, *,
                           by_api: bool = True) -> list[ModelVersion]:
        """Unload a model (every version) or one version, and return what was unloaded.

        Requests stop being routed to it at once (the default moves to another READY
        version), its queued and running requests finish, then it is closed. Through
        the API it stays unloaded -- the poller leaves it alone -- until loaded again;
        unloading the last version of a model unloads the model.

        Raises:
            ModelNotFoundError, VersionNotFoundError: unknown name or version (404).
        """
        self.entry(name)
        async with self._lock(name):
            entry = self.entry(name)
            if version is None:
                targets = list(entry.versions.values())
            else:
                targets = [self.version(name, version)]
            remove_model = version is None or (by_api and len(targets) == len(entry.versions))
            if by_api and remove_model:
                self.unloaded.add(name)
            elif by_api:
                self.unloaded_versions.add((name, targets[0].version))
            await self._unload(entry, targets, remove_model)
            return targets

    def set_default(self, name: str, version: str) -> ModelVersion:
        """Pin the version that requests without one run on, until that version is removed.

        Raises:
            ModelNotFoundError, VersionNotFoundError: unknown name or version (404).
            InvalidInputError: the version FAILED or is unloading (400).
        """
        found = self.version(name, version)
        if found.state in (State.FAILED, State.UNLOADING):
            why = f": {found.error}" if found.error else ""
            raise InvalidInputError(
                f"model '{name}' version {version} is {found.state.value.lower()}{why}; only a "
                "loaded or loading version can be the default")
        self.entry(name).pinned = found.version
        log.info("model %s: version %s is the default (pinned)", name, found.version)
        return found

    async def set_instances(self, name: str, instances: int,
                            version: str | None = None) -> list[str]:
        """Run ``instances`` copies of a model's loaded versions (or of one version).

        Each is loaded again with that many instances, warmed up and swapped in; the
        old one drains. Returns the load errors (a version that failed keeps serving).

        Raises:
            InvalidInputError: instances < 1 (400).
            ModelNotFoundError, VersionNotFoundError: unknown name or version (404).
            ModelNotReadyError: the model failed or is still loading (503).
        """
        if instances < 1:
            raise InvalidInputError(f"instances must be >= 1, got {instances} (to stop serving "
                                    "a model, unload it)")
        self.entry(name)
        async with self._lock(name):
            entry = self.entry(name)
            if entry.config is None:
                raise ModelNotReadyError(f"model '{name}' failed to load: {entry.error}")
            versions = list(entry.versions.values()) if version is None else [
                self.version(name, version)]
            busy = [v.version for v in versions if v.state is State.LOADING]
            if busy:
                raise ModelNotReadyError(f"model '{name}' version(s) {', '.join(busy)} are still "
                                         "loading; retry when they are ready")
            config = dataclasses.replace(entry.config, instances=instances)
            if version is None:
                self.overrides.setdefault(name, {})["instances"] = instances
                entry.config = config
            elif versions[0].state is not State.READY:
                raise ModelNotReadyError(f"model '{name}' version {version} is "
                                         f"{versions[0].state.value.lower()}")
            targets = [v for v in versions if v.state is State.READY and v.batcher is not None
                       and v.batcher.instances != instances]
            errors = await asyncio.gather(*(self._load_one(entry, v, config) for v in targets))
            return [e for e in errors if e]

    async def rescan(self) -> None:
        """One poll of DIR (``--poll-interval``), as TF Serving's file-system polling.

        New model and version folders are loaded once their files held still since the
        previous poll (a copy in progress never loads half-written); a new version
        becomes the default when READY. Removed ones are unloaded after draining. A
        FAILED version (or a model whose config.toml was broken) is loaded again when
        its files changed. Models and versions unloaded through the API are left alone.
        The first call only records what is there.
        """
        snap = await asyncio.to_thread(snapshot, self.root)
        previous, self._previous = self._previous, snap
        jobs = []
        known = set()
        for entry in list(self.models.values()):
            known.add(entry.folder)
            if self._lock(entry.name).locked():
                continue  # a management call is changing it; look again next poll
            now = snap.get(entry.folder)
            if now is None:
                jobs.append(self._poll_removed(entry))
            else:
                before = previous.get(entry.folder) if previous is not None else None
                jobs.append(self._poll_model(entry, now, before))
        if previous is not None:
            for folder, now in snap.items():
                if (folder in known or previous.get(folder) != now or now.name in self.unloaded
                        or now.name in self.models or self._rejected.get(folder) == now):
                    continue
                jobs.append(self._poll_new(folder, now))
        for result in await asyncio.gather(*jobs, return_exceptions=True):
            if isinstance(result, FastServeError):
                log.error("repository poll: %s", result.message)
            elif isinstance(result, Exception):
                log.error("repository poll failed", exc_info=result)

    # Runtime changes: helpers (called with the model's lock held)

    def _scan_fresh(self, folder: Path) -> ModelEntry:
        """_scan_model plus the fingerprints of what it read (blocking: off the loop)."""
        entry = self._scan_model(folder)
        entry.files = fingerprint(folder, MODEL_LEVEL_FILES)
        for version in entry.versions.values():
            version.files = fingerprint(version.folder)
        return entry

    def _configure(self, entry: ModelEntry) -> None:
        overrides = self.overrides.get(entry.name)
        if overrides and entry.config is not None:
            try:
                entry.config = apply_overrides(entry.config, overrides)
            except InvalidInputError as exc:  # config.toml changed under an override
                log.warning("model %s: management settings dropped: %s", entry.name,
                            exc.message)
                del self.overrides[entry.name]

    async def _reload(self, entry: ModelEntry, fresh: ModelEntry) -> None:
        """Bring a registered model in line with its folder as scanned in ``fresh``."""
        if fresh.config is None and self._servable(entry):
            raise InvalidInputError(f"model '{entry.name}' was not reloaded (its loaded versions "
                                    f"keep serving): {fresh.error}")
        entry.config, entry.labels, entry.error = fresh.config, fresh.labels, fresh.error
        entry.files = fresh.files
        gone = [v for key, v in entry.versions.items() if key not in fresh.versions]
        if gone:
            await self._unload(entry, gone, remove_model=False)
        jobs = []
        for key, new in fresh.versions.items():
            old = entry.versions.get(key)
            if old is None:
                entry.versions[key] = old = new
            elif old.state is State.LOADING:
                continue  # its load is under way (the initial one): it reads the files now
            else:
                old.files = new.files
                if new.state is State.FAILED:
                    old.state, old.error = State.FAILED, new.error
                elif old.state is State.FAILED:
                    old.state, old.error = State.LOADING, ""
            self._changed(old)
            if old.state is not State.FAILED:
                jobs.append(old)
        log.info("model %s: reloading %d version(s)", entry.name, len(jobs))
        await asyncio.gather(*(self._load_one(entry, v) for v in jobs))

    async def _unload(self, entry: ModelEntry, targets: list[ModelVersion],
                      remove_model: bool) -> None:
        for version in targets:
            version.state = State.UNLOADING
            if entry.pinned == version.version:
                entry.pinned = None  # a pin lasts until its version is removed
            self._changed(version)
        log.info("model %s: unloading version(s) %s (draining)", entry.name,
                 ", ".join(v.version for v in targets) or "-")
        await asyncio.gather(*(self._retire(v.batcher, v.backend) for v in targets))
        for version in targets:
            if entry.versions.get(version.version) is version:
                del entry.versions[version.version]
            # NOTE: backend and batcher stay set: a request that ran on it may still be
            # encoding its answer with the backend's output specs.
            self._changed(version)
        if remove_model:
            if self.models.get(entry.name) is entry:
                del self.models[entry.name]
            log.info("model %s unloaded", entry.name)
        elif not entry.versions and not entry.error:
            entry.error = f"no versions left in {entry.folder}: every version was unloaded"

    async def _retire(self, batcher: DynamicBatcher | None, backend: Backend | None) -> None:
        """Let a batcher's queued and running requests finish, then close it and its model."""
        if batcher is not None:
            try:
                await asyncio.wait_for(batcher.drain(), self.drain_timeout)
            except TimeoutError:
                log.warning("model %s version %s: still busy after %g s; failing what is queued",
                            batcher.name, batcher.version, self.drain_timeout)
                batcher.fail_pending(ModelNotReadyError(
                    f"model '{batcher.name}' version {batcher.version} was unloaded before the "
                    "request ran"))
            batcher.close()
        if backend is not None:
            backend.close()

    async def _load_one(self, entry: ModelEntry, version: ModelVersion,
                        config: ModelConfig | None = None) -> str | None:
        """Load a version off the loop, warm it up, then swap it in (a loaded one drains).

        Returns the load error, or None. A failed reload leaves a READY version serving.
        """
        config = config or entry.config
        if config is None:
            return entry.error
        assert self.loop is not None
        try:
            backend = await asyncio.to_thread(self._build, version.folder, config, entry.labels)
        except FastServeError as exc:
            return self._load_failed(version, exc.message)
        except Exception as exc:
            return self._load_failed(version, f"{type(exc).__name__}: {exc}")
        if not self._accepts(version):
            backend.close()  # unloaded while it loaded
            return None
        old_batcher, old_backend = version.batcher, version.backend
        batcher = DynamicBatcher(entry.name, version.version, backend, config, self.loop,
                                 stats=version.stats)
        batcher.start()
        version.backend, version.batcher = backend, batcher
        version.state, version.error, version.loaded_at = State.READY, "", time.time()
        log.info("model %s version %s %s (%s on %s, %d instance(s))", entry.name,
                 version.version, "reloaded" if old_batcher else "ready", backend.platform,
                 backend.device, config.instances)
        self._changed(version)
        await self._retire(old_batcher, old_backend)
        return None

    def _build(self, folder: Path, config: ModelConfig, labels: dict[str, str]) -> Backend:
        backend = self.loader(folder, config, labels)
        if config.warmup:
            try:
                backend.warmup()
            except BaseException:
                backend.close()
                raise
        return backend

    def _load_failed(self, version: ModelVersion, error: str) -> str:
        if not self._accepts(version):
            return error
        if version.state is State.READY:
            log.error("model %s version %s: reload failed, the loaded one keeps serving: %s",
                      version.name, version.version, error)
        else:
            log.error("model %s version %s failed to load: %s", version.name, version.version,
                      error)
            version.state, version.error = State.FAILED, error
            self._changed(version)
        return error

    async def _poll_removed(self, entry: ModelEntry) -> None:
        async with self._lock(entry.name):
            if self.models.get(entry.name) is entry:
                log.info("model %s: folder %s was removed", entry.name, entry.folder)
                await self._unload(entry, list(entry.versions.values()), remove_model=True)

    async def _poll_model(self, entry: ModelEntry, now: FolderFiles,
                          before: FolderFiles | None) -> None:
        async with self._lock(entry.name):
            if self.models.get(entry.name) is not entry:
                return
            # What the initial scan (or a management call) read, if not recorded yet.
            entry.files = entry.files or now.files
            for key, version in entry.versions.items():
                version.files = version.files or now.versions.get(key, ())
            if before is None:
                return
            if entry.config is None:
                # Broken config.toml: read the model again once its files changed and settled.
                if now.files != entry.files and now == before:
                    fresh = await asyncio.to_thread(self._scan_fresh, entry.folder)
                    if fresh.name != entry.name:  # renamed: the next poll adds it as new
                        await self._unload(entry, list(entry.versions.values()), True)
                        return
                    for key in [k for k in fresh.versions if (entry.name, k) in
                                self.unloaded_versions]:
                        del fresh.versions[key]
                    self._configure(fresh)
                    await self._reload(entry, fresh)
                return
            gone = [v for key, v in entry.versions.items() if key not in now.versions]
            if gone:
                await self._unload(entry, gone, remove_model=False)
            jobs = []
            for key, files in now.versions.items():
                version = entry.versions.get(key)
                if before.versions.get(key) != files:
                    continue  # still being written
                if version is None and (entry.name, key) not in self.unloaded_versions:
                    version = ModelVersion(entry.name, key, entry.folder / key, files=files)
                    entry.versions[key] = version
                    entry.error = ""
                    log.info("model %s: new version %s", entry.name, key)
                elif version is not None and version.state is State.FAILED \
                        and files != version.files:
                    version.files, version.state, version.error = files, State.LOADING, ""
                    log.info("model %s: version %s changed; loading it again", entry.name, key)
                else:
                    continue
                self._changed(version)
                jobs.append(version)
            await asyncio.gather(*(self._load_one(entry, v) for v in jobs))

    async def _poll_new(self, folder: Path, now: FolderFiles) -> None:
        try:
            await self.load_model(folder)
        except FastServeError as exc:
            self._rejected[folder] = now
            log.warning("model folder %s not loaded: %s", folder, exc.message)


def apply_overrides(config: ModelConfig, overrides: dict[str, Any]) -> ModelConfig:
    """config.toml's values with the management API's (TorchServe's batch_size, ...) on top.

    Raises:
        InvalidInputError: a value the model cannot take (400).
    """
    changes = dict(overrides)
    batch = changes.get("max_batch_size")
    if batch is not None:
        if batch < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {batch}")
        if not config.batched:
            if batch > 1:
                raise InvalidInputError(
                    f"model '{config.name}' takes no batch dimension (max_batch_size = 0 in its "
                    f"config.toml), so batch_size {batch} cannot apply; set max_batch_size in "
                    "config.toml and give every input and output shape a leading -1")
            del changes["max_batch_size"]  # batch_size 1: one request at a time, as it is
    if changes.get("batch_delay_ms", 0.0) < 0:
        raise InvalidInputError(f"max_batch_delay must be >= 0, got {changes['batch_delay_ms']}")
    if changes.get("instances", 1) < 1:
        raise InvalidInputError(f"initial_workers must be >= 1, got {changes['instances']}")
    return dataclasses.replace(config, **changes)
