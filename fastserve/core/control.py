"""The second door into the core: managing models and reading their numbers.

The management API (register, load, unload, scale, set-default, describe, index) and
the metrics (states, queue depths, statistics) go through ``ModelControl``, as
inference goes through ``DataPlane``; neither front-end touches the repository, a
backend or a scheduler. Everything it returns is a plain value (core/info.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError
from .archive import is_archive
from .files import resolve_model_folder
from .info import FAILED, LoadResult, VersionChange, VersionDetail, VersionInfo, VersionStats
from .repository import ModelEntry, ModelRepository, ModelVersion


class ModelControl:
    def __init__(self, repository: ModelRepository) -> None:
        self.repository = repository

    # What exists

    def names(self) -> list[str]:
        """Every registered model, sorted."""
        return sorted(self.repository.models)

    def folder_name(self, name: str) -> str:
        """The name of the folder of DIR a registered model is served from (404 unknown)."""
        return self.repository.entry(name).folder.name

    def model_error(self, name: str) -> str:
        """Why a model as a whole failed (a bad config.toml); empty when it did not."""
        return self.repository.entry(name).error

    def versions(self, name: str | None = None) -> list[VersionInfo]:
        """Every version of one model (404 if unknown), or of every model, ascending."""
        entries = ([self.repository.entry(name)] if name is not None
                   else [self.repository.models[n] for n in self.names()])
        return [_info(e, v) for e in entries for v in e.sorted_versions()]

    def describe(self, name: str, version: str | None = None) -> list[VersionDetail]:
        """The default version (None), one version, or every one ("all"); 404 if unknown.
        Empty when the model has no version to describe."""
        entry = self.repository.entry(name)
        if version == "all":
            versions = entry.sorted_versions()
        elif version is None:
            versions = [entry.default] if entry.default is not None else []
        else:
            versions = [self.repository.version(entry.name, version)]
        return [self._detail(entry, v) for v in versions]

    async def on_disk(self) -> dict[str, Path]:
        """Model name -> folder for every model folder of DIR (read off the loop)."""
        return await asyncio.to_thread(self.repository.available)

    # Changes

    def resolve_folder(self, url: str) -> Path:
        """A user's ``url`` as a model folder inside DIR (403 outside it, 404 missing)."""
        return resolve_model_folder(self.repository.root, url)

    def name_archive(self, folder: Path, name: str) -> bool:
        """TorchServe's model_name for an archive in the store: it serves under that name.
        False when ``folder`` is no archive (a folder's model keeps its own name)."""
        if not is_archive(folder):
            return False
        if "/" in name:
            raise InvalidInputError(f"model_name {name!r} must not contain '/'")
        self.repository.store.names[folder.name] = name
        return True

    async def find_folder(self, name: str) -> Path:
        """The folder of DIR serving model ``name`` (404 if none)."""
        return await asyncio.to_thread(self.repository.find_folder, name)

    async def load(self, folder: Path, overrides: dict[str, Any] | None = None, *,
                   reload: bool = False) -> LoadResult:
        """Register and load the model in ``folder`` (see ModelRepository.load_model)."""
        entry = await self.repository.load_model(folder, overrides, reload=reload)
        versions = entry.sorted_versions()
        return LoadResult(entry.name, tuple(v.version for v in versions if v.ready),
                          tuple((v.version, v.error) for v in versions if v.state.value == FAILED),
                          entry.error, entry.config.instances if entry.config else 0)

    async def unload(self, name: str, version: str | None = None) -> None:
        """Drain and unload a model or one version; it stays unloaded (404 if unknown)."""
        await self.repository.unload_model(name, version)

    async def keep_unloaded(self, name: str) -> None:
        """Unload a loaded model, or keep a model of DIR that is not loaded from loading."""
        if name in self.repository.models:
            await self.repository.unload_model(name)
            return
        await self.find_folder(name)  # 404 unless it is in DIR
        self.repository.unloaded.add(name)

    async def scale(self, name: str, instances: int, version: str | None = None) -> list[str]:
        """Run ``instances`` copies; the load errors of versions that could not."""
        return await self.repository.set_instances(name, instances, version)

    def check_known(self, name: str) -> None:
        """404 unless ``name`` is a registered model."""
        self.repository.entry(name)

    def set_default(self, name: str, version: str) -> VersionInfo:
        found = self.repository.set_default(name, version)
        return _info(self.repository.entry(found.name), found)

    # Numbers (metrics)

    def known(self, name: str, version: str | None) -> tuple[str, str]:
        """(model, version) when registered, else ("", ""); version None: the default's."""
        entry = self.repository.models.get(name)
        if entry is None:
            return "", ""
        if version is None:
            default = entry.default
            return entry.name, default.version if default is not None else ""
        return entry.name, version if version in entry.versions else ""

    def queue_depths(self) -> list[tuple[str, str, str, int]]:
        """(model, version, state, requests waiting) of every version."""
        return [(v.name, v.version, v.state.value,
                 v.batcher.queue_depth if v.batcher is not None else 0)
                for v in self.repository.all_versions()]

    def statistics(self, name: str | None = None, version: str | None = None
                   ) -> list[VersionStats]:
        """The statistics of every version, a model's, or one (404)."""
        if name is None:
            versions = self.repository.all_versions()
        elif version is None:
            versions = self.repository.entry(name).sorted_versions()
        else:
            versions = [self.repository.version(name, version)]
        return [_stats(v) for v in versions]

    def handler_metrics(self) -> list[tuple[str, str, list[Any]]]:
        """(model, version, what its TorchServe handler recorded in context.metrics) of every
        version whose backend records some: (name, kind, unit, dimensions, values) each."""
        found = []
        for v in self.repository.all_versions():
            read = getattr(v.backend, "handler_metrics", None)
            if read is not None:
                found.append((v.name, v.version, list(read())))
        return found

    def on_change(self, callback: Callable[[VersionChange], None]) -> None:
        """Call ``callback`` on the loop after every state change of a version."""
        def changed(version: ModelVersion) -> None:
            callback(self.change(version))

        self.repository.on_change = changed

    def change(self, version: ModelVersion) -> VersionChange:
        """What a front-end sees of a version the repository reports as changed."""
        entry = self.repository.models.get(version.name)
        registered = entry is not None and entry.versions.get(version.version) is version
        depth = version.batcher.queue_depth if version.batcher is not None else 0
        return VersionChange(version.name, version.version, version.state.value, registered,
                             depth, version.stats)

    @staticmethod
    def _detail(entry: ModelEntry, version: ModelVersion) -> VersionDetail:
        config = entry.config
        batcher, backend = version.batcher, version.backend
        instances = batcher.instances if batcher is not None else (
            config.instances if config is not None else 0)
        delay = config.batch_delay_ms if config is not None else 0.0
        batch = config.max_batch_size if config is not None else 0
        queue = config.max_queue_size if config is not None else 0
        if batcher is not None:  # what this version runs with (archives: its own settings)
            batch, queue = batcher.max_batch, batcher.max_queue
            delay = round(batcher.delay * 1000.0, 3)
        return VersionDetail(
            entry.name, version.version, version.state.value, version.error,
            entry.default is version, version.loaded_at,
            version.folder.name if entry.archive else entry.folder.name,
            tuple(v.version for v in entry.sorted_versions()), instances,
            backend.device if backend is not None else (config.device if config else ""),
            backend.platform if backend is not None else "",
            batch, delay, queue, batcher.queue_depth if batcher is not None else 0)


def _stats(version: ModelVersion) -> VersionStats:
    # Measured by backends that convert tensors (torch): per instance [input, output]
    io = getattr(version.backend, "io_ns", None) or []
    return VersionStats(version.name, version.version, version.stats,
                        sum(i[0] for i in io), sum(i[1] for i in io))


def _info(entry: ModelEntry, version: ModelVersion) -> VersionInfo:
    return VersionInfo(version.name, version.version, version.state.value, version.error,
                       entry.default is version, version.loaded_at)

