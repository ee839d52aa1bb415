"""DynamicBatcher driven by a fake backend (tier 1: no torch, no sockets).

Delay logic is driven by a fake clock: the batch delay is set far beyond the test's
runtime so the loop's real timer never fires, and the test advances the clock and calls
the dispatch path itself.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pytest

from fastserve.core.scheduler import DynamicBatcher
from fastserve.core.stats import ModelStats
from fastserve.errors import (
    BackendError,
    DeadlineExceededError,
    ModelNotReadyError,
    QueueFullError,
)
from fastserve.types import DataType, TensorSpec

FOREVER_MS = 3_600_000.0  # a batch delay the real timer never reaches during a test


def request(rows: int, value: float, features: int = 3, dtype: Any = np.float32) -> np.ndarray:
    return np.full((rows, features), value, dtype=dtype)


def answer(x: np.ndarray) -> dict[str, np.ndarray]:
    """What the fake backend computes for a batched request."""
    return {"y": x * 2 + 1, "s": x.reshape(len(x), -1).sum(axis=1)}


def assert_answer(outputs: dict[str, np.ndarray], x: np.ndarray) -> None:
    want = answer(x)
    assert set(outputs) == set(want)
    for name, value in want.items():
        assert outputs[name].dtype == value.dtype
        np.testing.assert_array_equal(outputs[name], value)


async def blocked(batcher: DynamicBatcher, backend: Any, wait_until: Any,
                  rows: int) -> asyncio.Future[Any]:
    """Occupy the only instance with a full batch that waits on ``backend.gate``."""
    future = batcher.submit({"x": request(rows, -1.0)}, rows)
    await wait_until(lambda: backend.active == 1)
    return future


# Batching


def test_concurrent_requests_each_get_their_own_answer(
        run_async, new_batcher, fake_backend) -> None:
    backend = fake_backend()
    rng = np.random.default_rng(42)
    rows = rng.integers(1, 6, size=300)
    sent = [rng.standard_normal((int(n), 3)).astype(np.float32) for n in rows]

    async def main() -> None:
        batcher = new_batcher(backend, max_batch_size=8, batch_delay_ms=2.0)

        async def one(x: np.ndarray) -> dict[str, np.ndarray]:
            await asyncio.sleep(0)
            return await batcher.submit({"x": x}, len(x))

        results = await asyncio.gather(*(one(x) for x in sent))
        for x, outputs in zip(sent, results, strict=True):
            assert_answer(outputs, x)

    run_async(main)
    sizes = backend.batch_sizes
    assert max(sizes) <= 8
    assert max(sizes) > 1 and len(sizes) < len(sent)  # batches really formed
    assert sum(sizes) == int(rows.sum())  # every row ran once: no re-runs
    assert all(b <= 8 for b in sizes)


def test_stats_count_rows_batches_and_successes(run_async, new_batcher, fake_backend) -> None:
    backend = fake_backend()
    stats = ModelStats()

    async def main() -> None:
        batcher = new_batcher(backend, stats=stats, max_batch_size=4, batch_delay_ms=1.0)
        await asyncio.gather(*(batcher.submit({"x": request(2, i)}, 2) for i in range(6)))

    run_async(main)
    assert stats.success == 6 and stats.fail == 0 and stats.cancelled == 0
    assert stats.inference_count == 12
    assert stats.execution_count == len(backend.calls)
    assert sum(b.count for b in stats.batches.values()) == stats.execution_count
    assert sum(size * b.count for size, b in stats.batches.items()) == 12
    assert stats.last_inference_ms > 0 and stats.compute_ns > 0


def test_full_batch_is_sent_without_waiting_for_the_delay(
        run_async, new_batcher, fake_backend, fake_clock) -> None:
    backend = fake_backend()

    async def main() -> None:
        batcher = new_batcher(backend, fake_clock, max_batch_size=4, batch_delay_ms=FOREVER_MS)
        futures = [batcher.submit({"x": request(1, i)}, 1) for i in range(4)]
        results = await asyncio.gather(*futures)  # the clock never moved
        for i, outputs in enumerate(results):
            assert_answer(outputs, request(1, i))

    run_async(main)
    assert backend.batch_sizes == [4]


def test_delay_honoured_with_the_injected_clock(run_async, new_batcher, fake_backend, fake_clock,
                                               wait_until) -> None:
    backend = fake_backend()

    async def main() -> None:
        batcher = new_batcher(backend, fake_clock, max_batch_size=8, batch_delay_ms=50.0)
        first = batcher.submit({"x": request(1, 1.0)}, 1)
        fake_clock.advance(0.030)
        second = batcher.submit({"x": request(2, 2.0)}, 2)
        batcher._dispatch()
        await asyncio.sleep(0.01)
        assert backend.calls == [] and not first.done()
        assert batcher.queue_depth == 2
        fake_clock.advance(0.0199)  # 49.9 ms after the first request
        batcher._dispatch()
        await asyncio.sleep(0.01)
        assert backend.calls == []
        fake_clock.advance(0.0002)  # 50.1 ms: the oldest request's delay is over
        batcher._dispatch()
        assert batcher.queue_depth == 0
        assert_answer(await first, request(1, 1.0))
        assert_answer(await second, request(2, 2.0))

    run_async(main)
    assert backend.batch_sizes == [3]  # both requests went together


def test_delay_never_outlasts_the_timeout(run_async, new_batcher, fake_backend, fake_clock) -> None:
    # batch_delay_ms > timeout_ms: a lone request is sent when its timeout is reached,
    # not failed with 504 while the batcher still waits to fill a batch.
    backend = fake_backend()

    async def main() -> None:
        batcher = new_batcher(backend, fake_clock, max_batch_size=8, batch_delay_ms=50.0,
                       timeout_ms=10.0)
        future = batcher.submit({"x": request(1, 1.0)}, 1)
        fake_clock.advance(0.0085)
        batcher._dispatch()
        await asyncio.sleep(0.01)
        assert backend.calls == []
        fake_clock.advance(0.001)  # 9.5 ms: past 90% of timeout_ms, sent before it expires
        batcher._dispatch()
        assert_answer(await future, request(1, 1.0))

    run_async(main)
    assert backend.batch_sizes == [1]


def test_delay_timer_fires_on_the_loop(run_async, new_batcher, fake_backend, fake_clock) -> None:
    # The timer the batcher arms on the loop is what calls the dispatch path.
    backend = fake_backend()

    async def main() -> None:
        batcher = new_batcher(backend, fake_clock, max_batch_size=8, batch_delay_ms=20.0)
        future = batcher.submit({"x": request(1, 3.0)}, 1)
        await asyncio.sleep(0)  # dispatch runs once the loop has taken this turn's input
        timer = batcher._timer
        assert timer is not None
        assert timer.when() - asyncio.get_running_loop().time() == pytest.approx(0.020,
                                                                                 abs=0.005)
        fake_clock.advance(0.021)
        timer.cancel()
        batcher._on_timer()  # what the loop calls when the timer is due
        assert_answer(await future, request(1, 3.0))
        assert batcher._timer is None

    run_async(main)
    assert backend.batch_sizes == [1]


def test_real_clock_delay_sends_a_lone_request(run_async, new_batcher, fake_backend) -> None:
    backend = fake_backend()

    async def main() -> None:
        batcher = new_batcher(backend, max_batch_size=64, batch_delay_ms=5.0)
        assert_answer(await batcher.submit({"x": request(1, 7.0)}, 1), request(1, 7.0))

    run_async(main)
    assert backend.batch_sizes == [1]


def test_large_request_is_split_and_joined(run_async, new_batcher, fake_backend) -> None:
    backend = fake_backend()
    x = np.arange(30, dtype=np.float32).reshape(10, 3)

    async def main() -> None:
        batcher = new_batcher(backend, max_batch_size=4, batch_delay_ms=1.0)
        assert_answer(await batcher.submit({"x": x}, 10), x)

    run_async(main)
    assert sorted(backend.batch_sizes) == [2, 4, 4]
    np.testing.assert_array_equal(np.concatenate([c["x"] for c in backend.calls]), x)


def test_split_chunks_share_batches_with_other_requests(
        run_async, new_batcher, fake_backend) -> None:
    backend = fake_backend()
    rng = np.random.default_rng(3)
    sent = [rng.standard_normal((n, 2)).astype(np.float32) for n in (9, 1, 6, 2, 3, 1, 13)]

    async def main() -> None:
        batcher = new_batcher(backend, max_batch_size=4, batch_delay_ms=1.0)
        results = await asyncio.gather(*(batcher.submit({"x": x}, len(x)) for x in sent))
        for x, outputs in zip(sent, results, strict=True):
            assert_answer(outputs, x)

    run_async(main)
    assert max(backend.batch_sizes) <= 4
    assert sum(backend.batch_sizes) == sum(len(x) for x in sent)


def test_different_feature_shapes_never_share_a_batch(
        run_async, new_batcher, fake_backend, fake_clock, wait_until) -> None:
    gate = threading.Event()
    backend = fake_backend(gate=gate)
    kinds = [(3, np.float32), (5, np.float32), (3, np.float64)]

    async def main() -> None:
        batcher = new_batcher(backend, fake_clock, max_batch_size=4, batch_delay_ms=FOREVER_MS)
        try:
            first = await blocked(batcher, backend, wait_until, rows=4)
            sent = [request(1, i, features, dtype)
                    for i in range(4) for features, dtype in kinds]  # interleaved kinds
            futures = [batcher.submit({"x": x}, 1) for x in sent]
            gate.set()
            await first
            results = await asyncio.gather(*futures)
            for x, outputs in zip(sent, results, strict=True):
                assert_answer(outputs, x)
        finally:
            gate.set()

    run_async(main)
    # the blocker, then one full batch per kind, each of a single shape and dtype
    assert backend.batch_sizes == [4, 4, 4, 4]
    assert [(c["shape"], c["dtype"]) for c in backend.calls[1:]] == [
        ((4, 3), np.float32), ((4, 5), np.float32), ((4, 3), np.float64)]


def test_batches_keep_arrival_order_within_a_shape(
        run_async, new_batcher, fake_backend, fake_clock, wait_until) -> None:
    gate = threading.Event()
    backend = fake_backend(gate=gate)

    async def main() -> None:
        batcher = new_batcher(backend, fake_clock, max_batch_size=4, batch_delay_ms=FOREVER_MS)
        try:
            first = await blocked(batcher, backend, wait_until, rows=4)
            futures = [batcher.submit({"x": request(1, i)}, 1) for i in range(8)]
            gate.set()
            await asyncio.gather(first, *futures)
        finally:
            gate.set()

    run_async(main)
    assert [c["x"][:, 0].tolist() for c in backend.calls[1:]] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_max_batch_size_zero_runs_one_by_one(run_async, new_batcher, fake_backend) -> None:
    backend = fake_backend(batched=False)
    sent = [np.full((2, 2), 1.0), np.arange(3.0), np.ones((1, 4, 2)), np.float64(5.0) * np.ones(())]

    async def main() -> None:
        batcher = new_batcher(backend, max_batch_size=0, batch_delay_ms=FOREVER_MS)
        results = await asyncio.gather(*(batcher.submit({"x": x}, 99) for x in sent))
        for x, outputs in zip(sent, results, strict=True):
            np.testing.assert_array_equal(outputs["y"], x * 2 + 1)  # passed as sent
            assert outputs["s"] == x.sum()

    run_async(main)
    assert len(backend.calls) == len(sent)
    assert [c["shape"] for c in backend.calls] == [x.shape for x in sent]


class RecordingQueue:
    """The instance threads' job queue, recording the size of each job handed over."""

    def __init__(self, inner: Any, sizes: list[int]) -> None:
        self.inner, self.sizes = inner, sizes

    def put(self, job: Any) -> None:
        if job is not None:
            self.sizes.append(len(job))
        self.inner.put(job)

    def get(self) -> Any:
        return self.inner.get()


