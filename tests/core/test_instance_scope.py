"""An instance thread holds its backend's ``instance_scope`` for its whole life (entered
once, not per run: torch's inference mode), and a backend without one runs as before."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np


def test_each_instance_thread_enters_the_scope_once_and_runs_inside_it(
        run_async, new_batcher, fake_backend) -> None:
    backend = fake_backend(batched=False)
    inside: set[str] = set()
    entered: list[str] = []
    ran_inside: list[bool] = []

    @contextlib.contextmanager
    def scope() -> Iterator[None]:
        name = threading.current_thread().name
        entered.append(name)
        inside.add(name)
        try:
            yield
        finally:
            inside.discard(name)

    infer = backend.infer

    def infer_recording(inputs: dict[str, Any], instance: int) -> dict[str, Any]:
        ran_inside.append(threading.current_thread().name in inside)
        return infer(inputs, instance)

    backend.instance_scope = scope
    backend.infer = infer_recording

    async def main() -> None:
        batcher = new_batcher(backend, max_batch_size=0, instances=2)
        for v in range(10):
            x = np.full((1, 3), float(v), dtype=np.float32)
            out = await batcher.submit({"x": x}, 1)
            np.testing.assert_array_equal(out["y"], x * 2 + 1)

    run_async(main)
    assert sorted(entered) == sorted(set(entered)) and len(entered) == 2  # once a thread
    assert ran_inside == [True] * 10
