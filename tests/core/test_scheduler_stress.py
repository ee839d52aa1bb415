"""Many concurrent clients against one in-process batcher, some leaving at random points
(before the loop turn ends, while queued, while running), some past timeout_ms, some
whose request makes the model raise. Every client that stays gets its own answer (or
its own error), the loop reports no error, and the counters balance: each request is
counted once, as a success, a failure or a cancellation, unless it expired unrun."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest

from fastserve.core.expiry import Expiry
from fastserve.errors import BackendError, DeadlineExceededError

FAIL = -7.0  # a request holding this value makes the model raise


def slowed(backend: Any) -> Any:
    """``backend``, each model run taking a little while (so queues build up)."""
    infer = backend.infer

    def slow_infer(inputs: dict[str, Any], instance: int) -> dict[str, Any]:
        time.sleep(0.0003)
        return infer(inputs, instance)

    backend.infer = slow_infer
    return backend


@pytest.mark.parametrize("max_batch_size,timeout_ms", [(0, 0.0), (0, 10.0), (1, 10.0),
                                                        (4, 0.0), (4, 10.0)])
def test_random_cancellations_and_timeouts_balance(
        run_async: Any, new_batcher: Any, fake_backend: Any, monkeypatch: Any,
        max_batch_size: int, timeout_ms: float) -> None:
    expired: list[Any] = []  # the requests failed unrun, past timeout_ms
    drop = Expiry.drop

    def counted_drop(self: Expiry, item: Any, now: float) -> None:
        if not item.target.done():
            expired.append(item)
        drop(self, item, now)

    monkeypatch.setattr(Expiry, "drop", counted_drop)
    batched = bool(max_batch_size)
    backend = slowed(fake_backend(batched=batched, fail_marker=FAIL))
    rng = np.random.default_rng(7 + max_batch_size)
    clients = 400

    async def main() -> tuple[Any, dict[str, int]]:
        batcher = new_batcher(backend, max_batch_size=max_batch_size, batch_delay_ms=1.0,
                              instances=2, timeout_ms=timeout_ms, max_queue_size=10_000)
        outcomes = {"ok": 0, "failed": 0, "expired": 0, "cancelled": 0}

        async def client(i: int) -> None:
            for _ in range(int(rng.integers(0, 40))):  # arrivals spread over loop turns
                await asyncio.sleep(0)
            rows = int(rng.integers(1, max(max_batch_size, 1) + 1))
            x = rng.standard_normal((rows, 3)).astype(np.float32)
            if i % 11 == 0:
                x[0, 0] = FAIL
            if not batched:
                x = x[:1]
            if i % 3 == 0:  # a bare future from submit, the rest through infer
                waiting: Any = batcher.submit({"x": x}, len(x))
            else:
                waiting = asyncio.ensure_future(batcher.infer({"x": x}, len(x)))
            # An infer task cancelled before its first step never entered the queue.
            leave = int(rng.integers(i % 3 != 0, 4)) if i % 4 == 0 else None
            try:
                if leave is not None:
                    for _ in range(leave):  # in the loop turn infer waits, or queued/running
                        await asyncio.sleep(0)
                    waiting.cancel()
                outputs = await waiting
            except asyncio.CancelledError:
                assert leave is not None
                outcomes["cancelled"] += 1
                return
            except DeadlineExceededError:
                assert timeout_ms
                outcomes["expired"] += 1
                return
            except BackendError:
                assert x[0, 0] == FAIL
                outcomes["failed"] += 1
                return
            assert x[0, 0] != FAIL
            want_s = x.reshape(len(x), -1).sum(axis=1) if batched else x.sum()
            np.testing.assert_allclose(outputs["y"], x * 2 + 1)
            np.testing.assert_allclose(outputs["s"], want_s, rtol=1e-6)
            outcomes["ok"] += 1

        await asyncio.gather(*(client(i) for i in range(clients)))
        # Whatever the cancelled clients left behind is dropped with the next dispatch.
        await batcher.drain()
        assert batcher.queue_depth == 0 and batcher._rows == 0
        pool = batcher._instances
        assert (pool.idle, pool.running, pool.running_items, pool.in_groups) == (2, {}, 0, 0)
        return batcher.stats, outcomes

    stats, outcomes = run_async(main)
    assert sum(outcomes.values()) == clients
    assert outcomes["cancelled"] > 0 and (outcomes["ok"] > 0 or timeout_ms)
    # Each request is counted once; an expired one is not counted (it never ran). (A
    # client may leave after its answer or error is in: then it counts as cancelled.)
    assert stats.success + stats.fail + stats.cancelled + len(expired) == clients
    assert outcomes["expired"] <= len(expired)
    assert stats.success >= outcomes["ok"] and stats.fail >= outcomes["failed"]
    assert stats.execution_count <= len(backend.calls)  # a failed batch is rerun alone


def test_split_requests_with_random_cancellations_and_timeouts(
        run_async: Any, new_batcher: Any, fake_backend: Any, monkeypatch: Any) -> None:
    """Requests of up to three times max_batch_size rows (split into chunks, joined again)
    among small ones: every staying client gets its own rows back, in order, and each
    request counts once, however many chunks it ran as."""
    expired: list[Any] = []  # the requests failed unrun, past timeout_ms
    drop = Expiry.drop

    def counted_drop(self: Expiry, item: Any, now: float) -> None:
        if not item.target.done():  # (a split request's first expired chunk)
            expired.append(item)
        drop(self, item, now)

    monkeypatch.setattr(Expiry, "drop", counted_drop)
    backend = slowed(fake_backend(fail_marker=FAIL))
    rng = np.random.default_rng(11)

    async def main() -> tuple[Any, dict[str, int]]:
        batcher = new_batcher(backend, max_batch_size=4, batch_delay_ms=1.0, instances=2,
                              timeout_ms=10.0, max_queue_size=10_000)
        outcomes = {"ok": 0, "failed": 0, "expired": 0, "cancelled": 0}

        async def client(i: int) -> None:
            for _ in range(int(rng.integers(0, 40))):
                await asyncio.sleep(0)
            x = rng.standard_normal((int(rng.integers(1, 13)), 3)).astype(np.float32)
            if i % 13 == 0:
                x[-1, 0] = FAIL
            task = asyncio.ensure_future(batcher.infer({"x": x}, len(x)))
            try:
                if i % 5 == 0:
                    for _ in range(int(rng.integers(1, 6))):
                        await asyncio.sleep(0)
                    task.cancel()
                outputs = await task
            except asyncio.CancelledError:
                outcomes["cancelled"] += 1
                return
            except DeadlineExceededError:
                outcomes["expired"] += 1
                return
            except BackendError:
                assert x[-1, 0] == FAIL
                outcomes["failed"] += 1
                return
            np.testing.assert_allclose(outputs["y"], x * 2 + 1)
            np.testing.assert_allclose(outputs["s"], x.sum(axis=1), rtol=1e-6)
            outcomes["ok"] += 1

        await asyncio.gather(*(client(i) for i in range(300)))
        await batcher.drain()
        pool = batcher._instances
        assert batcher.queue_depth == 0 and batcher._rows == 0
        assert (pool.idle, pool.running, pool.running_items, pool.in_groups) == (2, {}, 0, 0)
        return batcher.stats, outcomes

    stats, outcomes = run_async(main)
    assert sum(outcomes.values()) == 300 and outcomes["cancelled"] > 0
    assert stats.success + stats.fail + stats.cancelled + len(expired) == 300
