"""Dynamic batching: one queue per model version, N instance threads, a future per request.

The event loop decides *when and which* requests form a batch; an instance thread
runs it and hands every member's rows back with one ``call_soon_threadsafe`` (one
thread hop per batch, never per request: DESIGN.md's measured costs).

A batch is sent when an instance is idle and either ``max_batch_size`` rows wait,
or the oldest request has waited ``batch_delay_ms``, or the batcher is draining.
Requests whose inputs differ in anything but the batch dimension never share one.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from ..backends._base import Backend
from ..errors import (
    BackendError,
    DeadlineExceededError,
    FastServeError,
    ModelNotReadyError,
    QueueFullError,
)
from .model_config import ModelConfig
from .stats import ModelStats

log = logging.getLogger("fastserve.scheduler")

Outputs = dict[str, Any]
MAX_GROUP = 64  # requests of an unbatched model one thread hop carries at most
_SKIPPED = object()  # a group member not run: its client left or its timeout passed


class _Parent:
    """A request split into chunks of at most max_batch_size rows, joined again at the end."""

    __slots__ = ("future", "parts", "remaining", "observed")

    def __init__(self, future: asyncio.Future[Outputs], chunks: int) -> None:
        self.future = future
        self.parts: list[Outputs | None] = [None] * chunks
        self.remaining = chunks
        self.observed = False  # its total time went to the stats observer


class _Item:
    """One unit of queued work: a request, or one chunk of a split request."""

    __slots__ = ("inputs", "rows", "key", "future", "parent", "index", "arrival", "solo")

    def __init__(self, inputs: dict[str, Any], rows: int, key: Any, arrival: float) -> None:
        self.inputs = inputs
        self.rows = rows
        self.key = key
        self.arrival = arrival
        self.solo = False  # came to an idle model right after another that did (see _arrived)
        self.future: asyncio.Future[Outputs] | None = None
        self.parent: _Parent | None = None
        self.index = 0

    def abandoned(self) -> bool:
        """True when nobody waits for the answer any more (the client went away)."""
        target = self.future if self.parent is None else self.parent.future
        return target.done()  # type: ignore[union-attr]


class _Opaque:
    """The batch key of opaque items (whole requests, e.g. TorchServe bodies): items with
    the same runner batch together; ``runner(payloads, instance)`` answers the batch."""

    __slots__ = ("runner",)

    def __init__(self, runner: Callable[[list[Any], int], list[Any]]) -> None:
        self.runner = runner

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Opaque) and other.runner == self.runner

    def __hash__(self) -> int:
        return hash(self.runner)


def _batch_key(inputs: dict[str, Any]) -> tuple[Any, ...]:
    # Everything but the batch dimension must agree for two requests to share a batch.
    return tuple((name, arr.shape[1:], arr.dtype.str) for name, arr in inputs.items())


class DynamicBatcher:
    """The scheduler of one model version."""

    def __init__(
        self,
        name: str,
        version: str,
        backend: Backend,
        config: ModelConfig,
        loop: asyncio.AbstractEventLoop,
        clock: Callable[[], float] = time.monotonic,
        stats: ModelStats | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.backend = backend
        self.loop = loop
        self.clock = clock
        self.max_batch = config.max_batch_size
        self.delay = config.batch_delay_ms / 1000.0
        self.timeout = config.timeout_ms / 1000.0
        if self.timeout:
            # Never wait to fill a batch until the request is about to expire.
            self.delay = min(self.delay, 0.9 * self.timeout)
        self.max_queue = config.max_queue_size
        self.instances = config.instances
        self.stats = stats or ModelStats()
        self._queue: deque[_Item] = deque()
        self._queued_rows = 0
        self._idle = config.instances
        self._timer: asyncio.TimerHandle | None = None
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._accepting = True
        self._idle_event: asyncio.Event | None = None
        self._broken: BaseException | None = None
        self._running: dict[int, list[_Item]] = {}  # batches handed to instance threads
        self._in_groups = 0  # members of running groups beyond the one each instance runs
        self._dispatch_pending = False
        self._last_alone = False  # the latest request found the model idle and its queue empty

    # Lifecycle

    def start(self) -> None:
        for i in range(self.instances):
            t = threading.Thread(target=self._worker, args=(i,), daemon=True,
                                 name=f"fastserve-{self.name}-v{self.version}-{i}")
            t.start()
            self._threads.append(t)

    async def drain(self) -> None:
        """Stop accepting; finish everything queued and running."""
        self._accepting = False
        self._dispatch()
        while (self._queue or self._idle < self.instances) and self._broken is None:
            # NOTE: shared by every waiter (an unload and a shutdown may drain together).
            if self._idle_event is None or self._idle_event.is_set():
                self._idle_event = asyncio.Event()
            await self._idle_event.wait()

    def fail_pending(self, exc: FastServeError, running: bool = True) -> None:
        """Fail every queued request with ``exc``, and (``running``) those of batches still
        running too, whose late results are then dropped (shutdown past its drain timeout)."""
        self._accepting = False
        while self._queue:
            self._fail(self._queue.popleft(), exc)
        self._queued_rows = 0
        for batch in list(self._running.values()) if running else ():
            for item in batch:
                self._fail(item, exc)

    def close(self) -> None:
        # Nothing runs after this: refuse new work and fail what is still queued, which
        # would otherwise wait forever for a worker.
        self.fail_pending(ModelNotReadyError(
            f"model '{self.name}' version {self.version} is unloading; the request was not run"),
            running=False)
        for _ in self._threads:
            self._jobs.put(None)
        self._threads.clear()

    @property
    def queue_depth(self) -> int:
        """Requests not yet running: queued, or waiting their turn inside a group."""
        return len(self._queue) + self._in_groups

    # Submission (event loop)

    def submit(self, inputs: dict[str, Any], rows: int) -> asyncio.Future[Outputs]:
        """Queue one request; its future resolves to its own outputs by name.

        Args:
            inputs: arrays by input name; with batching, each has ``rows`` rows first.
            rows: the request's batch size (ignored when the model does not batch).
        Raises:
            QueueFullError: the queue holds max_queue_size requests (503).
            ModelNotReadyError: the batcher is draining or broken (503).
        """
        if not self._accepting or self._broken is not None:
            raise ModelNotReadyError(f"model '{self.name}' version {self.version} is unloading")
        if self.queue_depth >= self.max_queue:
            raise QueueFullError(
                f"model '{self.name}' version {self.version} has {self.queue_depth} requests "
                "waiting (max_queue_size); retry later"
            )
        future: asyncio.Future[Outputs] = self.loop.create_future()
        now = self.clock()
        solo = self._arrived()
        if self.max_batch <= 0:
            item = _Item(inputs, 1, None, now)
            item.future = future
            self._enqueue(item)
        elif rows <= self.max_batch:
            item = _Item(inputs, rows, _batch_key(inputs), now)
            item.future, item.solo = future, solo
            self._enqueue(item)
        else:
            starts = range(0, rows, self.max_batch)
            parent = _Parent(future, len(starts))
            key = _batch_key(inputs)
            for index, start in enumerate(starts):
                end = min(start + self.max_batch, rows)
                chunk = {n: a[start:end] for n, a in inputs.items()}
                item = _Item(chunk, end - start, key, now)
                item.parent, item.index = parent, index
                self._enqueue(item)
        self._dispatch_soon()
        return future

    def submit_opaque(self, payload: Any, runner: Callable[[list[Any], int], list[Any]]
                      ) -> asyncio.Future[Any]:
        """Queue one opaque request that counts as one row; its future resolves to its answer.

        On an instance thread, ``runner(payloads, instance)`` gets the payloads of a whole
        batch (of one runner) and returns one answer per payload, in order; an exception
        instance as an answer fails just that request. Raises as ``submit`` does.
        """
        if not self._accepting or self._broken is not None:
            raise ModelNotReadyError(f"model '{self.name}' version {self.version} is unloading")
        if self.queue_depth >= self.max_queue:
            raise QueueFullError(
                f"model '{self.name}' version {self.version} has {self.queue_depth} requests "
                "waiting (max_queue_size); retry later"
            )
        future: asyncio.Future[Any] = self.loop.create_future()
        solo = self._arrived()
        item = _Item(payload, 1, _Opaque(runner), self.clock())
        item.future, item.solo = future, solo
        self._enqueue(item)
        self._dispatch_soon()
        return future

    def _arrived(self) -> bool:
        """Whether a request arriving now cannot be joined by another: see ``_dispatch``."""
        alone = not self._queue and self._idle == self.instances
        solo, self._last_alone = alone and self._last_alone, alone
        return solo

    def _enqueue(self, item: _Item) -> None:
        self._queue.append(item)
        self._queued_rows += item.rows

    # Batch formation (event loop)

    def _dispatch(self) -> None:
        """Send batches to idle instances while there is work that is ready to go."""
        while self._idle and self._queue:
            head = self._queue[0]
            now = self.clock()
            if self._stale(head, now):
                self._queue.popleft()
                self._queued_rows -= head.rows
                self._drop(head, now)
                continue
            if self.max_batch <= 0:
                batch = self._take_group(now)
                if not batch:
                    continue
            else:
                # Wait to fill the batch only while another request may come to join it.
                # NOTE: a request that found the model idle and its queue empty, right
                # after one that did the same, comes from a client sending one request at
                # a time (or from a trickle): nobody is there to join it, so it goes now.
                # A first request, or one arriving while others wait or run, waits.
                deadline = head.arrival + self.delay
                if (self._queued_rows < self.max_batch and now < deadline and self._accepting
                        and not (head.solo and len(self._queue) == 1)):
                    self._arm_timer(deadline - now)
                    return
                batch = self._take_batch(now)
                if not batch:
                    continue
            self._idle -= 1
            observer = self.stats.observer
            for item in batch:
                self.stats.queue_ns += int((now - item.arrival) * 1e9)
                if observer is not None:
                    observer.queued(now - item.arrival)
            self._running[id(batch)] = batch
            if self.max_batch <= 0:
                self._in_groups += len(batch) - 1
            self._jobs.put(batch)
        if self._timer is not None and not self._queue:
            self._timer.cancel()
            self._timer = None

    def _take_group(self, now: float) -> list[_Item]:
        """Unbatched model: this instance's share of the queue, each run on its own, all
        carried by one thread hop (a hop per request costs more than a small model)."""
        share = min(-(-len(self._queue) // self._idle), MAX_GROUP)
        group: list[_Item] = []
        while self._queue and len(group) < share:
            item = self._queue.popleft()
            self._queued_rows -= item.rows
            if self._stale(item, now):
                self._drop(item, now)
                continue
            group.append(item)
        return group

    def _take_batch(self, now: float) -> list[_Item]:
        """Oldest request first, then later ones of the same shape, up to max_batch rows."""
        key = None
        rows = 0
        batch: list[_Item] = []
        kept: deque[_Item] = deque()
        while self._queue:
            item = self._queue.popleft()
            if self._stale(item, now):
                self._queued_rows -= item.rows
                self._drop(item, now)
                continue
            if key is None:
                key = item.key
            if item.key == key and rows + item.rows <= self.max_batch:
                batch.append(item)
                rows += item.rows
                self._queued_rows -= item.rows
                if rows == self.max_batch:
                    break
            else:
                kept.append(item)
        kept.extend(self._queue)
        self._queue = kept
        return batch

    def _stale(self, item: _Item, now: float) -> bool:
        """Not to be run: its client left, or it waited past timeout_ms."""
        return item.abandoned() or bool(self.timeout and now - item.arrival > self.timeout)

    def _dispatch_soon(self) -> None:
        """Dispatch once the loop has handed over everything it read this iteration: the
        requests that arrived together then travel together (one hop), at the cost of
        one loop turn, instead of the first going alone and the rest waiting for it."""
        if not self._dispatch_pending:
            self._dispatch_pending = True
            self.loop.call_soon(self._deferred_dispatch)

    def _deferred_dispatch(self) -> None:
        self._dispatch_pending = False
        self._dispatch()

    def _arm_timer(self, delay: float) -> None:
        if self._timer is None:
            self._timer = self.loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _drop(self, item: _Item, now: float) -> None:
        if item.abandoned():
            self.stats.cancelled += 1
            if self.stats.observer is not None:
                self.stats.observer.cancelled()
            return
        self._fail(item, DeadlineExceededError(
            f"request to model '{self.name}' waited {1000 * (now - item.arrival):.0f} ms in the "
            f"queue, more than timeout_ms={1000 * self.timeout:g}; it was not run"
        ))

    # Instance threads

    def _worker(self, instance: int) -> None:
        while True:
            batch = self._jobs.get()
            if batch is None:
                return
            try:
                if self.max_batch <= 0:  # a group: each request is a model run of its own
                    results, elapsed = [], []
                    for item in batch:
                        # Gone or expired while the members before it ran: the loop drops it.
                        # (Reading a future's state from this thread is a plain attribute read.)
                        if self._stale(item, self.clock()):
                            results.append(_SKIPPED)
                            elapsed.append(0.0)
                            continue
                        start = time.perf_counter()
                        results.extend(self._execute([item], instance))
                        elapsed.append(time.perf_counter() - start)
                else:
                    start = time.perf_counter()
                    results = self._execute(batch, instance)
                    elapsed = [time.perf_counter() - start]
            except BaseException as exc:  # a bug here must not hang the waiting clients
                self._call_loop(self._crashed, batch, exc)
                return
            self._call_loop(self._complete, batch, results, elapsed)

    def _call_loop(self, callback: Any, *args: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            pass  # the loop has closed (shutdown past the drain timeout): nobody waits

    def _execute(self, batch: list[_Item], instance: int) -> list[Any]:
        try:
            return self._run(batch, instance)
        except Exception as exc:
            if len(batch) == 1:
                return [self._wrap(exc)]
        # Failure isolation: run each member alone so only the culprit fails.
        results: list[Any] = []
        for item in batch:
            try:
                results.extend(self._run([item], instance))
            except Exception as exc:
                results.append(self._wrap(exc))
        return results

    def _run(self, batch: list[_Item], instance: int) -> list[Outputs]:
        key = batch[0].key
        if type(key) is _Opaque:
            answers = key.runner([it.inputs for it in batch], instance)
            if not isinstance(answers, list) or len(answers) != len(batch):
                # Not retried one by one: the whole batch gets the error (CONTRACT §4).
                error = BackendError(
                    f"model '{self.name}' gave {len(answers) if isinstance(answers, list) else 0}"
                    f" answers for a batch of {len(batch)} requests; expected one per request")
                failed: list[Any] = [error] * len(batch)
                return failed
            return answers
        if self.max_batch <= 0:
            return [self._check(self.backend.infer(batch[0].inputs, instance), None)]
        if len(batch) == 1:
            inputs = batch[0].inputs
        else:
            # merged: (sum(rows), *feature_shape) per input — the one copy batching costs
            inputs = {n: np.concatenate([it.inputs[n] for it in batch])
                      for n in batch[0].inputs}
        total = sum(it.rows for it in batch)
        outputs = self._check(self.backend.infer(inputs, instance), total)
        results = []
        offset = 0
        for it in batch:
            end = offset + it.rows
            results.append({n: a[offset:end] for n, a in outputs.items()})
            offset = end
        return results

    def _check(self, outputs: Any, rows: int | None) -> Outputs:
        if not isinstance(outputs, dict) or not outputs:
            raise BackendError(f"model '{self.name}' returned no outputs")
        if rows is not None:
            for n, a in outputs.items():
                if getattr(a, "ndim", 0) < 1 or len(a) != rows:
                    raise BackendError(
                        f"model '{self.name}' output '{n}' has shape "
                        f"{list(getattr(a, 'shape', ()))} for a batch of {rows} rows; batched "
                        "models must return one row per input row"
                    )
        return outputs

    def _wrap(self, exc: Exception) -> FastServeError:
        if isinstance(exc, FastServeError):
            return exc
        err = BackendError(f"model '{self.name}' raised {type(exc).__name__}: {exc}")
        err.__cause__ = exc
        return err

    # Completion (event loop)

    def _complete(self, batch: list[_Item], results: list[Any], elapsed: list[float]) -> None:
        """``elapsed``: one time per model run (the batch's, or each member's of a group)."""
        self._running.pop(id(batch), None)
        self._idle += 1
        stats = self.stats
        if self.max_batch > 0:
            # (rows, seconds, requests) of each model run
            runs = [(sum(it.rows for it in batch), elapsed[0], len(batch))]
        else:
            self._in_groups -= len(batch) - 1
            runs = [(it.rows, t, 1) for it, t, r in zip(batch, elapsed, results, strict=True)
                    if r is not _SKIPPED]
        for rows, seconds, _ in runs:
            stats.record_batch(rows, seconds)
        now = self.clock()
        for item, result in zip(batch, results, strict=True):
            if result is _SKIPPED:
                self._drop(item, now)
            elif isinstance(result, BaseException):
                stats.fail += 1
                self._fail(item, result)
            else:
                stats.success += 1
                self._resolve(item, result)
        if stats.observer is not None:
            ran = [it for it, r in zip(batch, results, strict=True) if r is not _SKIPPED]
            self._observe(stats.observer, ran, runs)
        self._dispatch()
        if self._idle_event is not None and not self._queue and self._idle == self.instances:
            self._idle_event.set()

    def _observe(self, observer: Any, batch: list[_Item],
                 runs: list[tuple[int, float, int]]) -> None:
        now = self.clock()
        for rows, seconds, requests in runs:
            observer.computed(rows, requests, seconds)
        for item in batch:
            parent = item.parent
            if parent is None:
                observer.answered(now - item.arrival)
            elif parent.future.done() and not parent.observed:
                parent.observed = True
                observer.answered(now - item.arrival)

    def _resolve(self, item: _Item, outputs: Outputs) -> None:
        parent = item.parent
        if parent is None:
            if not item.future.done():  # type: ignore[union-attr]
                item.future.set_result(outputs)  # type: ignore[union-attr]
            return
        parent.parts[item.index] = outputs
        parent.remaining -= 1
        if parent.remaining == 0 and not parent.future.done():
            parts = parent.parts
            parent.future.set_result(
                {n: np.concatenate([p[n] for p in parts]) for n in parts[0]}  # type: ignore[index]
            )

    def _fail(self, item: _Item, exc: BaseException) -> None:
        target = item.future if item.parent is None else item.parent.future
        if not target.done():  # type: ignore[union-attr]
            target.set_exception(exc)  # type: ignore[union-attr]

    def _crashed(self, batch: list[_Item], exc: BaseException) -> None:
        self._running.pop(id(batch), None)
        if self.max_batch <= 0:
            self._in_groups -= len(batch) - 1
        log.error("scheduler of model '%s' crashed", self.name, exc_info=exc)
        self._broken = exc
        error = BackendError(f"scheduler of model '{self.name}' crashed: {exc!r}")
        for item in batch:
            self._fail(item, error)
        self.fail_pending(error)
        if self._idle_event is not None:
            self._idle_event.set()
