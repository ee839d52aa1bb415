"""The instance threads of one model version: each runs one job at a time and hands every
member's answer back to the event loop with one ``call_soon_threadsafe`` (one thread hop per
job, never per request). The scheduler decides what a job holds; these only run them."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from .jobs import Item


class InstanceThreads:
    """``count`` threads taking jobs from ``jobs`` (``None`` stops one)."""

    def __init__(self, name: str, version: str, loop: asyncio.AbstractEventLoop,
                 jobs: queue.SimpleQueue[Any]) -> None:
        self.name = name
        self.version = version
        self.loop = loop
        self._jobs = jobs
        self._threads: list[threading.Thread] = []

    def start(self, count: int, stale: Callable[[Item], bool],
              complete: Callable[..., None], crashed: Callable[..., None],
              scope: Callable[[], AbstractContextManager[Any]] = nullcontext) -> None:
        """Start the threads. ``stale(item)``: a group member is no longer to be run; on the
        loop, ``complete(job, results, runs)``, or ``crashed(job, exc)`` once that thread has
        ended. ``scope()``: entered once by each thread for its whole life (the backend's
        per-thread state, e.g. torch's inference mode, set once rather than per run).
        (Only the running threads hold these: no reference cycle with the caller.)"""
        args = (stale, complete, crashed, scope)
        for i in range(count):
            t = threading.Thread(target=self._worker, args=(i, *args), daemon=True,
                                 name=f"fastserve-{self.name}-v{self.version}-{i}")
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        """Each thread ends after the job it runs (if any)."""
        for _ in self._threads:
            self._jobs.put(None)
        self._threads.clear()

    def _worker(self, instance: int, stale: Callable[[Item], bool],
                complete: Callable[..., None], crashed: Callable[..., None],
                scope: Callable[[], AbstractContextManager[Any]]) -> None:
        with scope():
            self._run_jobs(instance, stale, complete, crashed)

    def _run_jobs(self, instance: int, stale: Callable[[Item], bool],
                  complete: Callable[..., None], crashed: Callable[..., None]) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                results, runs = job.execute(self.name, instance, stale)
            except BaseException as exc:  # a bug here must not hang the waiting clients
                self._call_loop(crashed, job, exc)
                return
            self._call_loop(complete, job, results, runs)

    def _call_loop(self, callback: Any, *args: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            pass  # the loop has closed (shutdown past the drain timeout): nobody waits
