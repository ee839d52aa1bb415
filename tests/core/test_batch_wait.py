"""When a batched model waits batch_delay_ms, and when it does not (docs/batching.md).

The clock is fake: a request that completes without the clock moving was sent without
waiting for the delay. The delay is shorter than the window over which the batcher
remembers its clients (jobs.Clients), so letting it pass does not look like a pause.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np

from fastserve.core.jobs import Clients
from fastserve.core.model_config import ModelConfig
from fastserve.core.scheduler import DynamicBatcher

DELAY_MS = 100.0
assert DELAY_MS / 1000 < Clients.WINDOW / 2


async def expire(batcher: DynamicBatcher, clock: Any) -> None:
    """Let the batch delay pass (on the fake clock)."""
    clock.advance(DELAY_MS / 1000 + 0.001)
    batcher._dispatch()


def make(backend: Any, clock: Any, **config: Any) -> DynamicBatcher:
    batcher = DynamicBatcher("m", "1", backend, ModelConfig(name="m", **config),
                             asyncio.get_running_loop(), clock=clock)
    batcher.start()
    return batcher


def x(value: float, rows: int = 1) -> dict[str, np.ndarray]:
    return {"x": np.full((rows, 3), value, dtype=np.float32)}


async def first_waits(batcher: DynamicBatcher, clock: Any) -> None:
    """A first request waits the delay (until an answer, no client is known)."""
    future = batcher.submit(x(0.0), 1)
    await asyncio.sleep(0.01)
    assert not future.done() and batcher.queue_depth == 1
    await expire(batcher, clock)
    np.testing.assert_array_equal((await future)["y"], np.ones((1, 3)))


def test_one_request_at_a_time_does_not_wait_for_the_delay(
        run_async, fake_backend, fake_clock) -> None:
    backend = fake_backend()

    async def main() -> None:
        batcher = make(backend, fake_clock, max_batch_size=8, batch_delay_ms=DELAY_MS)
        try:
            await first_waits(batcher, fake_clock)
            for i in range(1, 6):  # one client known, and it is in: nobody to wait for
                outputs = await asyncio.wait_for(batcher.submit(x(i), 1), 5)
                np.testing.assert_array_equal(outputs["y"], np.full((1, 3), 2 * i + 1))
        finally:
            batcher.close()

    run_async(main)
    assert backend.batch_sizes == [1] * 6


def test_a_batch_waits_for_a_known_client_and_no_longer(run_async, fake_backend,
                                                          fake_clock) -> None:
    # Two clients seen at once: with one request in, the other client is still to come,
    # so the batch waits for it; once both are in, nobody else is known: it goes at once.
    backend = fake_backend()

    async def main() -> None:
        batcher = make(backend, fake_clock, max_batch_size=8, batch_delay_ms=DELAY_MS)
        try:
            pair = [batcher.submit(x(1.0), 1), batcher.submit(x(2.0), 1)]
            await asyncio.sleep(0.01)
            assert not any(f.done() for f in pair)  # nothing answered yet: nobody is known
            await expire(batcher, fake_clock)
            await asyncio.gather(*pair)
            first = batcher.submit(x(3.0), 1)
            await asyncio.sleep(0.01)
            assert not first.done()  # the second client is known, and not in yet
            second = batcher.submit(x(4.0), 1)
            outputs = await asyncio.wait_for(asyncio.gather(first, second), 5)  # clock still
            np.testing.assert_array_equal(outputs[1]["y"], np.full((1, 3), 9.0))
        finally:
            batcher.close()

    run_async(main)
    assert backend.batch_sizes == [2, 2]


def test_clients_known_lately() -> None:
    w = Clients.WINDOW
    clients = Clients()
    clients.arrived(1, now=0.0)
    assert not clients.all_in(1)  # no answer yet: nobody is known
    clients.answered = True
    assert clients.all_in(1)
    clients.arrived(3, now=0.5 * w)  # three at once
    assert not clients.all_in(2) and clients.all_in(3)
    clients.arrived(1, now=1.5 * w)  # the next window: the last one's three are known
    assert not clients.all_in(1)
    clients.arrived(1, now=2.5 * w)  # the one after: one client at most since
    assert clients.all_in(1)
    clients.arrived(3, now=2.6 * w)
    clients.arrived(1, now=10 * w)  # after a pause, known again from nothing
    assert clients.all_in(1)


def test_a_request_arriving_while_one_runs_waits(
        run_async, fake_backend, fake_clock, wait_until) -> None:
    # Two requests were in at once: while only one is in, the other client may come, so
    # the batch delay holds, also for a request that finds the model idle.
    gate = threading.Event()
    backend = fake_backend(gate=gate)

    async def main() -> None:
        batcher = make(backend, fake_clock, max_batch_size=2, batch_delay_ms=DELAY_MS)
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
            await expire(batcher, fake_clock)
            await behind
            after = batcher.submit(x(3.0), 1)
            await asyncio.sleep(0.01)
            assert not after.done()  # two were in at once lately: another may come
            await expire(batcher, fake_clock)
            await after
        finally:
            gate.set()
            batcher.close()

    gate.set()
    run_async(main)
    assert backend.batch_sizes == [1, 2, 1, 1]
