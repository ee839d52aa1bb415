"""Where the CPU of one small v2 JSON infer goes, stage by stage, in-process (issue 18 T4).

hot_path.py's small_json case (POST /v2/models/mlp/infer, [1,64] FP32 of 17-digit numbers,
compare.py's unbatched mlp 64→256→10, one torch thread) is served here without sockets:
each stage of the request path is called on its own, many times, and its CPU time per
call printed; then the whole path, 32 requests in flight on 32 connected protocols
(_testbase's MockTransport), as wrk -c32 drives the real server. CPU is the process's
(every thread: the instance thread's too), so the hop to the instance thread and back
is counted where it is paid.

    python benchmarks/infer_breakdown.py [--n 3000]

Not a test. Figures move with the box's load; compare rows of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import compare
import numpy as np
import uvloop
from _rounds import connected_rounds

from fastserve.core.dataplane import DataPlane
from fastserve.core.repository import ModelRepository
from fastserve.core.validation import validate_inputs
from fastserve.frontends._v2_request import V2Body
from fastserve.frontends.kserve_v2 import KServeV2Frontend
from fastserve.http.router import Router
from fastserve.model_loader import TorchLoader

CONNS = 32


# (label, rows starting with A, rows starting with B): the best of each, A / B
RATIOS = [
    ("infer on a thread: instance_scope / inference mode per run",
     "backend.infer on a thread, inference mode instance", "backend.infer on a thread, "
     "inference mode per"),
    (f"whole request in situ ({CONNS} in flight) / HTTP + routing only",
     f"in situ, {CONNS} in flight: real", f"in situ, {CONNS} in flight: HTTP"),
]


def best_of(rows: list[tuple[str, float]], prefix: str) -> float:
    return min(us for name, us in rows if name.startswith(prefix))


def cpu_us(fn: Any, n: int) -> float:
    """CPU µs per call of ``fn()`` (the best of three runs of ``n`` calls)."""
    best = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, (time.process_time() - t0) / n * 1e6)
    return best


async def cpu_us_async(fn: Any, n: int) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        for _ in range(n):
            await fn()
        best = min(best, (time.process_time() - t0) / n * 1e6)
    return best


def on_a_thread(backend: Any, inputs: dict[str, Any], n: int) -> list[tuple[str, float]]:
    """backend.infer on a thread of its own, entering inference mode per run (as before
    instance_scope) and inside instance_scope (as an instance thread now runs it),
    alternated three times; the best of each."""
    best = {"per run": float("inf"), "instance_scope": float("inf")}

    def run(scoped: bool) -> None:
        with backend.instance_scope() if scoped else contextlib.nullcontext():
            us = cpu_us_thread(lambda: backend.infer(inputs, 0), n)
        key = "instance_scope" if scoped else "per run"
        best[key] = min(best[key], us)

    for _ in range(3):
        for scoped in (False, True):
            t = threading.Thread(target=run, args=(scoped,))
            t.start()
            t.join()
    return [(f"backend.infer on a thread, inference mode {k}", v) for k, v in best.items()]


def cpu_us_thread(fn: Any, n: int) -> float:
    """As cpu_us, in this thread's CPU time only."""
    for _ in range(n // 10):
        fn()
    t0 = time.thread_time()
    for _ in range(n):
        fn()
    return (time.thread_time() - t0) / n * 1e6


async def in_situ(plane: Any, front: Any, batcher: Any, body: bytes, answer: Any, raw: bytes,
                  n: int) -> list[tuple[str, float]]:
    """The whole request at CONNS in flight with one part after another swapped for its
    answer made beforehand; each difference is that part's cost where it runs (caches,
    loop turns and thread hops as under load), alternated three times, the best of each."""
    async def answered(*args: Any, **kwargs: Any) -> Any:
        return answer.outputs

    async def decoded_only(name: str, version: Any, v2body: Any) -> Any:
        v2body.tensors(plane.info(name, version))  # the body still decoded, nothing run
        return answer

    reply = front.encode(answer, V2Body(_Fake(body), plane.shared_memory).options,
                         plane.info("mlp", None).outputs)

    async def fixed_reply(request: Any) -> Any:
        return reply

    variants = {
        "real": {},
        "no scheduler/forward (infer answers at once)": {(batcher, "infer"): answered},
        "no data plane (decode only, no validate/run)": {(plane, "infer_body"): decoded_only},
        "HTTP + routing only (a fixed reply)": {(front, "infer"): fixed_reply},
    }
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(3):
        for name, swaps in variants.items():
            for (obj, attr), value in swaps.items():
                setattr(obj, attr, value)
            router = Router()
            front.register(router)
            cpu, _ = await whole_path(router, raw, max(1, n // CONNS), CONNS)
            best[name] = min(best[name], cpu)
            for obj, attr in swaps:
                delattr(obj, attr)  # the class's method again
    real = best["real"]
    out = [(f"in situ, {CONNS} in flight: {k}", v) for k, v in best.items()]
    parts = list(best.values())
    out += [("  => scheduler + hop + forward + outputs, in situ", parts[0] - parts[1]),
            ("  => data plane glue + validate (beyond the above)", parts[1] - parts[2]),
            ("  => v2 decode + encode + front-end glue", parts[2] - parts[3]),
            ("  => HTTP + routing + task (the rest)", parts[3])]
    assert real == parts[0]
    return out


class _Fake:
    headers: dict[str, bytes] = {}
    params = {"model": "mlp"}

    def __init__(self, body: bytes) -> None:
        self.body = body


def raw_request(body: bytes) -> bytes:
    return (b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


async def whole_path(router: Router, raw: bytes, rounds: int, conns: int
                     ) -> tuple[float, float]:
    """CPU µs per request and wall µs per request, ``conns`` in flight at a time."""
    one_round, protocols = connected_rounds(router, raw, conns)
    for _ in range(20):
        await one_round()
    best = (float("inf"), float("inf"))
    for _ in range(3):
        t0, w0 = time.process_time(), time.perf_counter()
        for _ in range(rounds):
            await one_round()
        n = rounds * conns
        best = min(best, ((time.process_time() - t0) / n * 1e6,
                          (time.perf_counter() - w0) / n * 1e6))
    for p in protocols:
        p.connection_lost(None)
    return best


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="fastserve-breakdown-") as tmp:
        root = Path(tmp)
        models = compare.build_models(root)
        repo_dir = root / "fastserve"
        shape, width, _ = compare.MODELS["mlp"]
        (repo_dir / "mlp" / "1").mkdir(parents=True)
        (repo_dir / "mlp" / "1" / "model.pt").write_bytes(models["mlp"].read_bytes())
        (repo_dir / "mlp" / "config.toml").write_text(
            f"max_batch_size = 0\n[[inputs]]\nname = \"input__0\"\ndatatype = \"FP32\"\n"
            f"shape = {[-1, *shape]}\n[[outputs]]\nname = \"output__0\"\ndatatype = \"FP32\"\n"
            f"shape = [-1, {width}]\n")
        repo = ModelRepository(repo_dir, TorchLoader("cpu", 1))
        repo.scan()
        repo.start_loading(asyncio.get_running_loop()).join(120)
        while repo.loading:
            await asyncio.sleep(0.01)
        plane = DataPlane(repo)
        front = KServeV2Frontend(plane)
        router = Router()
        front.register(router)
        x = np.random.default_rng(0).standard_normal((1, 64), dtype=np.float32)
        body = json.dumps({"inputs": [{"name": "input__0", "shape": [1, 64], "datatype": "FP32",
                                       "data": x.ravel().tolist()}]},
                          separators=(",", ":")).encode()
        raw = raw_request(body)
        target = repo.ready_version("mlp", None)
        backend, batcher = target.backend, target.batcher
        info = plane.info("mlp", None)

        class FakeRequest:  # what V2Body reads of an http Request
            headers: dict[str, bytes] = {}
            params = {"model": "mlp"}

        request = FakeRequest()
        request.body = body  # type: ignore[attr-defined]
        decoded = V2Body(request, plane.shared_memory).tensors(info)  # type: ignore[arg-type]
        inputs = decoded.inputs
        answer = await plane.infer_body("mlp", None, V2Body(request, plane.shared_memory))  # type: ignore[arg-type]
        body_obj = V2Body(request, plane.shared_memory)  # type: ignore[arg-type]
        body_obj.tensors(info)
        import torch  # noqa: PLC0415 - the forward alone, as the backend calls it

        from fastserve.backends.torch_values import inference_mode  # noqa: PLC0415

        tensor = torch.from_numpy(inputs["input__0"])

        def forward() -> None:
            with inference_mode():
                backend._forward(tensor)

        rows: list[tuple[str, float]] = [
            ("v2 body decode (JSON -> numpy, V2Body.tensors)",
             cpu_us(lambda: V2Body(request, plane.shared_memory).tensors(info), n)),  # type: ignore[arg-type]
            ("validate_inputs", cpu_us(lambda: validate_inputs(
                backend.inputs, inputs, info.batched, strict=backend.declared), n)),
            ("torch forward alone (inference_mode + scripted forward)", cpu_us(forward, n)),
            ("backend.infer (from_numpy, forward, .numpy())",
             cpu_us(lambda: backend.infer(inputs, 0), n)),
            *on_a_thread(backend, inputs, n),
            ("encode outputs (JSON response)", cpu_us(lambda: front.encode(
                answer, body_obj.options, info.outputs), n)),
        ]

        async def one_infer() -> None:
            await batcher.infer(inputs, 1)

        async def many_infers() -> None:
            await asyncio.gather(*[batcher.infer(inputs, 1) for _ in range(CONNS)])

        rows.append(("scheduler: infer (queue, run, answer), 1 in flight",
                     await cpu_us_async(one_infer, n)))
        rows.append((f"scheduler: same, {CONNS} in flight (per request)",
                     await cpu_us_async(many_infers, max(1, n // CONNS)) / CONNS))

        async def plane_call() -> None:
            await plane.infer_body("mlp", None, V2Body(request, plane.shared_memory))  # type: ignore[arg-type]

        rows.append(("DataPlane.infer_body (decode..outputs), 1 in flight",
                     await cpu_us_async(plane_call, n)))
        for conns in (1, CONNS):
            cpu, wall = await whole_path(router, raw, max(1, n // conns), conns)
            rows.append((f"whole request, {conns} in flight (wall {wall:.0f})", cpu))
        rows += await in_situ(plane, front, batcher, body, answer, raw, n)
        for version in repo.all_versions():
            version.batcher.close()  # type: ignore[union-attr]
        width = max(len(r[0]) for r in rows)
        print(f"{'stage':{width}}  CPU µs/call")
        for name, us in rows:
            print(f"{name:{width}}  {us:8.1f}")
        print("\nsame-run ratios (CPU µs, lower is better):")
        for label, a, b in RATIOS:
            mine, base = best_of(rows, a), best_of(rows, b)
            print(f"  {label}: {mine:.1f} / {base:.1f} = {mine / base:.2f}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--n", type=int, default=3000, help="calls per stage")
    uvloop.run(main(p.parse_args().n))
