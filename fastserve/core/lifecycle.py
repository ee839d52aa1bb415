"""A model version's life: LOADING -> READY | FAILED -> UNLOADING -> gone.

Loading (the backend's ``load`` and warm-up) runs off the event loop: the start-up
load thread loads every version found by the initial scan, one after another; later
loads (management API, poller) each run in a worker thread. Every state change
happens on the loop. A READY version is swapped in with a fresh batcher; the one it
replaces, and an unloaded one, drain before their batcher and backend close.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..backends._base import Backend, BackendLoader
from ..errors import FastServeError, ModelNotReadyError
from .entries import ModelEntry, ModelVersion, State
from .model_config import ModelConfig
from .registry import Registry
from .scheduler import DynamicBatcher

log = logging.getLogger("fastserve.repository")


class Lifecycle:
    """Loads, swaps in, unloads and retires the versions of one registry."""

    def __init__(self, registry: Registry, loader: BackendLoader) -> None:
        self.registry = registry
        self.loader = loader
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loading = True  # the start-up load thread has not finished
        # Called on the loop after every state change (metrics).
        self.on_change: Callable[[ModelVersion], None] | None = None
        self.drain_timeout = 30.0  # unloading a version: longest wait for its queue

    def changed(self, version: ModelVersion) -> None:
        if self.on_change is not None:
            self.on_change(version)

    # Start-up: one background thread loads what the initial scan found

    def start_loading(self, loop: asyncio.AbstractEventLoop) -> threading.Thread:
        self.loop = loop
        # NOTE: the work list is fixed here, on the loop: versions added later by the
        # management API or the poller are loaded by them, never twice.
        jobs = [(e, v) for e in self.registry.models.values() for v in e.sorted_versions()
                if v.state is State.LOADING]
        t = threading.Thread(target=self._load_all, args=(jobs,), name="fastserve-loader",
                             daemon=True)
        t.start()
        return t

    def _load_all(self, jobs: list[tuple[ModelEntry, ModelVersion]]) -> None:
        assert self.loop is not None
        try:
            for entry, version in jobs:
                config = version.config or entry.config
                if version.state is not State.LOADING or config is None:
                    continue
                try:
                    backend = self.build(version.folder, config, entry.labels)
                except Exception as exc:
                    self.loop.call_soon_threadsafe(self.load_failed, version, _reason(exc))
                else:
                    self.loop.call_soon_threadsafe(self._swap_in, entry, version, backend,
                                                   config)
        finally:
            self.loop.call_soon_threadsafe(self._loaded)

    def _loaded(self) -> None:
        self.loading = False
        versions = self.registry.all_versions()
        failed = [f"{v.name}/{v.version}" for v in versions if v.state is State.FAILED]
        log.info("models loaded: %d ready, %d failed%s", sum(v.ready for v in versions),
                 len(failed), f" ({', '.join(failed)})" if failed else "")

    # Loading one version (event loop; the load itself in a worker thread)

    async def load_one(self, entry: ModelEntry, version: ModelVersion,
                       config: ModelConfig | None = None) -> str | None:
        """Load a version off the loop, warm it up, then swap it in (a loaded one drains).

        Returns the load error, or None. A failed reload leaves a READY version serving.
        """
        config = config or version.config or entry.config
        if config is None:
            return entry.error
        try:
            backend = await asyncio.to_thread(self.build, version.folder, config, entry.labels)
        except Exception as exc:
            return self.load_failed(version, _reason(exc))
        old = self._swap_in(entry, version, backend, config)
        if old is not None:
            await self.retire(*old)
        return None

    def build(self, folder: Path, config: ModelConfig, labels: dict[str, str]) -> Backend:
        """Load and warm up one backend (blocking: a worker or the load thread)."""
        backend = self.loader(folder, config, labels)
        if config.warmup:
            try:
                backend.warmup()
            except BaseException:
                backend.close()
                raise
        return backend

    def _swap_in(self, entry: ModelEntry, version: ModelVersion, backend: Backend,
                 config: ModelConfig) -> tuple[DynamicBatcher | None, Backend | None] | None:
        """Make ``version`` READY on ``backend``; return what it ran on before (to retire)."""
        assert self.loop is not None
        if not self.registry.accepts(version):
            backend.close()  # unloaded while it loaded
            return None
        old = version.batcher, version.backend
        batcher = DynamicBatcher(entry.name, version.version, backend, config, self.loop,
                                 stats=version.stats)
        batcher.start()
        version.backend, version.batcher = backend, batcher
        version.state, version.error, version.loaded_at = State.READY, "", time.time()
        log.info("model %s version %s %s (%s on %s, %d instance(s))", entry.name,
                 version.version, "reloaded" if old[0] else "ready", backend.platform,
                 backend.device, config.instances)
        self.changed(version)
        return old

    def load_failed(self, version: ModelVersion, error: str) -> str:
        if not self.registry.accepts(version):
            return error  # unloaded while it loaded
        if version.state is State.READY:
            log.error("model %s version %s: reload failed, the loaded one keeps serving: %s",
                      version.name, version.version, error)
        else:
            log.error("model %s version %s failed to load: %s", version.name, version.version,
                      error)
            version.state, version.error = State.FAILED, error
            self.changed(version)
        return error

    # Unloading (event loop)

    async def unload(self, entry: ModelEntry, targets: list[ModelVersion],
                     remove_model: bool) -> None:
        """Stop routing to ``targets`` at once, let them drain, then close and forget them."""
        for version in targets:
            version.state = State.UNLOADING
            if entry.pinned == version.version:
                entry.pinned = None  # a pin lasts until its version is removed
            self.changed(version)
        log.info("model %s: unloading version(s) %s (draining)", entry.name,
                 ", ".join(v.version for v in targets) or "-")
        await asyncio.gather(*(self.retire(v.batcher, v.backend) for v in targets))
        for version in targets:
            if entry.versions.get(version.version) is version:
                del entry.versions[version.version]
            # NOTE: backend and batcher stay set: a request that ran on it may still be
            # encoding its answer with the backend's output specs.
            self.changed(version)
        models = self.registry.models
        if remove_model:
            if models.get(entry.name) is entry:
                del models[entry.name]
            log.info("model %s unloaded", entry.name)
        elif not entry.versions and not entry.error:
            entry.error = f"no versions left in {entry.folder}: every version was unloaded"

    async def retire(self, batcher: DynamicBatcher | None, backend: Backend | None) -> None:
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


def _reason(exc: Exception) -> str:
    """A load error as the version's state shows it."""
    return exc.message if isinstance(exc, FastServeError) else f"{type(exc).__name__}: {exc}"
