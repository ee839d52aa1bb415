"""The model repository: what DIR holds, loaded and kept in line with it at run time.

Three parts, one reason to change each: ``registry`` (what exists: model sources read
into entries by ``scan``, lookups), ``lifecycle`` (the load thread, states, batchers, unload and
retire) and ``reconcile`` (how a registered model follows its folder, for the
management API and the poller alike). ``ModelRepository`` puts them together and runs
the management operations, one model at a time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..backends._base import BackendLoader
from ..errors import AlreadyExistsError, InvalidInputError, ModelNotReadyError
from .entries import ModelEntry, ModelVersion, State
from .lifecycle import Lifecycle
from .reconcile import apply_overrides, reconcile
from .registry import Registry
from .scan import can_add_version, read_labels, scan_fresh
from .ts_store import StoreSettings

# Names callers and tests import from here, though they live in entries, reconcile and scan.
__all__ = ["ModelEntry", "ModelRepository", "ModelVersion", "State", "apply_overrides",
           "read_labels"]

log = logging.getLogger("fastserve.repository")


class ModelRepository(Registry):
    """Every model of DIR and its versions; the only owner of model state."""

    def __init__(self, root: Path, loader: BackendLoader,
                 store: StoreSettings | None = None) -> None:
        super().__init__(root, store)
        self.lifecycle = Lifecycle(self, loader)
        # Runtime changes (management API, --poll-interval)
        self.unloaded: set[str] = set()  # models unloaded through the API: the poller skips them
        self.unloaded_versions: set[tuple[str, str]] = set()
        self.overrides: dict[str, dict[str, Any]] = {}  # config keys set through the API
        self._locks: dict[str, asyncio.Lock] = {}

    # The lifecycle's state and start-up, under the names the doors and the tests use

    @property
    def loading(self) -> bool:
        """The start-up load thread has not finished."""
        return self.lifecycle.loading

    @property
    def on_change(self) -> Callable[[ModelVersion], None] | None:
        return self.lifecycle.on_change

    @on_change.setter
    def on_change(self, callback: Callable[[ModelVersion], None] | None) -> None:
        self.lifecycle.on_change = callback

    def start_loading(self, loop: asyncio.AbstractEventLoop) -> threading.Thread:
        """Load every version the initial scan found, in a background thread."""
        return self.lifecycle.start_loading(loop)

    # Runtime changes (event loop): the management API and --poll-interval.
    # One lock per model name: a load, unload or poll of a model waits for the one before.

    def lock(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

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
        fresh = await asyncio.to_thread(scan_fresh, folder, self.store)
        name = fresh.name
        async with self.lock(name):
            current = self.models.get(name)
            if current is not None and current.folder != folder and can_add_version(current,
                                                                                     fresh):
                return await self._add_archive_version(current, fresh, overrides)
            if current is not None and current.folder != folder:
                raise AlreadyExistsError(f"model '{name}' is already served from "
                                         f"{current.folder}; folder {folder} has the same name")
            if current is not None and not reload and current.servable:
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
            self.configure(fresh)
            if current is None:
                self.models[name] = fresh
                for version in fresh.versions.values():
                    self.lifecycle.changed(version)
                log.info("model %s: loading %d version(s) from %s", name, len(fresh.versions),
                         folder)
                await asyncio.gather(*(self.lifecycle.load_one(fresh, v)
                                     for v in fresh.versions.values() if v.state is State.LOADING))
                return fresh
            await self.reload(current, fresh)
            return current

    async def _add_archive_version(self, entry: ModelEntry, fresh: ModelEntry,
                                   overrides: dict[str, Any] | None) -> ModelEntry:
        """Another archive of a served model, with a version of its own (TorchServe's way
        to add a version): it loads beside the others under its own settings."""
        (version,) = fresh.versions.values()
        config = fresh.config
        if overrides and config is not None:
            config = apply_overrides(config, overrides)
        self.unloaded_versions.discard((entry.name, version.version))
        version.config = config
        entry.versions[version.version] = version
        self.lifecycle.changed(version)
        log.info("model %s: loading version %s from %s", entry.name, version.version,
                 fresh.folder)
        await self.lifecycle.load_one(entry, version, config)
        return entry

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
        async with self.lock(name):
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
            await self.lifecycle.unload(entry, targets, remove_model)
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
        async with self.lock(name):
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
            for v in targets:  # a version with settings of its own (an archive's) keeps them
                if v.config is not None:
                    v.config = dataclasses.replace(v.config, instances=instances)
            errors = await asyncio.gather(*(self.lifecycle.load_one(entry, v, v.config or config)
                                            for v in targets))
            return [e for e in errors if e]

    # Helpers (called with the model's lock held)

    def configure(self, entry: ModelEntry) -> None:
        """Apply the management API's settings to a model read again."""
        overrides = self.overrides.get(entry.name)
        if overrides and entry.config is not None:
            try:
                entry.config = apply_overrides(entry.config, overrides)
            except InvalidInputError as exc:  # config.toml changed under an override
                log.warning("model %s: management settings dropped: %s", entry.name,
                            exc.message)
                del self.overrides[entry.name]

    async def reload(self, entry: ModelEntry, fresh: ModelEntry) -> None:
        """Bring a registered model in line with its folder as scanned in ``fresh``."""
        log.info("model %s: reloading from %s", entry.name, entry.folder)
        await reconcile(self, entry, {k: v.files for k, v in fresh.versions.items()},
                        fresh=fresh, reload=True)
