"""Explanations: a small queue of threads outside the batcher, a few at a time.

An explanation (Captum, 50 integrated-gradient steps with gradients on) costs tens of
forward and backward passes, so explanations never join a prediction batch (as
TorchServe's ``explain_handle``): they wait here for one of ``concurrency`` threads,
which run at a lower CPU priority (nice +10, Linux) so that predictions keep the CPU
when both compete. More than ``max_waiting`` explanations waiting -> 503.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

from ..errors import BackendError, FastServeError, QueueFullError

CONCURRENCY = 2
MAX_WAITING = 64
NICE = 10


class ExplainQueue:
    def __init__(self, concurrency: int = CONCURRENCY, max_waiting: int = MAX_WAITING,
                 nice: int = NICE) -> None:
        self.concurrency = concurrency
        self.max_waiting = max_waiting
        self.nice = nice
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._pending = 0

    @property
    def pending(self) -> int:
        """Explanations waiting or running."""
        return self._pending

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on an explanation thread; its result, or its error.

        Raises:
            QueueFullError: ``max_waiting`` explanations already wait (503).
        """
        if self._pending >= self.max_waiting + self.concurrency:
            raise QueueFullError(f"{self._pending} explanations are waiting or running; "
                                 "retry later")
        if not self._threads:
            self._start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending += 1
        try:
            self._jobs.put((fn, args, future, loop))
            return await future
        finally:
            self._pending -= 1

    def close(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        self._threads.clear()

    def _start(self) -> None:
        for i in range(self.concurrency):
            t = threading.Thread(target=self._worker, name=f"fastserve-explain-{i}",
                                 daemon=True)
            t.start()
            self._threads.append(t)

    def _worker(self) -> None:
        if self.nice:
            try:  # Linux: a thread id names one thread; its OpenMP helpers inherit it
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)
            except (AttributeError, OSError):  # pragma: no cover - not Linux
                pass
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, args, future, loop = job
            if future.done():  # the client went away while it waited
                continue
            try:
                result = fn(*args)
            except FastServeError as exc:
                loop.call_soon_threadsafe(_fail, future, exc)
            except Exception as exc:  # logged once, where it becomes a 500
                error = BackendError(f"the explanation failed: {type(exc).__name__}: {exc}")
                error.__cause__ = exc
                loop.call_soon_threadsafe(_fail, future, error)
            else:
                loop.call_soon_threadsafe(_resolve, future, result)


def _resolve(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
