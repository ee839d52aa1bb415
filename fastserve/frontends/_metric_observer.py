"""Per-request observations counted in plain Python numbers and handed to prometheus_client
in bulk (``flush``), so the request path never takes prometheus_client's locks."""

from __future__ import annotations

import math
from bisect import bisect_left
from typing import Any

from ._metric_families import BATCH_BUCKETS, TIME_BUCKETS, Metrics


class PendingHistogram:
    """Observations of one histogram child, counted here and handed to prometheus_client in
    bulk by ``flush``: observe() there takes a lock and walks the buckets in Python, several
    times per request, which cost more than the rest of the metrics path together."""

    __slots__ = ("child", "bounds", "counts", "total")

    def __init__(self, child: Any, bounds: tuple[float, ...]) -> None:
        self.child = child
        self.bounds = (*bounds, math.inf)
        self.counts = [0] * len(self.bounds)
        self.total = 0.0

    def observe(self, value: float, times: int = 1) -> None:
        # The first bucket whose bound is >= value: prometheus_client's "le" rule.
        self.counts[bisect_left(self.bounds, value)] += times
        self.total += value * times

    def flush(self) -> None:
        counts = self.counts
        if not any(counts):
            return
        add_observations(self.child, counts, self.total)
        self.counts = [0] * len(counts)
        self.total = 0.0


def add_observations(child: Any, counts: list[int], total: float) -> None:
    """Add bucket counts and their sum to a prometheus_client Histogram child at once.

    prometheus_client has no public bulk observe; this writes the same per-bucket values
    observe() writes (``_buckets``, ``_sum``: unchanged since 0.4, in memory and in the
    multiprocess files alike). tests/test_operations_units.py checks it against observe().
    """
    for bucket, count in zip(child._buckets, counts, strict=True):
        if count:
            bucket.inc(count)
    child._sum.inc(total)


class VersionObserver:
    """The scheduler's hooks for one model version (core.stats.StatsObserver)."""

    __slots__ = ("_queue", "_compute", "_total", "_batch", "_cancelled", "cancelled_count")

    def __init__(self, metrics: Metrics, model: str, version: str) -> None:
        self._queue = PendingHistogram(metrics.duration.labels(model, version, "queue"),
                                       TIME_BUCKETS)
        self._compute = PendingHistogram(metrics.duration.labels(model, version, "compute"),
                                         TIME_BUCKETS)
        self._total = PendingHistogram(metrics.duration.labels(model, version, "total"),
                                       TIME_BUCKETS)
        self._batch = PendingHistogram(metrics.batch_size.labels(model, version),
                                       BATCH_BUCKETS)
        self._cancelled = metrics.cancelled.labels(model, version)
        self.cancelled_count = 0

    def queued(self, seconds: float) -> None:
        self._queue.observe(seconds)

    def computed(self, rows: int, items: int, seconds: float) -> None:
        self._batch.observe(rows)
        # every request in the batch waited for all of it
        self._compute.observe(seconds, items)

    def answered(self, seconds: float) -> None:
        self._total.observe(seconds)

    def cancelled(self) -> None:
        self.cancelled_count += 1

    def flush(self) -> None:
        for pending in (self._queue, self._compute, self._total, self._batch):
            pending.flush()
        if self.cancelled_count:
            self._cancelled.inc(self.cancelled_count)
            self.cancelled_count = 0
