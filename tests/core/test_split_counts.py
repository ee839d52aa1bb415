"""A request larger than max_batch_size runs as several chunks but is one request: it
counts once in the statistics (success, fail or cancelled) and in the metrics observer's
cancelled count (fastserve_requests_cancelled_total), however many chunks it has."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from fastserve.core.stats import ModelStats

FOREVER_MS = 3_600_000.0


class Recorder:
    """A StatsObserver that records what the metrics front-end would be told."""

    def __init__(self) -> None:
        self.cancelled_calls = 0
        self.answered_calls = 0

    def queued(self, seconds: float) -> None:
        pass

    def computed(self, rows: int, items: int, seconds: float) -> None:
        pass

    def answered(self, seconds: float) -> None:
        self.answered_calls += 1

    def cancelled(self) -> None:
        self.cancelled_calls += 1


def rows(count: int, value: float) -> dict[str, np.ndarray]:
    return {"x": np.full((count, 3), value, dtype=np.float32)}


def test_split_request_cancelled_while_queued_counts_once(
        run_async: Any, new_batcher: Any, fake_backend: Any, wait_until: Any) -> None:
    gate = threading.Event()
    backend = fake_backend(gate=gate)
    recorder = Recorder()
    stats = ModelStats(observer=recorder)

    async def main() -> None:
        batcher = new_batcher(backend, stats=stats, max_batch_size=4,
                              batch_delay_ms=FOREVER_MS)
        try:
            first = batcher.submit(rows(4, -1.0), 4)  # holds the only instance
            await wait_until(lambda: backend.active == 1)
            split = batcher.submit(rows(10, 6.0), 10)  # three chunks: 4 + 4 + 2 rows
            split.cancel()
            gate.set()
            await first
            await batcher.drain()
        finally:
            gate.set()

    run_async(main)
    assert not backend.seen(6.0)  # no chunk ran
    assert (stats.cancelled, recorder.cancelled_calls) == (1, 1)
    assert (stats.success, stats.fail) == (1, 0)  # the blocking request
