"""The records of queued and running work (the scheduler's units); no logic of their own
beyond answering a client, so the scheduler and the instance workers share them.

An ``Item`` is one queued request, or one chunk of a request split into chunks of at
most max_batch_size rows (its ``Parent`` joins them again). An idle instance is handed
one job: a ``Batch`` (items sharing one model run, under their policy) or, for a
model without a batch dimension or opaque requests at batch size 1, a ``Group`` (items
that share the thread hop only, each run alone). The instance worker
(``core/instances.py``) runs a job: one result per item and one (rows, seconds,
requests) record per model run, for the statistics.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from ..errors import BackendError
from .stats import ModelStats

Outputs = dict[str, Any]
Run = tuple[int, float, int]  # rows, seconds, requests of one model run
SKIPPED = object()  # a group member not run: its client left or its timeout passed


def tensor_key(inputs: dict[str, Any]) -> tuple[Any, ...]:
    """Everything but the batch dimension must agree for two requests to share a run."""
    if len(inputs) == 1:  # the usual one input, without a generator
        for name, arr in inputs.items():
            return ((name, arr.shape[1:], arr.dtype.str),)
    return tuple((name, arr.shape[1:], arr.dtype.str) for name, arr in inputs.items())


class Parent:
    """A request split into chunks of at most max_batch_size rows, joined again at the end."""

    __slots__ = ("future", "parts", "remaining", "observed", "counted", "join")

    def __init__(self, future: asyncio.Future[Outputs], chunks: int,
                 join: Callable[[list[Outputs]], Outputs]) -> None:
        self.future = future
        self.parts: list[Outputs | None] = [None] * chunks
        self.remaining = chunks
        self.observed = False  # its total time went to the stats observer
        self.counted = False  # its outcome went to the counters (once, not once a chunk)
        self.join = join  # the chunks' outputs -> the request's


class Item:
    """One unit of queued work: a request, or one chunk of a split request."""

    __slots__ = ("inputs", "rows", "policy", "key", "future", "parent", "index", "arrival",
                 "target")

    def __init__(self, inputs: Any, rows: int, policy: Any, arrival: float,
                 future: asyncio.Future[Any] | None = None,
                 parent: tuple[Parent, int] | None = None) -> None:
        self.inputs = inputs
        self.rows = rows
        self.policy = policy
        # Items with equal keys may share a batch (a grouped item shares none: no key).
        self.key = None if policy.grouped else policy.key(inputs)
        self.arrival = arrival
        self.future = future
        # A chunk: the request it belongs to, and its place there.
        self.parent, self.index = parent if parent is not None else (None, 0)
        # The future its client waits on (a chunk's: its parent's).
        self.target: asyncio.Future[Any] = (
            future if parent is None else parent[0].future)  # type: ignore[assignment]

    def fail(self, exc: BaseException) -> None:
        if not self.target.done():
            self.target.set_exception(exc)

    def first_outcome(self) -> bool:
        """Whether this item's outcome is its request's first to be counted: a split
        request counts once however many of its chunks end the same way."""
        parent = self.parent
        if parent is None:
            return True
        if parent.counted:
            return False
        parent.counted = True
        return True

    def answered(self) -> bool:
        """Whether its client got its answer with this item (once per split request)."""
        parent = self.parent
        if parent is None:
            return True
        if parent.future.done() and not parent.observed:
            parent.observed = True
            return True
        return False

    def resolve(self, outputs: Any, stats: ModelStats) -> None:
        """A chunk's answer. Once every chunk is in, its request is answered and counted,
        once: a success (also when its client left while it ran: it ran), or a failure
        if the chunks' answers cannot be joined. (A request's own answer: inlined in
        Instances._answered.)"""
        parent = self.parent
        assert parent is not None
        parent.parts[self.index] = outputs
        parent.remaining -= 1
        if parent.remaining:
            return
        parent.counted = True  # (no chunk was dropped or failed: none counted before)
        if parent.future.done():
            stats.success += 1
            return
        try:
            joined = parent.join(parent.parts)  # type: ignore[arg-type]
        except Exception as exc:  # e.g. chunks answered in different widths
            # Raising here, on the loop, would leave the job's other clients waiting.
            stats.fail += 1
            parent.future.set_exception(BackendError(
                f"the answers of a request split into {len(parent.parts)} chunks "
                f"(max_batch_size) could not be joined: {exc}"))
            return
        stats.success += 1
        parent.future.set_result(joined)


class Batch(list[Item]):
    """Items that share one model run (tensor rows, or an opaque request list)."""

    behind = 0  # members waiting inside the job for their turn (none: one run)


class Group(list[Item]):
    """Items that never share a run (no batch dimension, or opaque at batch size 1): one
    thread hop, each run alone. ``behind``: the members after the first, set when formed."""

    behind = 0


class Clients:
    """How many requests a model has had in at once lately: the clients it knows of.

    While every one of them has a request in (queued or running), nobody known is left
    to join a batch, so waiting batch_delay_ms for one would only add latency. "Lately"
    is this window of ``WINDOW`` seconds and the one before, so the count follows
    clients that leave within two windows; after a whole window without a request it
    starts again from nothing. Until the model has answered once, batches wait as
    configured.
    """

    WINDOW = 0.25

    def __init__(self) -> None:
        self.last = 0  # the most at once in the window before this one
        self.current = 0  # ... in this one
        self.window_end = float("-inf")
        self.answered = False

    def arrived(self, in_system: int, now: float) -> None:
        """A request came; ``in_system`` counts it and every one queued or running."""
        if now >= self.window_end:  # a window starts with a request
            self.last = self.current if now < self.window_end + self.WINDOW else 0
            self.current, self.window_end = 0, now + self.WINDOW
        if in_system > self.current:
            self.current = in_system

    def all_in(self, in_system: int) -> bool:
        """Whether every client known lately has a request in the system now."""
        return self.answered and in_system >= max(self.last, self.current)


def take_group(queue: deque[Item], share: int, discard: Callable[[Item, float], bool],
               now: float, only: type | None = None) -> tuple[Group, int]:
    """The first ``share`` items of ``queue`` (``discard`` drops the stale ones), stopping
    before the first whose policy is not of type ``only``; and the rows taken off."""
    group = Group()
    rows = 0
    while queue and len(group) < share:
        if only is not None and type(queue[0].policy) is not only:
            break
        item = queue.popleft()
        rows += item.rows
        if not discard(item, now):
            group.append(item)
    group.behind = max(len(group) - 1, 0)
    return group, rows


def take_batch(queue: deque[Item], most_rows: int, discard: Callable[[Item, float], bool],
               now: float) -> tuple[Batch, int]:
    """The oldest item, then later ones of its key, up to ``most_rows`` rows; and the rows
    taken off the queue (the batch's and the stale items')."""
    key = None
    rows = dropped = 0
    batch = Batch()
    kept: list[Item] = []
    while queue:
        item = queue.popleft()
        if discard(item, now):
            dropped += item.rows
            continue
        if key is None:
            key = item.key
        if item.key == key and rows + item.rows <= most_rows:
            batch.append(item)
            rows += item.rows
            if rows == most_rows:
                break
        else:
            kept.append(item)
    queue.extendleft(reversed(kept))  # in place: others hold this deque
    return batch, rows + dropped