def test_unbatched_queue_goes_to_the_instance_in_one_hop(
        run_async, new_batcher, fake_backend, wait_until) -> None:
    """Requests queued behind a running one reach the idle instance together (one thread
    hop), each still runs alone, and a failing one fails alone."""
    gate = threading.Event()
    backend = fake_backend(gate=gate, batched=False, fail_marker=13.0)
    hops: list[int] = []
    stats_box: list[ModelStats] = []

    async def main() -> None:
        batcher = new_batcher(backend, max_batch_size=0)
        stats_box.append(batcher.stats)
        batcher._jobs = RecordingQueue(batcher._jobs, hops)  # type: ignore[assignment]
        try:
            first = batcher.submit({"x": request(1, -1.0)}, 1)
            await wait_until(lambda: backend.active == 1)
            values = [0.0, 1.0, 13.0, 3.0, 4.0]
            futures = [batcher.submit({"x": request(1, v)}, 1) for v in values]
            gate.set()
            await first
            results = await asyncio.gather(*futures, return_exceptions=True)
        finally:
            gate.set()
        for v, result in zip(values, results, strict=True):
            if v == 13.0:
                assert isinstance(result, BackendError)
            else:
                assert_answer(result, request(1, v))

    run_async(main)
    assert hops == [1, 5]
    assert [c["x"][0, 0] for c in backend.calls] == [-1.0, 0.0, 1.0, 13.0, 3.0, 4.0]
    stats = stats_box[0]
    assert stats.success == 5 and stats.fail == 1
    assert stats.execution_count == 6 and stats.batches[1].count == 6


