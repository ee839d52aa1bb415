"""DynamicBatcher.infer, the data plane's one call: queue, dispatch once the loop turn is
over, wait. It forms the same jobs as submit's deferred dispatch, and a client that goes
away before the turn ends is dropped and counted as submit's are."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from fastserve.errors import QueueFullError


def x(value: float, rows: int = 1) -> dict[str, np.ndarray]:
    return {"x": np.full((rows, 3), value, dtype=np.float32)}


class Hops:
    """The instance threads' job queue, recording the size of each job handed over."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.sizes = inner, []

    def put(self, job: Any) -> None:
        if job is not None:
            self.sizes.append(len(job))
        self.inner.put(job)


@pytest.mark.parametrize("max_batch_size", [0, 8])
def test_infer_calls_of_one_loop_turn_travel_together(
        run_async: Any, new_batcher: Any, fake_backend: Any, max_batch_size: int) -> None:
    backend = fake_backend(batched=bool(max_batch_size))

    async def main() -> tuple[list[Any], list[int]]:
        batcher = new_batcher(backend, max_batch_size=max_batch_size, batch_delay_ms=0.0)
        batcher._jobs = hops = Hops(batcher._jobs)
        answers = await asyncio.gather(*(batcher.infer(x(float(v)), 1) for v in range(3)))
        return answers, hops.sizes

    answers, sizes = run_async(main)
    assert sizes == [3]  # one job, one thread hop
    for v, outputs in enumerate(answers):
        want = x(float(v))["x"]
        np.testing.assert_array_equal(outputs["y"], want * 2 + 1)
        np.testing.assert_array_equal(outputs["s"], want.sum(axis=1) if max_batch_size
                                      else want.sum())


def test_infer_cancelled_before_its_turn_ends_is_dropped_and_counted(
        run_async: Any, new_batcher: Any, fake_backend: Any) -> None:
    backend = fake_backend()

    async def main() -> Any:
        batcher = new_batcher(backend, max_batch_size=8, batch_delay_ms=0.0)
        first = asyncio.ensure_future(batcher.infer(x(1.0), 1))
        await asyncio.sleep(0)  # first is queued and waits for the turn to end
        second = asyncio.ensure_future(batcher.infer(x(2.0), 1))
        first.cancel()  # its client went away before the dispatch
        with pytest.raises(asyncio.CancelledError):
            await first
        outputs = await second
        np.testing.assert_array_equal(outputs["y"], x(2.0)["x"] * 2 + 1)
        return batcher.stats

    stats = run_async(main)
    assert not backend.seen(1.0) and backend.seen(2.0)
    assert (stats.cancelled, stats.success, stats.fail) == (1, 1, 0)


def test_infer_on_a_full_queue_raises_and_queues_nothing(
        run_async: Any, new_batcher: Any, fake_backend: Any) -> None:
    backend = fake_backend()

    async def main() -> None:
        batcher = new_batcher(backend, max_batch_size=8, batch_delay_ms=0.0, max_queue_size=1)
        batcher._idle = 0  # nothing leaves the queue
        waiting = batcher.submit(x(1.0), 1)
        with pytest.raises(QueueFullError, match="max_queue_size"):
            await batcher.infer(x(2.0), 1)
        assert batcher.queue_depth == 1
        batcher._idle = 1
        batcher._dispatch()
        np.testing.assert_array_equal((await waiting)["y"], x(1.0)["x"] * 2 + 1)

    run_async(main)
    assert not backend.seen(2.0)
