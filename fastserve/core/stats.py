"""Counters one model version's scheduler keeps: the source of /metrics and /stats."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class BatchStat:
    count: int = 0
    compute_ns: int = 0


class StatsObserver(Protocol):
    """Per-observation hooks for histograms (the metrics front-end implements them).

    Called on the event loop by the scheduler of one model version. A request split
    into chunks is queued and computed once per chunk, and answered once.
    """

    def queued(self, seconds: float) -> None: ...

    def computed(self, rows: int, items: int, seconds: float) -> None: ...

    def answered(self, seconds: float) -> None: ...

    def cancelled(self) -> None: ...


@dataclass
class ModelStats:
    success: int = 0
    fail: int = 0
    success_ns: int = 0  # request time from submit to answer (data plane)
    fail_ns: int = 0
    cancelled: int = 0
    inference_count: int = 0  # rows run
    execution_count: int = 0  # batches run
    queue_ns: int = 0
    compute_ns: int = 0
    last_inference_ms: int = 0
    batches: dict[int, BatchStat] = field(default_factory=dict)
    observer: StatsObserver | None = None

    def record_queued(self, seconds: float) -> None:
        """A request (or chunk) left the queue after ``seconds``."""
        self.queue_ns += int(seconds * 1e9)
        if self.observer is not None:
            self.observer.queued(seconds)

    def record_cancelled(self) -> None:
        """A queued request was dropped: its client went away."""
        self.cancelled += 1
        if self.observer is not None:
            self.observer.cancelled()

    def record_runs(self, runs: list[tuple[int, float, int]]) -> None:
        """The model runs of one job: (rows, seconds, requests) each."""
        # NOTE: one loop, the clock read once: a job of an unbatched model carries one
        # run per request.
        observer, batches = self.observer, self.batches
        total_rows = total_ns = 0
        for rows, seconds, requests in runs:
            ns = int(seconds * 1e9)
            total_rows += rows
            total_ns += ns
            stat = batches.get(rows)
            if stat is None:
                stat = batches[rows] = BatchStat()
            stat.count += 1
            stat.compute_ns += ns
            if observer is not None:
                observer.computed(rows, requests, seconds)
        if runs:
            self.inference_count += total_rows
            self.execution_count += len(runs)
            self.compute_ns += total_ns
            self.last_inference_ms = int(time.time() * 1000)
