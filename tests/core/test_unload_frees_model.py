"""An unloaded version's model is freed: the data plane's per-version caches (handler
runner, its batch policy, image stage) must not keep its backend alive."""

from __future__ import annotations

import gc
import threading
import weakref
from pathlib import Path
from typing import Any

from fastserve.core.dataplane import DataPlane
from fastserve.core.payloads import Payload
from fastserve.core.repository import ModelRepository

CFG = 'max_batch_size = 4\nbatch_delay_ms = 1\n[[inputs]]\nname = "x"\nshape = [-1, 3]\n'


def test_unloaded_model_served_on_predictions_is_freed(
        tmp_path: Path, make_model: Any, fake_loader: Any, wait_until: Any, load_all: Any,
        run_async: Any) -> None:
    make_model(tmp_path, "m", CFG)
    loader = fake_loader()
    plane = DataPlane(ModelRepository(tmp_path, loader))

    async def main() -> weakref.ref[Any]:
        await load_all(plane.repository)
        [answer] = await plane.predict("m", None, [Payload(b"[1, 2, 3]", "")])
        assert answer["s"] == 6.0  # 1 + 2 + 3: the handler ran on the backend
        backend = weakref.ref(loader.backends.pop(("m", "1")))
        await plane.repository.unload_model("m")
        # Its instance threads end (they hold the batcher while they run).
        await wait_until(lambda: not any(t.name.startswith("fastserve-m-")
                                         for t in threading.enumerate()))
        return backend

    backend = run_async(main)
    gc.collect()
    assert backend() is None  # was kept by the runner cached under its own backend
    plane.close()
