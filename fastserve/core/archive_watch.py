"""``--poll-interval`` for TorchServe archives (``.mar``, ``.tar.gz``, extracted and
no-archive folders) in DIR: what ``watcher.RepositoryWatcher`` does for model folders.

An archive is one source: its file's size and mtime (a folder's files) must hold still
for one poll before anything happens, so a copy in progress never loads. A new one is
registered as the management API registers it (a new model, or a new version of the
model its manifest names); a replaced one is read again and brought in line by
``reconcile`` (the new version loads and swaps in, the old drains); a removed one is
unloaded after draining. What the API unloaded is left alone, and with ``--models
a.mar`` (TorchServe's selection) only the selected names are watched.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from pathlib import Path

from ..errors import FastServeError
from .entries import ModelEntry, ModelVersion
from .files import Fingerprint
from .repository import ModelRepository
from .scan import scan_fresh

log = logging.getLogger("fastserve.watcher")

Sources = dict[Path, Fingerprint]


class ArchiveWatcher:
    """The archive half of one poll; ``poll`` returns the jobs to run."""

    def __init__(self, repository: ModelRepository) -> None:
        self.repository = repository
        self._previous: Sources | None = None
        self._rejected: Sources = {}  # new archives that could not be registered

    def poll(self, now: Sources) -> list[Awaitable[None]]:
        repo = self.repository
        previous, self._previous = self._previous, now
        jobs: list[Awaitable[None]] = []
        served: set[Path] = set()
        for entry in [e for e in repo.models.values() if e.archive]:
            served.add(entry.folder)
            served.update(v.folder for v in entry.versions.values())
            if repo.lock(entry.name).locked():
                continue  # a management call is changing it; look again next poll
            for source, versions in _by_source(entry).items():
                files = now.get(source)
                # What was loaded (a FAILED archive without a version: the entry's files),
                # recorded at the first poll if the initial scan did not.
                holders: list[ModelEntry | ModelVersion] = list(versions) or [entry]
                for holder in holders:
                    holder.files = holder.files or (files or ())
                settled = previous is not None and previous.get(source) == files
                if files is None:
                    jobs.append(self._removed(entry, source))
                elif settled and any(h.files != files for h in holders):
                    jobs.append(self._replaced(entry, source, files))
        if previous is not None:
            for source, files in now.items():
                if (source in served or previous.get(source) != files
                        or self._rejected.get(source) == files
                        or not repo.store.selects(source)):
                    continue
                jobs.append(self._new(source, files))
        return jobs

    async def _removed(self, entry: ModelEntry, source: Path) -> None:
        repo = self.repository
        async with repo.lock(entry.name):
            gone = [v for v in entry.versions.values() if v.folder == source]
            if repo.models.get(entry.name) is not entry or (entry.versions and not gone):
                return
            log.info("model %s: archive %s was removed", entry.name, source.name)
            await repo.lifecycle.unload(entry, gone, len(gone) == len(entry.versions))

    async def _replaced(self, entry: ModelEntry, source: Path, files: Fingerprint) -> None:
        repo = self.repository
        fresh = await asyncio.to_thread(scan_fresh, source, repo.store)
        async with repo.lock(entry.name):
            if repo.models.get(entry.name) is not entry:
                return
            log.info("model %s: archive %s changed", entry.name, source.name)
            if fresh.name == entry.name and source == entry.folder and all(
                    v.folder == source for v in entry.versions.values()):
                # The usual case, one archive per model: the API's reload rule, so the
                # new version is loaded and warmed up before the old one drains.
                repo.configure(fresh)
                for version in fresh.versions.values():
                    version.files = files
                await repo.reload(entry, fresh)
                return
            old = [v for v in entry.versions.values() if v.folder == source]
            await repo.lifecycle.unload(entry, old, len(old) == len(entry.versions))
        await self._new(source, files)  # renamed, or one version of several archives

    async def _new(self, source: Path, files: Fingerprint) -> None:
        repo = self.repository
        fresh = await asyncio.to_thread(scan_fresh, source, repo.store)
        if fresh.name in repo.unloaded or any((fresh.name, v) in repo.unloaded_versions
                                              for v in fresh.versions):
            self._rejected[source] = files  # unloaded through the API: left alone
            return
        try:
            await repo.load_model(source)
        except FastServeError as exc:
            self._rejected[source] = files
            log.warning("archive %s not loaded: %s", source.name, exc.message)


def _by_source(entry: ModelEntry) -> dict[Path, list[ModelVersion]]:
    found: dict[Path, list[ModelVersion]] = {entry.folder: []}
    for version in entry.versions.values():
        found.setdefault(version.folder, []).append(version)
    return found