class Holding:
    """An unbatched backend (x -> x + 1) that holds each request whose value has an Event
    in ``holds`` until that Event is set; it records the values it ran."""

    inputs = (TensorSpec("x", DataType.FP32, (-1,)),)
    outputs = (TensorSpec("y", DataType.FP32, (-1,)),)

    def __init__(self, *held: float) -> None:
        self.holds = {v: threading.Event() for v in held}
        self.ran: list[float] = []
        self.running: float | None = None

    def infer(self, inputs: dict[str, Any], instance: int) -> dict[str, Any]:
        x = inputs["x"]
        self.running = float(x[0])
        hold = self.holds.get(float(x[0]))
        if hold is not None:
            assert hold.wait(10), "test hold never released"
        self.ran.append(float(x[0]))
        return {"y": x + 1}

    def release_all(self, batcher: DynamicBatcher) -> None:
        for hold in self.holds.values():
            hold.set()
        batcher.close()


async def group_running(batcher: DynamicBatcher, backend: Holding, wait_until: Any,
                        values: list[float]) -> list[asyncio.Future[Any]]:
    """Value 0 runs (held), ``values`` queue behind it, then 0 is let go: the queue goes
    to the instance as one group whose first member (held) is running on return."""
    futures = [batcher.submit({"x": np.array([0.0], np.float32)}, 1)]
    await wait_until(lambda: backend.running == 0.0)
    futures += [batcher.submit({"x": np.array([v], np.float32)}, 1) for v in values]
    assert batcher.queue_depth == len(values)
    backend.holds[0.0].set()
    await wait_until(lambda: backend.running == values[0])
    return futures


