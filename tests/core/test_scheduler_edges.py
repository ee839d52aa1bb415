"""Edges of the scheduler a client can hit: a split request whose chunks' answers cannot
be joined, the chunks of an expired split request, a multipart /predictions body that
does not fit in the queue."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fastserve.core.dataplane import DataPlane
from fastserve.core.payloads import Payload
from fastserve.core.repository import ModelRepository
from fastserve.errors import BackendError, DeadlineExceededError, QueueFullError

FOREVER_MS = 3_600_000.0


class Widening:
    """A batched model whose output is as wide as its batch is long (a padded model):
    the answers of a split request's chunks differ in width."""

    inputs = outputs = ()
    declared = False

    def infer(self, inputs: dict[str, Any], instance: int) -> dict[str, Any]:
        rows = len(inputs["x"])
        return {"z": np.ones((rows, rows), dtype=np.float32)}

    def close(self) -> None:
        pass


def test_split_request_whose_chunks_cannot_be_joined_fails_and_does_not_hang(
        run_async: Any, new_batcher: Any) -> None:
    async def main() -> None:
        batcher = new_batcher(Widening(), max_batch_size=4, batch_delay_ms=0.0)
        split = batcher.submit({"x": np.zeros((5, 3), dtype=np.float32)}, 5)  # 4 + 1 rows
        with pytest.raises(BackendError, match="split into 2 chunks"):
            await asyncio.wait_for(split, 10)
        # The instance is free again, and the next request runs.
        outputs = await asyncio.wait_for(
            batcher.infer({"x": np.zeros((3, 3), dtype=np.float32)}, 3), 10)
        np.testing.assert_array_equal(outputs["z"], np.ones((3, 3), dtype=np.float32))

    run_async(main)  # and the loop saw no exception in a callback


def test_chunks_of_an_expired_split_request_are_not_counted_as_cancelled(
        run_async: Any, new_batcher: Any, fake_backend: Any, fake_clock: Any,
        wait_until: Any) -> None:
    gate = threading.Event()
    backend = fake_backend(gate=gate)

    async def main() -> Any:
        batcher = new_batcher(backend, fake_clock, max_batch_size=4,
                              batch_delay_ms=FOREVER_MS, timeout_ms=100.0)
        try:
            first = batcher.submit({"x": np.full((4, 3), -1.0, dtype=np.float32)}, 4)
            await wait_until(lambda: backend.active == 1)
            split = batcher.submit({"x": np.full((10, 3), 6.0, dtype=np.float32)}, 10)
            fake_clock.advance(0.110)  # its three chunks waited past timeout_ms
            gate.set()
            await first
            with pytest.raises(DeadlineExceededError):
                await split
            await batcher.drain()
        finally:
            gate.set()
        return batcher.stats

    stats = run_async(main)
    assert not backend.seen(6.0)
    assert stats.cancelled == 0  # nobody went away: the request expired
    assert (stats.success, stats.fail) == (1, 0)  # the blocking request alone ran


CFG = ('max_batch_size = 4\nbatch_delay_ms = 20\nmax_queue_size = 2\n'
       '[[inputs]]\nname = "x"\nshape = [-1, 3]\n')


def test_multipart_body_larger_than_the_queue_room_queues_none_of_its_parts(
        tmp_path: Path, make_model: Any, fake_loader: Any, load_all: Any,
        run_async: Any) -> None:
    make_model(tmp_path, "m", CFG)
    loader = fake_loader()
    plane = DataPlane(ModelRepository(tmp_path, loader))

    async def main() -> Any:
        await load_all(plane.repository)
        target = plane._ready("m", None)
        try:
            parts = [Payload(f"[{i}, 0, 0]".encode(), "") for i in range(3)]
            with pytest.raises(QueueFullError, match="max_queue_size"):
                await plane.predict("m", None, parts)
            assert target.batcher.queue_depth == 0  # no part left behind
            # Two parts fit: they run, and are answered in order.
            answers = await plane.predict("m", None, parts[:2])
            assert [a["s"] for a in answers] == [0, 1]
            return target.stats
        finally:
            plane.close()

    stats = run_async(main)
    assert stats.cancelled == 0  # the refused body's parts never counted as gone clients
    assert loader.backends[("m", "1")].batch_sizes == [2]


def test_infer_cancelled_while_its_batch_runs_is_answered_quietly(
        run_async: Any, new_batcher: Any, fake_backend: Any, wait_until: Any) -> None:
    """The batch's answer comes back to a cancelled future: no InvalidStateError in the
    loop's callback (run_async fails on one), the other member gets its answer, and the
    run counts as it ran (nothing counts as cancelled: it was no longer queued)."""
    gate = threading.Event()
    backend = fake_backend(gate=gate)

    async def main() -> Any:
        batcher = new_batcher(backend, max_batch_size=4, batch_delay_ms=0.0)
        try:
            gone = asyncio.ensure_future(batcher.infer({"x": np.full((1, 3), 1.0,
                                                                     dtype=np.float32)}, 1))
            kept = asyncio.ensure_future(batcher.infer({"x": np.full((2, 3), 2.0,
                                                                     dtype=np.float32)}, 2))
            await wait_until(lambda: backend.active == 1)
            gone.cancel()
            gate.set()
            outputs = await kept
            np.testing.assert_array_equal(outputs["y"], np.full((2, 3), 5.0))
            with pytest.raises(asyncio.CancelledError):
                await gone
            await batcher.drain()
        finally:
            gate.set()
        return batcher.stats

    stats = run_async(main)
    assert backend.batch_sizes == [3]
    assert (stats.success, stats.fail, stats.cancelled) == (2, 0, 0)


def test_instance_finishing_after_its_loop_closed_ends_quietly(
        fake_backend: Any, monkeypatch: Any) -> None:
    """Shutdown past its drain timeout: the loop closes while a model still runs; the
    instance's answer (call_soon_threadsafe on a closed loop) goes nowhere, quietly."""
    from fastserve.core.model_config import ModelConfig
    from fastserve.core.scheduler import DynamicBatcher

    crashes: list[Any] = []
    monkeypatch.setattr(threading, "excepthook", crashes.append)
    gate = threading.Event()
    backend = fake_backend(gate=gate)
    threads: list[threading.Thread] = []

    async def main() -> None:
        batcher = DynamicBatcher("m", "1", backend, ModelConfig(name="m", max_batch_size=2),
                                 asyncio.get_running_loop())
        batcher.start()
        threads.extend(batcher._instances._threads)
        running = batcher.submit({"x": np.ones((1, 3), dtype=np.float32)}, 1)
        while backend.active == 0:
            await asyncio.sleep(0.001)
        batcher.fail_pending(BackendError("shutting down"))
        batcher.close()
        with pytest.raises(BackendError):
            await running

    asyncio.run(main())
    gate.set()
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()
    assert crashes == []
    assert backend.batch_sizes == [1]
