"""The instance workers of one model version: each thread runs one job at a time under its
batch policy (``core/batching.py``) and hands every member's answer back itself.

On the event loop the scheduler forms a job, counts it here as running (``Instances``:
which instances are idle, what they run) and puts it on ``jobs``. The thread runs it
and makes one ``call_soon_threadsafe`` per job, never per request: ``_answered``
resolves the waiting futures and records the job's statistics in that one call. The
scheduler is called back only when requests wait in its queue for the instance that
just became idle, or when a drain waits for every instance to go idle.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Sized
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from .batching import as_error, run_isolated
from .expiry import Expiry
from .jobs import SKIPPED, Batch, Clients, Group, Run
from .stats import ModelStats


class Instances:
    """``count`` threads taking jobs from ``jobs`` (``None`` stops one), and what they hold.

    ``idle``, ``running`` (jobs by id), ``running_items`` (their items) and
    ``in_groups`` (group members waiting behind the one each instance runs) change on
    the event loop only: the scheduler counts a job in when it hands it over, and
    ``_answered`` counts it out.
    """

    def __init__(self, name: str, version: str, loop: asyncio.AbstractEventLoop, count: int,
                 stats: ModelStats, expiry: Expiry, clock: Callable[[], float],
                 clients: Clients) -> None:
        self.name = name
        self.version = version
        self.loop = loop
        self.count = count
        self.stats = stats
        self.expiry = expiry
        self.clock = clock
        self.clients = clients
        self.jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.idle = count
        self.running: dict[int, Batch | Group] = {}
        self.running_items = 0
        self.in_groups = 0
        self.idle_event: asyncio.Event | None = None  # set once all are idle (a drain waits)
        self._threads: list[threading.Thread] = []

    def start(self, backlog: Sized, dispatch: Callable[[], None],
              crashed: Callable[..., None],
              scope: Callable[[], AbstractContextManager[Any]] = nullcontext) -> None:
        """Start the threads. ``backlog``: the scheduler's queue; while it holds requests,
        an answered job calls ``dispatch()`` for the instance it frees. ``crashed(job,
        exc)``: on the loop, once a thread ended on an error outside any model run.
        ``scope()``: entered once by each thread for its whole life (the backend's
        per-thread state, e.g. torch's inference mode, set once rather than per run).
        (Only the running threads hold these: no reference cycle with the caller.)"""
        for i in range(self.count):
            t = threading.Thread(target=self._worker, args=(i, scope, backlog, dispatch, crashed),
                                 daemon=True,
                                 name=f"fastserve-{self.name}-v{self.version}-{i}")
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        """Each thread ends after the job it runs (if any)."""
        for _ in self._threads:
            self.jobs.put(None)
        self._threads.clear()

    # The instance thread

    def _worker(self, instance: int, scope: Callable[[], AbstractContextManager[Any]],
                *hooks: Any) -> None:
        with scope():
            self._run_jobs(instance, *hooks)

    def _run_jobs(self, instance: int, backlog: Sized, dispatch: Callable[[], None],
                  crashed: Callable[..., None]) -> None:
        jobs = self.jobs
        while True:
            job = jobs.get()
            if job is None:
                return
            try:
                if type(job) is Batch:
                    start = time.perf_counter()
                    rows = [it.rows for it in job]
                    results = run_isolated(job[0].policy, self.name, [it.inputs for it in job],
                                           rows, instance)
                    runs = [(sum(rows), time.perf_counter() - start, len(job))]
                else:
                    results, runs = self._run_group(job, instance)
            except BaseException as exc:  # a bug here must not hang the waiting clients
                self._call_loop(self._ended, job, exc, crashed)
                return
            self._call_loop(self._answered, job, results, runs, backlog, dispatch)

    def _run_group(self, group: Group, instance: int) -> tuple[list[Any], list[Run]]:
        """Each member alone; one not to be run any more is SKIPPED (the loop drops it)."""
        results: list[Any] = []
        runs: list[Run] = []
        expiry, clock = self.expiry, time.perf_counter
        start = clock()
        for item in group:
            # Gone or expired while the members before it ran (the clock is read only
            # when a timeout is set). (A future's state, read from this thread, is a
            # plain attribute read.) Its done() test is Expiry.stale's, said here too as
            # Expiry.discard does: one Python call less a request.
            if item.target.done() or (expiry.timeout and expiry.stale(item, self.clock())):
                results.append(SKIPPED)
                start = clock()
                continue
            try:
                results.extend(item.policy.run([item.inputs], [item.rows], instance))
            except Exception as exc:
                results.append(as_error(self.name, exc))
            end = clock()  # this run's end is the next one's start: one read a member
            runs.append((item.rows, end - start, 1))
            start = end
        return results, runs

    def _call_loop(self, callback: Any, *args: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            pass  # the loop has closed (shutdown past the drain timeout): nobody waits

    # Back on the event loop: the job's answers

    def _answered(self, job: Batch | Group, results: list[Any], runs: list[Run],
                  backlog: Sized, dispatch: Callable[[], None]) -> None:
        self.running.pop(id(job), None)
        self.running_items -= len(job)
        self.in_groups -= job.behind
        self.idle += 1
        self.clients.answered = True
        stats = self.stats
        stats.record_runs(runs)
        now = self.clock()
        for item, result in zip(job, results, strict=True):
            if result is SKIPPED:
                self.expiry.drop(item, now)
            elif isinstance(result, BaseException):
                if item.parent is None or item.first_outcome():  # a split request: once
                    stats.fail += 1
                item.fail(result)
            elif item.parent is None:  # the usual case
                stats.success += 1
                if not item.target.done():
                    item.target.set_result(result)
            else:  # a chunk: its request is answered and counted with its last chunk
                item.resolve(result, stats)
        if stats.observer is not None:
            for item, result in zip(job, results, strict=True):
                if result is not SKIPPED and item.answered():
                    stats.observer.answered(now - item.arrival)
        if backlog:
            dispatch()
        if self.idle_event is not None and not backlog and self.idle == self.count:
            self.idle_event.set()

    def _ended(self, job: Batch | Group, exc: BaseException,
               crashed: Callable[..., None]) -> None:
        self.running.pop(id(job), None)
        self.running_items -= len(job)
        self.in_groups -= job.behind
        crashed(job, exc)
        if self.idle_event is not None:
            self.idle_event.set()