def test_group_members_count_as_queued(run_async, new_batcher, wait_until) -> None:
    backend = Holding(0.0, 1.0)

    async def main() -> None:
        batcher = new_batcher(backend, max_batch_size=0, max_queue_size=3)
        try:
            futures = await group_running(batcher, backend, wait_until, [1.0, 2.0, 3.0])
            assert batcher.queue_depth == 2  # 1 runs; 2 and 3 wait their turn in its group
            batcher.submit({"x": np.array([4.0], np.float32)}, 1)
            with pytest.raises(QueueFullError, match="has 3 requests waiting"):
                batcher.submit({"x": np.array([5.0], np.float32)}, 1)
            backend.holds[1.0].set()
            await asyncio.gather(*futures)
            await wait_until(lambda: batcher.queue_depth == 0 and 4.0 in backend.ran)
        finally:
            backend.release_all(batcher)

    run_async(main)
    assert backend.ran == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_group_member_whose_client_left_is_not_run(run_async, new_batcher, wait_until) -> None:
    backend = Holding(0.0, 1.0)
    stats_box: list[ModelStats] = []

    async def main() -> None:
        batcher = new_batcher(backend, max_batch_size=0)
        stats_box.append(batcher.stats)
        try:
            futures = await group_running(batcher, backend, wait_until, [1.0, 2.0, 3.0])
            futures[2].cancel()  # the client of 2.0 went away while 1.0 ran
            backend.holds[1.0].set()
            for f, v in ((futures[1], 1.0), (futures[3], 3.0)):
                np.testing.assert_array_equal((await f)["y"], [v + 1])
            await wait_until(lambda: batcher.queue_depth == 0 and batcher.stats.cancelled)
        finally:
            backend.release_all(batcher)

    run_async(main)
    assert backend.ran == [0.0, 1.0, 3.0]
    stats = stats_box[0]
    assert stats.cancelled == 1 and stats.success == 3 and stats.execution_count == 3


def test_group_member_past_its_timeout_is_not_run(
        run_async, new_batcher, fake_clock, wait_until) -> None:
    backend = Holding(0.0, 1.0)

    async def main() -> None:
        batcher = new_batcher(backend, fake_clock, max_batch_size=0, timeout_ms=10.0)
        try:
            futures = await group_running(batcher, backend, wait_until, [1.0, 2.0])
            fake_clock.advance(0.02)  # 1.0 ran long: 2.0 has waited 20 ms
            backend.holds[1.0].set()
            np.testing.assert_array_equal((await futures[1])["y"], [2.0])
            with pytest.raises(DeadlineExceededError, match="more than timeout_ms=10"):
                await futures[2]
        finally:
            backend.release_all(batcher)

    run_async(main)
    assert backend.ran == [0.0, 1.0]


