"""A request larger than max_batch_size runs as several chunks but is one request: it
counts once in the statistics (success, fail or cancelled) and in the metrics observer's
cancelled count (fastserve_requests_cancelled_total), however many chunks it has."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from fastserve.core.stats import ModelStats
from fastserve.errors import BackendError, DeadlineExceededError

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


def test_split_request_that_runs_counts_one_success(
        run_async: Any, new_batcher: Any, fake_backend: Any) -> None:
    backend = fake_backend()
    x = np.random.default_rng(3).standard_normal((10, 3)).astype(np.float32)

    async def main() -> Any:
        batcher = new_batcher(backend, max_batch_size=4, batch_delay_ms=0.0)
        outputs = await batcher.infer({"x": x}, 10)
        await batcher.drain()
        return batcher.stats, outputs

    stats, outputs = run_async(main)
    np.testing.assert_allclose(outputs["y"], x * 2 + 1)
    np.testing.assert_allclose(outputs["s"], x.sum(axis=1), rtol=1e-6)
    assert backend.batch_sizes == [4, 4, 2]
    assert (stats.success, stats.fail, stats.cancelled) == (1, 0, 0)
    assert (stats.execution_count, stats.inference_count) == (3, 10)  # runs count each


def test_split_request_with_failing_chunks_counts_one_failure(
        run_async: Any, new_batcher: Any, fake_backend: Any) -> None:
    # The three chunks run at once, on three instances; two of them fail.
    backend = fake_backend(fail_marker=-7.0, barrier=threading.Barrier(3, timeout=10))
    x = np.ones((10, 3), dtype=np.float32)
    x[0, 0] = x[9, 0] = -7.0  # in the first chunk and in the last

    async def main() -> Any:
        batcher = new_batcher(backend, max_batch_size=4, batch_delay_ms=0.0, instances=3)
        with pytest.raises(BackendError, match="marker -7.0"):
            await batcher.infer({"x": x}, 10)
        await batcher.drain()
        return batcher.stats

    stats = run_async(main)
    assert sorted(backend.batch_sizes) == [2, 4, 4]
    assert (stats.success, stats.fail, stats.cancelled) == (0, 1, 0)


def test_split_request_left_while_a_chunk_runs_counts_once_as_cancelled(
        run_async: Any, new_batcher: Any, fake_backend: Any, wait_until: Any) -> None:
    """Its first chunk ran, the others were dropped unrun: the request was cancelled
    (not a success as well)."""
    gate = threading.Event()
    backend = fake_backend(gate=gate)
    recorder = Recorder()
    stats = ModelStats(observer=recorder)

    async def main() -> None:
        batcher = new_batcher(backend, stats=stats, max_batch_size=4, batch_delay_ms=0.0)
        try:
            split = batcher.submit(rows(10, 6.0), 10)
            await wait_until(lambda: backend.active == 1)  # its first chunk runs
            split.cancel()
            gate.set()
            await batcher.drain()
        finally:
            gate.set()

    run_async(main)
    assert backend.batch_sizes == [4]
    assert (stats.success, stats.fail, stats.cancelled) == (0, 0, 1)
    assert recorder.cancelled_calls == 1


def test_split_request_expired_after_a_chunk_ran_counts_nowhere(
        run_async: Any, new_batcher: Any, fake_backend: Any, fake_clock: Any,
        wait_until: Any) -> None:
    """Its client got the 504 of its chunks that waited past timeout_ms: the chunk that
    ran does not make the request a success (an expired request counts in none)."""
    gate = threading.Event()
    backend = fake_backend(gate=gate)

    async def main() -> Any:
        batcher = new_batcher(backend, fake_clock, max_batch_size=4, batch_delay_ms=0.0,
                              timeout_ms=100.0)
        try:
            split = batcher.submit(rows(10, 6.0), 10)
            await wait_until(lambda: backend.active == 1)
            fake_clock.advance(0.110)
            gate.set()
            with pytest.raises(DeadlineExceededError):
                await split
            await batcher.drain()
        finally:
            gate.set()
        return batcher.stats

    stats = run_async(main)
    assert backend.batch_sizes == [4]
    assert (stats.success, stats.fail, stats.cancelled) == (0, 0, 0)
