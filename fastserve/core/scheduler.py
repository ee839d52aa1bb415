"""Dynamic batching: one queue per model version, N instance threads, a future per request.

The event loop decides *when and which* requests form a job: this module owns the queue
and that decision, knowing queues and time, not tensors. An instance worker
(``core/instances.py``) runs the job under its requests' batch policy
(``core/batching.py``) and resolves their futures itself, one thread hop per job (never
per request: DESIGN.md's measured costs). Expired requests are dropped before they run.

A batched model's job is a ``Batch``: it leaves when an instance is idle and either
``max_batch_size`` rows of one key wait, or the oldest request has waited
``batch_delay_ms``, or no request is known to be coming (``_take_batch``), or the batcher
is draining. A model without a batch dimension gets ``Group`` jobs: an idle instance's
share of the queue, at once, each request run alone; so do opaque requests of a model
whose batch size is 1, which would otherwise go one per hop.

Requests enter as tensors (``infer``: queue and wait, the data plane's call; or
``submit`` for a bare future) or as opaque payloads for a runner (``submit_opaque``: the
plug point for request-list runtimes such as TorchServe handlers; see
``core/batching.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from ..backends._base import Backend
from ..errors import BackendError, FastServeError, ModelNotReadyError, QueueFullError
from .batching import GroupedPolicy, OpaquePolicy, Runner, TensorPolicy
from .expiry import Expiry
from .instances import Instances
from .jobs import Batch, Clients, Group, Item, Outputs, Parent, take_batch, take_group
from .model_config import ModelConfig
from .stats import ModelStats

log = logging.getLogger("fastserve.scheduler")

MAX_GROUP = 64  # requests of an unbatched model one thread hop carries at most


class DynamicBatcher:
    """The scheduler of one model version."""

    def __init__(self, name: str, version: str, backend: Backend, config: ModelConfig,
                 loop: asyncio.AbstractEventLoop, clock: Callable[[], float] = time.monotonic,
                 stats: ModelStats | None = None) -> None:
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
        self._expiry = Expiry(name, self.timeout, self.stats)
        # The one place the model's kind matters: how jobs form, and its tensor policy.
        self._grouped = config.max_batch_size <= 0
        self._merge = config.merge_requests  # False: each request is a batch of its own
        self._take = self._take_group if self._grouped else self._take_batch
        self.tensors: TensorPolicy | GroupedPolicy = (
            GroupedPolicy(backend, name) if self._grouped else TensorPolicy(backend, name))
        self._queue: deque[Item] = deque()  # waiting, in arrival order
        self._rows = 0  # the rows they hold
        self._timer: asyncio.TimerHandle | None = None
        self._accepting = True
        self._broken: BaseException | None = None
        self._dispatch_pending = False
        self._clients = Clients()  # how many requests to expect at once (see _take_batch)
        # The instance threads, and the jobs they run (counted in here, out there).
        self._instances = Instances(name, version, loop, config.instances, self.stats,
                                    self._expiry, clock, self._clients)
        self._jobs = self._instances.jobs  # to the instance threads
        self._running = self._instances.running  # the jobs they run, by id

    # Lifecycle

    def start(self) -> None:
        self._instances.start(self._queue, self._dispatch, self._broke,
                              getattr(self.backend, "instance_scope", nullcontext))

    _idle = property(lambda self: self._instances.idle,  # instances without a job
                     lambda self, count: setattr(self._instances, "idle", count))

    def _broke(self, job: Batch | Group, exc: BaseException) -> None:
        """An instance thread ended on an error outside any model run: fail everything."""
        log.error("scheduler of model '%s' crashed", self.name, exc_info=exc)
        self._broken = exc
        error = BackendError(f"scheduler of model '{self.name}' crashed: {exc!r}")
        for item in job:
            item.fail(error)
        self.fail_pending(error)

    async def drain(self) -> None:
        """Stop accepting; finish everything queued and running."""
        self._accepting = False
        self._dispatch()
        pool = self._instances
        while (self._queue or pool.idle < self.instances) and self._broken is None:
            # NOTE: shared by every waiter (an unload and a shutdown may drain together).
            if pool.idle_event is None or pool.idle_event.is_set():
                pool.idle_event = asyncio.Event()
            await pool.idle_event.wait()

    def fail_pending(self, exc: FastServeError, running: bool = True) -> None:
        """Fail every queued request with ``exc``, and (``running``) those of batches still
        running too, whose late results are then dropped (shutdown past its drain timeout)."""
        self._accepting = False
        while self._queue:
            self._queue.popleft().fail(exc)
        self._rows = 0
        for job in list(self._instances.running.values()) if running else ():
            for item in job:
                item.fail(exc)

    def close(self) -> None:
        # Nothing runs after this: refuse new work and fail what is still queued, which
        # would otherwise wait forever for a worker.
        self.fail_pending(ModelNotReadyError(
            f"model '{self.name}' version {self.version} is unloading; the request was not run"),
            running=False)
        self._instances.stop()

    @property
    def queue_depth(self) -> int:
        """Requests not yet running: queued, or waiting their turn inside a group."""
        return len(self._queue) + self._instances.in_groups

    # Submission (event loop)

    async def infer(self, inputs: dict[str, Any], rows: int, policy: Any = None) -> Outputs:
        """``submit``, and wait here for the outputs. The first request of a loop turn
        dispatches itself once the turn is over, as ``submit``'s callback would."""
        future = self._enqueue(inputs, rows, policy)
        if not self._dispatch_pending:
            self._dispatch_pending = True
            try:
                await asyncio.sleep(0)  # one loop turn
            except asyncio.CancelledError:
                future.cancel()  # dropped (and counted) as a client gone while queued
                raise
            finally:
                self._deferred_dispatch()
        return await future

    def submit(self, inputs: dict[str, Any], rows: int, policy: Any = None
               ) -> asyncio.Future[Outputs]:
        """Queue one request; its future resolves to its own outputs by name.

        Args:
            inputs: arrays by input name; with batching, each has ``rows`` rows first.
            rows: the request's batch size (ignored when the model does not batch).
            policy: its batch policy, if not the model's tensor policy (one with
                ``grouped``, ``key``, ``run``, ``split`` and ``join``: image requests).
        Raises:
            QueueFullError: the queue holds max_queue_size requests (503).
            ModelNotReadyError: the batcher is draining or broken (503).
        """
        future = self._enqueue(inputs, rows, policy)
        self._dispatch_soon()
        return future

    def _enqueue(self, inputs: dict[str, Any], rows: int, policy: Any
                 ) -> asyncio.Future[Outputs]:
        future, now = self._admit()
        policy = policy or self.tensors
        if policy.grouped or rows <= self.max_batch:
            self._append(Item(inputs, 1 if policy.grouped else rows, policy, now, future))
        else:  # chunks of at most max_batch rows, joined again by their Parent
            chunks = policy.split(inputs, rows, self.max_batch)
            parent = Parent(future, len(chunks), policy.join)
            for index, (chunk, chunk_rows) in enumerate(chunks):
                self._append(Item(chunk, chunk_rows, policy, now, parent=(parent, index)))
        return future

    def submit_opaque(self, payload: Any, runner: Runner) -> asyncio.Future[Any]:
        """Queue one opaque request that counts as one row; its future resolves to its answer.

        On an instance thread, ``runner(payloads, instance)`` gets the payloads of a whole
        batch (of one runner) and returns one answer per payload, in order; an exception
        instance as an answer fails just that request. Raises as ``submit`` does.
        """
        future, now = self._admit()
        policy = OpaquePolicy(runner, self.name, self._grouped)
        self._append(Item(payload, 1, policy, now, future))
        self._dispatch_soon()
        return future

    def _admit(self) -> tuple[asyncio.Future[Any], float]:
        """A future for a request allowed in, and its arrival time."""
        if not self._accepting or self._broken is not None:
            raise ModelNotReadyError(f"model '{self.name}' version {self.version} is unloading")
        queued, pool = len(self._queue), self._instances
        if queued + pool.in_groups >= self.max_queue:  # queue_depth
            raise QueueFullError(
                f"model '{self.name}' version {self.version} has {self.queue_depth} requests "
                "waiting (max_queue_size); retry later"
            )
        now = self.clock()
        if not self._grouped:  # the count only _take_batch's no-wait rule reads
            self._clients.arrived(queued + pool.running_items + 1, now)
        return self.loop.create_future(), now

    # The queue (event loop)

    def _append(self, item: Item) -> None:
        self._queue.append(item)
        self._rows += item.rows

    def _taken(self, taken: tuple[Batch | Group, int]) -> Batch | Group:
        self._rows -= taken[1]  # the rows that left the queue with the job, or stale
        return taken[0]

    # Job formation (event loop)

    def _dispatch(self) -> None:
        """Send jobs to idle instances while there is work that is ready to go."""
        pool = self._instances
        while pool.idle and self._queue:
            now = self.clock()
            if self._expiry.discard(self._queue[0], now):
                self._rows -= self._queue.popleft().rows
                continue
            job = self._take(now)
            if job is None:
                return  # a batch that waits for more: the timer will call again
            if not job:
                continue
            pool.idle -= 1
            for item in job:
                self.stats.record_queued(now - item.arrival)
            pool.running[id(job)] = job  # counted out by the instance's answer
            pool.running_items += len(job)
            pool.in_groups += job.behind
            self._jobs.put(job)
        if self._timer is not None and not self._queue:
            self._timer.cancel()
            self._timer = None

    def _take_group(self, now: float, only: type | None = None) -> Group:
        """Unbatched model: this instance's share of the queue, each run on its own, all
        carried by one thread hop (a hop per request costs more than a small model)."""
        share = min(-(-len(self._queue) // self._idle), MAX_GROUP)
        return self._taken(take_group(self._queue, share, self._expiry.discard, now, only))

    def _take_batch(self, now: float) -> Batch | Group | None:
        """Oldest request first, then later ones of the same key (shape, runner), up to
        max_batch rows; None while the batch should wait for more (the timer is armed).

        Batch size 1, opaque (handler) requests: every batch is one request, so an idle
        instance takes its share of the queued ones in one hop, each still run alone (a
        handler call sees a list of one, as TorchServe's batchSize 1 promises)."""
        head = self._queue[0]
        if self.max_batch == 1 and type(head.policy) is OpaquePolicy:
            return self._take_group(now, OpaquePolicy)
        if not self._merge:  # the head's rows are the batch: it goes alone, at once
            return self._taken(take_batch(self._queue, head.rows, self._expiry.discard, now))
        # Wait to fill the batch only while another request is known to be coming.
        # NOTE: when every client seen lately has a request in (queued or running), the
        # next one comes only after an answer: one client sending one request at a time
        # is the common case. Waiting for them would add the delay and batch nothing
        # more, so the batch goes now (docs/batching.md).
        deadline = head.arrival + self.delay
        if (self._rows < self.max_batch and now < deadline and self._accepting
                and not self._clients.all_in(
                    len(self._queue) + self._instances.running_items)):
            self._arm_timer(deadline - now)
            return None
        return self._taken(take_batch(self._queue, self.max_batch, self._expiry.discard, now))

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