def test_requests_of_one_loop_turn_travel_together(run_async, new_batcher, fake_backend) -> None:
    """An idle instance does not take the first request alone: what arrived in the same
    loop turn goes with it (unbatched: one group; batched: one batch)."""
    hops: list[int] = []
    for config in ({"max_batch_size": 0}, {"max_batch_size": 8, "batch_delay_ms": 0.0}):
        backend = fake_backend(batched=bool(config["max_batch_size"]))

        async def main() -> None:
            batcher = new_batcher(backend, **config)  # noqa: B023
            batcher._jobs = RecordingQueue(batcher._jobs, hops)  # type: ignore[assignment]
            futures = [batcher.submit({"x": request(1, float(v))}, 1) for v in range(3)]
            for v, outputs in enumerate(await asyncio.gather(*futures)):
                assert_answer(outputs, request(1, float(v)))

        run_async(main)
    assert hops == [3, 3]


def test_unbatched_queue_is_shared_between_idle_instances(
        run_async, new_batcher, fake_backend) -> None:
    barrier = threading.Barrier(2, timeout=5)
    backend = fake_backend(batched=False, barrier=barrier)

    async def main() -> None:
        batcher = new_batcher(backend, max_batch_size=0, instances=2)
        batcher._idle = 0  # hold dispatch until all four are queued
        futures = [batcher.submit({"x": request(1, float(v))}, 1) for v in range(4)]
        batcher._idle = 2
        batcher._dispatch()
        results = await asyncio.gather(*futures)
        for v, result in enumerate(results):
            assert_answer(result, request(1, float(v)))

    run_async(main)
    assert sorted(c["instance"] for c in backend.calls) == [0, 0, 1, 1]


# Failures


def test_failure_is_isolated_to_the_culprit(
        run_async, new_batcher, fake_backend, fake_clock, wait_until) -> None:
    gate = threading.Event()
    backend = fake_backend(gate=gate, fail_marker=13.0)
    stats_box: list[ModelStats] = []

    async def main() -> None:
        batcher = new_batcher(backend, fake_clock, max_batch_size=8, batch_delay_ms=FOREVER_MS)
        stats_box.append(batcher.stats)
        try:
            first = await blocked(batcher, backend, wait_until, rows=8)
            values = [0.0, 1.0, 2.0, 13.0, 4.0, 5.0, 6.0, 7.0]
            futures = [batcher.submit({"x": request(1, v)}, 1) for v in values]
            gate.set()
            await first
            results = await asyncio.gather(*futures, return_exceptions=True)
        finally:
            gate.set()
        for v, result in zip(values, results, strict=True):
            if v == 13.0:
                assert isinstance(result, BackendError)
                assert "ValueError: marker 13.0 in the batch" in result.message
                assert isinstance(result.__cause__, ValueError)
            else:
                assert_answer(result, request(1, v))

    run_async(main)
    # the blocker, the failed batch of 8, then each member alone
    assert backend.batch_sizes == [8, 8] + [1] * 8
    stats = stats_box[0]
    assert stats.fail == 1 and stats.success == 8


def test_failing_lone_request(run_async, new_batcher, fake_backend) -> None:
    backend = fake_backend(fail_marker=1.0)

    async def main() -> None:
        batcher = new_batcher(backend, max_batch_size=4, batch_delay_ms=0.0)
        with pytest.raises(BackendError, match=r"model 'm' raised ValueError"):
            await batcher.submit({"x": request(1, 1.0)}, 1)
        assert_answer(await batcher.submit({"x": request(1, 2.0)}, 1), request(1, 2.0))

    run_async(main)
    assert backend.batch_sizes == [1, 1]  # not re-run alone: it was alone


def test_failing_chunk_fails_the_whole_split_request(run_async, new_batcher, fake_backend) -> None:
    backend = fake_backend(fail_marker=99.0)
    x = np.arange(24, dtype=np.float32).reshape(8, 3)
    x[5, 1] = 99.0

    async def main() -> None:
        batcher = new_batcher(backend, max_batch_size=2, batch_delay_ms=0.0)
        with pytest.raises(BackendError, match=r"marker 99.0"):
            await batcher.submit({"x": x}, 8)
        await batcher.drain()

    run_async(main)


