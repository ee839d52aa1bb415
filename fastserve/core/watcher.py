"""``--poll-interval S``: rescan the model repository every S seconds (TF Serving's polling).

New model and version folders are loaded once their files held still since the
previous poll (a copy in progress never loads half-written); a new version becomes the
default when READY. Removed ones are unloaded after draining. A FAILED version (or a
model whose config.toml was broken) is loaded again when its files changed. Models and
versions unloaded through the API are left alone. What a change does to a registered
model is ``reconcile``'s rule, the same as the management API's. TorchServe archives
are watched the same way, each as one source (``archive_watch.py``).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from ..errors import FastServeError
from .archive_watch import ArchiveWatcher
from .files import Fingerprint, FolderFiles, archive_snapshot, snapshot
from .reconcile import reconcile
from .repository import ModelEntry, ModelRepository
from .scan import scan_fresh

log = logging.getLogger("fastserve.watcher")


class RepositoryWatcher:
    """Polls one repository from the event loop until stopped."""

    def __init__(self, repository: ModelRepository, interval: float) -> None:
        if interval <= 0:
            raise ValueError(f"poll interval must be > 0, got {interval}")
        self.repository = repository
        self.interval = interval
        self.polls = 0
        self._task: asyncio.Task[None] | None = None
        self._previous: dict[Path, FolderFiles] | None = None  # the last poll's snapshot
        self._rejected: dict[Path, FolderFiles] = {}  # new folders that could not be added
        self.archives = ArchiveWatcher(repository)

    def start(self) -> None:
        """Record what DIR holds now, then poll every ``interval`` seconds."""
        self._task = asyncio.get_running_loop().create_task(self._run(),
                                                            name="fastserve-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_poll = loop.time()
        while True:
            try:
                await self.poll()
            except Exception:  # a poll must never stop the polling
                log.exception("repository poll failed")
            self.polls += 1
            # Fixed rate, but never two polls back to back after a slow one.
            next_poll = max(next_poll + self.interval, loop.time() + self.interval / 2)
            await asyncio.sleep(next_poll - loop.time())

    async def poll(self) -> None:
        """One look at DIR; the first call only records what is there."""
        repo = self.repository
        snap, archives = await asyncio.to_thread(_snapshots, repo.root)
        previous, self._previous = self._previous, snap
        jobs = self.archives.poll(archives)
        known = set()
        for entry in list(repo.models.values()):
            known.add(entry.folder)
            if entry.archive:
                continue  # self.archives
            if repo.lock(entry.name).locked():
                continue  # a management call is changing it; look again next poll
            now = snap.get(entry.folder)
            if now is None:
                jobs.append(self._removed(entry))
            else:
                before = previous.get(entry.folder) if previous is not None else None
                jobs.append(self._model(entry, now, before))
        if previous is not None:
            for folder, now in snap.items():
                if (folder in known or previous.get(folder) != now or now.name in repo.unloaded
                        or now.name in repo.models or self._rejected.get(folder) == now):
                    continue
                jobs.append(self._new(folder, now))
        for result in await asyncio.gather(*jobs, return_exceptions=True):
            if isinstance(result, FastServeError):
                log.error("repository poll: %s", result.message)
            elif isinstance(result, Exception):
                log.error("repository poll failed", exc_info=result)

    async def _removed(self, entry: ModelEntry) -> None:
        repo = self.repository
        async with repo.lock(entry.name):
            if repo.models.get(entry.name) is entry:
                log.info("model %s: folder %s was removed", entry.name, entry.folder)
                await repo.lifecycle.unload(entry, list(entry.versions.values()), True)

    async def _model(self, entry: ModelEntry, now: FolderFiles,
                     before: FolderFiles | None) -> None:
        repo = self.repository
        async with repo.lock(entry.name):
            if repo.models.get(entry.name) is not entry:
                return
            # What the initial scan (or a management call) read, if not recorded yet.
            entry.files = entry.files or now.files
            for key, version in entry.versions.items():
                version.files = version.files or now.versions.get(key, ())
            if before is None:
                return
            if entry.config is not None:
                # Only version folders whose files held still since the last poll.
                settled = {k: f for k, f in now.versions.items() if before.versions.get(k) == f}
                await reconcile(repo, entry, settled, present=now.versions)
            elif now.files != entry.files and now == before:
                # Broken config.toml: read the model again once its files changed and settled.
                fresh = await asyncio.to_thread(scan_fresh, entry.folder)
                if fresh.name != entry.name:  # renamed: the next poll adds it as new
                    await repo.lifecycle.unload(entry, list(entry.versions.values()), True)
                    return
                for key in [k for k in fresh.versions if (entry.name, k) in
                            repo.unloaded_versions]:
                    del fresh.versions[key]
                repo.configure(fresh)
                await repo.reload(entry, fresh)

    async def _new(self, folder: Path, now: FolderFiles) -> None:
        try:
            await self.repository.load_model(folder)
        except FastServeError as exc:
            self._rejected[folder] = now
            log.warning("model folder %s not loaded: %s", folder, exc.message)


def _snapshots(root: Path) -> tuple[dict[Path, FolderFiles], dict[Path, Fingerprint]]:
    return snapshot(root), archive_snapshot(root)
