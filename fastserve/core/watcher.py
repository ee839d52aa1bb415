"""``--poll-interval S``: rescan the model repository every S seconds (TF Serving's polling).

The watcher only keeps time; what a poll changes is ``ModelRepository.rescan``: new
folders load once their files held still for one interval, removed ones unload after
draining, FAILED ones whose files changed load again.
"""

from __future__ import annotations

import asyncio
import logging

from .repository import ModelRepository

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
                await self.repository.rescan()
            except Exception:  # a poll must never stop the polling
                log.exception("repository poll failed")
            self.polls += 1
            # Fixed rate, but never two polls back to back after a slow one.
            next_poll = max(next_poll + self.interval, loop.time() + self.interval / 2)
            await asyncio.sleep(next_poll - loop.time())
