"""Python calls per request, the whole in-process path, by module: a figure that does not
move with the box's load (issue 18 T4; wrk's req/s and even CPU µs/request swing ±15%
between rounds on the shared box, more than one change to the scheduler is worth).

A v2 JSON infer of a [1, 64] FP32 tensor (the hot_path small_json shape) through the real
protocol, router, front-end, data plane and scheduler, on ``--conns`` connected
protocols at once (_testbase's MockTransport: no socket), as wrk -c32 drives a server;
the model is numpy (``x[:, :10]``), so the figure is fastserve's own Python work. Every
call is counted (Python functions and C functions called from Python, on the loop and on
the instance thread: sys.setprofile and threading.setprofile), per request, for a model
without a batch dimension (``mlp``'s shape) and one batched up to 32 rows.

    python benchmarks/request_calls.py [--conns 32] [--rounds 50]

To compare two trees, run it with PYTHONPATH set to each; the counts are exact.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import uvloop
from _rounds import connected_rounds

from fastserve.core.dataplane import DataPlane
from fastserve.core.repository import ModelRepository
from fastserve.frontends.kserve_v2 import KServeV2Frontend
from fastserve.http.router import Router
from fastserve.types import DataType, TensorSpec

PACKAGE = str(Path(sys.modules["fastserve"].__file__ or "").parent)
CONFIG = ('max_batch_size = {mb}\nbatch_delay_ms = 2\n[[inputs]]\nname = "x"\n'
          'datatype = "FP32"\nshape = [-1, 64]\n[[outputs]]\nname = "y"\ndatatype = "FP32"\n'
          'shape = [-1, 10]\n')
BODY = orjson.dumps({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32",
                                 "data": [i / 7 for i in range(64)]}]})
RAW = (b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
       b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)


class Backend:
    inputs = (TensorSpec("x", DataType.FP32, (-1, 64)),)
    outputs = (TensorSpec("y", DataType.FP32, (-1, 10)),)
    platform, device, declared = "numpy", "cpu", True

    def infer(self, inputs: dict[str, Any], instance: int) -> dict[str, Any]:
        return {"y": inputs["x"][:, :10]}

    def warmup(self) -> None: ...

    def close(self) -> None: ...


def where(frame: Any) -> str:
    name = frame.f_code.co_filename
    if name.startswith(PACKAGE):
        return "fastserve." + name[len(PACKAGE) + 1:].removesuffix(".py").replace("/", ".")
    return "other (stdlib, numpy, this script)"


async def count(max_batch: int, conns: int, rounds: int) -> tuple[float, Counter[str]]:
    counts: Counter[str] = Counter()

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call" or event == "c_call":
            counts[where(frame) if event == "call" else where(frame) + " (C calls)"] += 1

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "m"
        (folder / "1").mkdir(parents=True)
        (folder / "1" / "model.pt").write_bytes(b"")
        (folder / "config.toml").write_text(CONFIG.format(mb=max_batch))
        threading.setprofile(profile)  # the instance thread, started by the load
        repo = ModelRepository(Path(tmp), lambda *_: Backend())
        repo.scan()
        repo.start_loading(asyncio.get_running_loop()).join(10)
        while repo.loading:
            await asyncio.sleep(0.01)
        threading.setprofile(None)  # type: ignore[arg-type]
        router = Router()
        KServeV2Frontend(DataPlane(repo)).register(router)
        one_round, _ = connected_rounds(router, RAW, conns, expect=b'"data":[')
        for _ in range(20):  # warm: caches filled, as on a running server
            await one_round()
        counts.clear()
        sys.setprofile(profile)
        for _ in range(rounds):
            await one_round()
        sys.setprofile(None)
        for version in repo.all_versions():
            version.batcher.close()  # type: ignore[union-attr]
    n = rounds * conns
    return sum(counts.values()) / n, counts


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--conns", type=int, default=32, help="requests in flight")
    p.add_argument("--rounds", type=int, default=50)
    args = p.parse_args()
    print(f"fastserve from {PACKAGE}; {args.conns} in flight, {args.rounds} rounds")
    for label, max_batch in (("unbatched (max_batch_size 0)", 0), ("batched (max 32)", 32)):
        total, counts = uvloop.run(count(max_batch, args.conns, args.rounds))
        n = args.rounds * args.conns
        print(f"\n{label}: {total:.1f} calls/request")
        for module, calls in sorted(counts.items(), key=lambda kv: -kv[1]):
            if calls / n >= 0.05:
                print(f"  {calls / n:7.2f}  {module}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
