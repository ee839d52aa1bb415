"""Queued requests that are not to be run: their client went away, or they waited in the
queue past timeout_ms (failed with DeadlineExceededError before the model runs them)."""

from __future__ import annotations

from ..errors import DeadlineExceededError
from .jobs import Item
from .stats import ModelStats


class Expiry:
    """The expiry rule of one model version (``timeout`` in seconds; 0: none)."""

    __slots__ = ("name", "timeout", "stats")

    def __init__(self, name: str, timeout: float, stats: ModelStats) -> None:
        self.name = name
        self.timeout = timeout
        self.stats = stats

    def discard(self, item: Item, now: float) -> bool:
        """Drop ``item`` if it is stale; whether it was."""
        # stale(), inlined: called on every request as it leaves the queue.
        if item.target.done() or (self.timeout and now - item.arrival > self.timeout):
            self.drop(item, now)
            return True
        return False

    def stale(self, item: Item, now: float) -> bool:
        """Not to be run: its client left, or it waited past timeout_ms."""
        return item.target.done() or bool(self.timeout and now - item.arrival > self.timeout)

    def drop(self, item: Item, now: float) -> None:
        if item.target.done():
            # Its client went away; or (a chunk) its request already failed or expired.
            if item.target.cancelled() and item.first_outcome():
                self.stats.record_cancelled()
            return
        item.first_outcome()  # expired unrun, counted nowhere: its other chunks count neither
        item.fail(DeadlineExceededError(
            f"request to model '{self.name}' waited {1000 * (now - item.arrival):.0f} ms in the "
            f"queue, more than timeout_ms={1000 * self.timeout:g}; it was not run"
        ))
