"""When a batched model waits batch_delay_ms, and when it does not (docs/batching.md).

The delay is set far beyond the test's runtime and the clock is fake: a request that
completes without the clock moving was sent without waiting for the delay.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np

from fastserve.core.model_config import ModelConfig
from fastserve.core.scheduler import DynamicBatcher

FOREVER_MS = 3_600_000.0


def make(backend: Any, clock: Any, **config: Any) -> DynamicBatcher:
    batcher = DynamicBatcher("m", "1", backend, ModelConfig(name="m", **config),
                             asyncio.get_running_loop(), clock=clock)
    batcher.start()
    return batcher


def x(value: float, rows: int = 1) -> dict[str, np.ndarray]:
    return {"x": np.full((rows, 3), value, dtype=np.float32)}


async def first_waits(batcher: DynamicBatcher, clock: Any) -> None:
    """A first request waits the delay (nothing is known about who else may come)."""
    future = batcher.submit(x(0.0), 1)
    await asyncio.sleep(0.01)
    assert not future.done() and batcher.queue_depth == 1
    clock.advance(FOREVER_MS / 1000)
    batcher._dispatch()
    np.testing.assert_array_equal((await future)["y"], np.ones((1, 3)))


def test_one_request_at_a_time_does_not_wait_for_the_delay(
        run_async, fake_backend, fake_clock) -> None:
    backend = fake_backend()

    async def main() -> None:
        batcher = make(backend, fake_clock, max_batch_size=8, batch_delay_ms=FOREVER_MS)
        try:
            await first_waits(batcher, fake_clock)
            for i in range(1, 6):  # each finds the model idle, as did the one before it
                outputs = await asyncio.wait_for(batcher.submit(x(i), 1), 5)
                np.testing.assert_array_equal(outputs["y"], np.full((1, 3), 2 * i + 1))
        finally:
            batcher.close()

    run_async(main)
    assert backend.batch_sizes == [1] * 6


def test_requests_arriving_together_still_wait_to_share_a_batch(
        run_async, fake_backend, fake_clock) -> None:
    backend = fake_backend()

    async def main() -> None:
        batcher = make(backend, fake_clock, max_batch_size=8, batch_delay_ms=FOREVER_MS)
        try:
            await first_waits(batcher, fake_clock)
            await batcher.submit(x(1.0), 1)  # alone again: sent at once
            pair = [batcher.submit(x(2.0), 1), batcher.submit(x(3.0), 1)]
            await asyncio.sleep(0.01)
            assert not any(f.done() for f in pair)  # two came: the batch may grow
            fake_clock.advance(FOREVER_MS / 1000)
            batcher._dispatch()
            await asyncio.gather(*pair)
        finally:
            batcher.close()

    run_async(main)
    assert backend.batch_sizes == [1, 1, 2]


def test_a_request_arriving_while_one_runs_waits(
        run_async, fake_backend, fake_clock, wait_until) -> None:
    # Others are in flight: more may come, so the batch delay holds, also for the one
    # right after them that finds the model idle.
    gate = threading.Event()
    backend = fake_backend(gate=gate)

    async def main() -> None:
        batcher = make(backend, fake_clock, max_batch_size=2, batch_delay_ms=FOREVER_MS)
        try:
            await first_waits(batcher, fake_clock)
            gate.clear()
            running = batcher.submit(x(1.0, rows=2), 2)  # a full batch: sent at once
            await wait_until(lambda: backend.active == 1)
            behind = batcher.submit(x(2.0), 1)
            gate.set()
            await running
            await asyncio.sleep(0.01)
            assert not behind.done()
            fake_clock.advance(FOREVER_MS / 1000)
            batcher._dispatch()
            await behind
            after = batcher.submit(x(3.0), 1)
            await asyncio.sleep(0.01)
            assert not after.done()  # the one before it did not arrive alone
            fake_clock.advance(FOREVER_MS / 1000)
            batcher._dispatch()
            await after
        finally:
            gate.set()
            batcher.close()

    gate.set()
    run_async(main)
    assert backend.batch_sizes == [1, 2, 1, 1]