class WrongRows:
    """A backend breaking the batch contract: one row too few, or no dict at all."""

    platform, device, inputs, outputs = "fake", "cpu", (), ()

    def __init__(self, result: str) -> None:
        self.result = result

    def infer(self, inputs: dict[str, Any], instance: int) -> Any:
        if self.result == "rows":
            return {"y": inputs["x"][1:]}
        if self.result == "scalar":
            return {"y": np.float32(1.0)}
        return inputs["x"]


@pytest.mark.parametrize(("result", "message"), [
    ("rows", r"output 'y' has shape \[1, 3\] for a batch of 2 rows"),
    ("scalar", r"output 'y' has shape \[\] for a batch of 2 rows"),
    ("array", r"returned no outputs"),
])
def test_backend_breaking_the_batch_contract(
        run_async, new_batcher, result: str, message: str) -> None:
    async def main() -> None:
        batcher = new_batcher(WrongRows(result), max_batch_size=4, batch_delay_ms=0.0)
        with pytest.raises(BackendError, match=message):
            await batcher.submit({"x": request(2, 1.0)}, 2)

    run_async(main)


def test_queue_full(run_async, new_batcher, fake_backend, fake_clock, wait_until) -> None:
    gate = threading.Event()
    backend = fake_backend(gate=gate)

    async def main() -> None:
        batcher = new_batcher(backend, fake_clock, max_batch_size=4, batch_delay_ms=FOREVER_MS,
                       max_queue_size=3)
        try:
            first = await blocked(batcher, backend, wait_until, rows=4)
            queued = [batcher.submit({"x": request(1, i)}, 1) for i in range(3)]
            with pytest.raises(QueueFullError, match=r"has 3 requests waiting"):
                batcher.submit({"x": request(1, 9.0)}, 1)
            assert batcher.queue_depth == 3
            gate.set()
            await first
            fake_clock.advance(FOREVER_MS / 1000)  # three rows of four: let the delay pass
            batcher._dispatch()
            for i, outputs in enumerate(await asyncio.gather(*queued)):
                assert_answer(outputs, request(1, i))
            # room again
            assert_answer(await batcher.submit({"x": request(4, 5.0)}, 4), request(4, 5.0))
        finally:
            gate.set()

    run_async(main)
    assert not backend.seen(9.0)


def test_timeout_fails_a_request_that_waited_and_never_runs_it(
        run_async, new_batcher, fake_backend, fake_clock, wait_until) -> None:
    gate = threading.Event()
    backend = fake_backend(gate=gate)

    async def main() -> None:
        batcher = new_batcher(backend, fake_clock, max_batch_size=2, batch_delay_ms=FOREVER_MS,
                       timeout_ms=100.0)
        try:
            first = await blocked(batcher, backend, wait_until, rows=2)
            stale = batcher.submit({"x": request(1, 7.0)}, 1)
            fake_clock.advance(0.060)
            fresh = [batcher.submit({"x": request(1, v)}, 1) for v in (8.0, 9.0)]
            fake_clock.advance(0.050)  # stale waited 110 ms, the others 50 ms
            gate.set()
            await first
            with pytest.raises(DeadlineExceededError,
                               match=r"waited 110 ms in the queue, more than timeout_ms=100"):
                await stale
            assert_answer(await fresh[0], request(1, 8.0))
            assert_answer(await fresh[1], request(1, 9.0))
        finally:
            gate.set()

    run_async(main)
    assert not backend.seen(7.0)
    assert backend.seen(8.0)


def test_timeout_applies_to_unbatched_models(
        run_async, new_batcher, fake_backend, fake_clock, wait_until) -> None:
    gate = threading.Event()
    backend = fake_backend(gate=gate, batched=False)

    async def main() -> None:
        batcher = new_batcher(backend, fake_clock, max_batch_size=0, timeout_ms=10.0)
        try:
            first = batcher.submit({"x": np.ones(2)}, 1)
            await wait_until(lambda: backend.active == 1)
            stale = batcher.submit({"x": np.full(2, 7.0)}, 1)
            fake_clock.advance(0.011)
            gate.set()
            await first
            with pytest.raises(DeadlineExceededError):
                await stale
        finally:
            gate.set()

    run_async(main)
    assert not backend.seen(7.0)


def test_cancelled_future_is_skipped_and_counted(
        run_async, new_batcher, fake_backend, fake_clock, wait_until) -> None:
    gate = threading.Event()
    backend = fake_backend(gate=gate)
    stats_box: list[ModelStats] = []

    async def main() -> None:
        batcher = new_batcher(backend, fake_clock, max_batch_size=2, batch_delay_ms=FOREVER_MS)
        stats_box.append(batcher.stats)
        try:
            first = await blocked(batcher, backend, wait_until, rows=2)
            gone = batcher.submit({"x": request(1, 7.0)}, 1)
            kept = batcher.submit({"x": request(1, 8.0)}, 1)
            split = batcher.submit({"x": request(5, 6.0)}, 5)  # three chunks, all skipped
            gone.cancel()
            split.cancel()
            gate.set()
            await first
            assert_answer(await kept, request(1, 8.0))
            await batcher.drain()
        finally:
            gate.set()

    run_async(main)
    assert not backend.seen(7.0) and not backend.seen(6.0)
    assert stats_box[0].cancelled == 2  # one request, and one split into three chunks
    assert backend.batch_sizes == [2, 1]


def test_drain_finishes_queued_work_and_refuses_new(
        run_async, new_batcher, fake_backend, fake_clock, wait_until) -> None:
    gate = threading.Event()
    backend = fake_backend(gate=gate)

    async def main() -> None:
        batcher = new_batcher(backend, fake_clock, max_batch_size=4, batch_delay_ms=FOREVER_MS)
        try:
            first = await blocked(batcher, backend, wait_until, rows=4)
            queued = [batcher.submit({"x": request(1, i)}, 1) for i in range(3)]
            drain = asyncio.ensure_future(batcher.drain())
            await asyncio.sleep(0.01)
            assert not drain.done()
            with pytest.raises(ModelNotReadyError, match=r"model 'm' version 1 is unloading"):
                batcher.submit({"x": request(1, 9.0)}, 1)
            gate.set()
            # queued work goes out without waiting for the (endless) batch delay
            await asyncio.wait_for(drain, 10)
            assert first.done() and all(f.done() for f in queued)
            for i, f in enumerate(queued):
                assert_answer(f.result(), request(1, i))
        finally:
            gate.set()

    run_async(main)
    assert backend.batch_sizes == [4, 3]


def test_drain_when_idle_returns_at_once(run_async, new_batcher, fake_backend) -> None:
    async def main() -> None:
        batcher = new_batcher(fake_backend(), max_batch_size=4)
        await asyncio.wait_for(batcher.drain(), 1)

    run_async(main)


def test_fail_pending(run_async, new_batcher, fake_backend, fake_clock, wait_until) -> None:
    gate = threading.Event()
    backend = fake_backend(gate=gate)

    async def main() -> None:
        batcher = new_batcher(backend, fake_clock, max_batch_size=4, batch_delay_ms=FOREVER_MS)
        try:
            first = await blocked(batcher, backend, wait_until, rows=4)
            queued = [batcher.submit({"x": request(1, 9.0)}, 1) for _ in range(2)]
            batcher.fail_pending(ModelNotReadyError("shutting down"))
            for f in queued:
                with pytest.raises(ModelNotReadyError, match="shutting down"):
                    await f
            with pytest.raises(ModelNotReadyError):
                batcher.submit({"x": request(1, 1.0)}, 1)
            with pytest.raises(ModelNotReadyError):
                await first  # its client is answered now; the batch's late result is dropped
            gate.set()
        finally:
            gate.set()

    run_async(main)
    assert not backend.seen(9.0)


class Crash(BaseException):
    """Escapes the scheduler's per-batch ``except Exception``: a bug, not a model error."""


def test_crashed_worker_fails_pending_instead_of_hanging(
        run_async, new_batcher, fake_backend, fake_clock, wait_until, caplog) -> None:
    gate = threading.Event()
    backend = fake_backend(gate=gate, crash_marker=-1.0, crash=Crash("boom"))

    async def main() -> None:
        batcher = new_batcher(backend, fake_clock, max_batch_size=4, batch_delay_ms=FOREVER_MS)
        try:
            first = await blocked(batcher, backend, wait_until, rows=4)
            queued = [batcher.submit({"x": request(1, i)}, 1) for i in range(3)]
            drain = asyncio.ensure_future(batcher.drain())
            gate.set()
            for f in [first, *queued]:
                with pytest.raises(BackendError, match=r"scheduler of model 'm' crashed: Crash"):
                    await asyncio.wait_for(f, 10)
            await asyncio.wait_for(drain, 10)  # a drain does not hang on a dead worker
        finally:
            gate.set()
        with pytest.raises(ModelNotReadyError):
            batcher.submit({"x": request(1, 1.0)}, 1)

    run_async(main)
    assert "scheduler of model 'm' crashed" in caplog.text
    assert backend.batch_sizes == [4]


def test_two_instances_run_two_batches_at_once(run_async, new_batcher, fake_backend) -> None:
    # Each batch waits at a two-party barrier: it only passes if both run concurrently.
    barrier = threading.Barrier(2, timeout=10)
    backend = fake_backend(barrier=barrier)

    async def main() -> None:
        batcher = new_batcher(backend, max_batch_size=2, batch_delay_ms=0.0, instances=2)
        results = await asyncio.gather(batcher.submit({"x": request(2, 1.0)}, 2),
                                       batcher.submit({"x": request(2, 2.0)}, 2))
        assert_answer(results[0], request(2, 1.0))
        assert_answer(results[1], request(2, 2.0))

    run_async(main)
    assert backend.max_active == 2
    assert len(backend.threads) == 2
    assert sorted(c["instance"] for c in backend.calls) == [0, 1]


def test_one_instance_runs_one_batch_at_a_time(run_async, new_batcher, fake_backend) -> None:
    backend = fake_backend()

    async def main() -> None:
        batcher = new_batcher(backend, max_batch_size=2, batch_delay_ms=0.0)
        await asyncio.gather(*(batcher.submit({"x": request(2, i)}, 2) for i in range(10)))

    run_async(main)
    assert backend.max_active == 1 and len(backend.threads) == 1


def test_close_fails_what_is_queued_and_refuses_new(
        run_async, new_batcher, fake_backend, fake_clock, wait_until) -> None:
    gate = threading.Event()
    backend = fake_backend(gate=gate)

    async def main() -> None:
        batcher = new_batcher(backend, fake_clock, max_batch_size=4, batch_delay_ms=FOREVER_MS)
        try:
            first = await blocked(batcher, backend, wait_until, rows=4)
            queued = batcher.submit({"x": request(1, 9.0)}, 1)
            batcher.close()
            with pytest.raises(ModelNotReadyError, match=r"unloading; the request was not run"):
                await asyncio.wait_for(queued, 5)
            with pytest.raises(ModelNotReadyError):
                batcher.submit({"x": request(1, 1.0)}, 1)
            gate.set()
            assert_answer(await first, request(4, -1.0))  # the running batch finishes
        finally:
            gate.set()

    run_async(main)
    assert not backend.seen(9.0)


def test_fail_pending_answers_running_and_queued_requests(
        run_async, new_batcher, fake_backend) -> None:
    # Shutdown past its drain timeout: the client of a batch still running gets the error
    # now (the batch's late result is dropped), and so does every queued one.
    gate = threading.Event()
    backend = fake_backend(gate=gate)

    async def main() -> None:
        batcher = new_batcher(backend, max_batch_size=0)
        try:
            running = batcher.submit({"x": request(1, 1.0)}, 1)
            while not backend.calls:  # the instance thread has taken it
                await asyncio.sleep(0.005)
            queued = batcher.submit({"x": request(1, 2.0)}, 1)
            batcher.fail_pending(ModelNotReadyError("shutting down"))
            for future in (running, queued):
                with pytest.raises(ModelNotReadyError, match="shutting down"):
                    await future
            gate.set()
            await asyncio.sleep(0.05)  # the late result arrives and is ignored
        finally:
            gate.set()

    run_async(main)


def test_without_merging_each_request_runs_alone(
        run_async, new_batcher, fake_backend, fake_clock, wait_until) -> None:
    """Triton's default scheduler (config.pbtxt without dynamic_batching)."""
    gate = threading.Event()
    backend = fake_backend(gate=gate)

    async def main() -> None:
        batcher = new_batcher(backend, fake_clock, max_batch_size=8,
                              batch_delay_ms=FOREVER_MS, merge_requests=False)
        try:
            first = await blocked(batcher, backend, wait_until, rows=2)
            sent = [request(rows, i) for i, rows in enumerate((1, 3, 1, 12))]
            futures = [batcher.submit({"x": x}, len(x)) for x in sent]
            gate.set()
            await first
            for x, outputs in zip(sent, await asyncio.gather(*futures), strict=True):
                assert_answer(outputs, x)
        finally:
            gate.set()

    run_async(main)
    # the blocker, then each request alone (12 rows > max_batch_size: split, 8 + 4)
    assert backend.batch_sizes == [2, 1, 3, 1, 8, 4]
