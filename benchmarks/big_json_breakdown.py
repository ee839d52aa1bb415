"""Where one 2.9 MB v2 JSON request ([1,3,224,224] FP32, hot_path.py's big_json) goes,
measured in-process, stage by stage, and the floor that parsing alone sets (issue 18 T1).

Stages, each timed on its own (the best of --repeat runs: the cost without interference
from others on a shared box, where a median of a 3 ms run swings 2x), one core:
  receive     the body into its preallocated buffer, 64 KB reads (a memcpy stands in for
              the kernel's copy; the socket work both servers pay is not here)
  bytearray(n) allocating the buffer zero-filled, as the twin does (the compiled
              transport allocates it uninitialised; not in the sum)
  split       _codec.split_json_tensors: the walk and the C number parse into doubles
  skeleton    orjson.loads of what is left of the body
  to_array    the parsed doubles to a float32 array
  forward     compare.py's conv model on the tensor (torch.jit, one thread, no_grad)
  encode      the v2 JSON answer ([1,8] FP32)
and, for the floor: the number parser alone in GB/s of body and µs per request, and what
share of the bare server's per-request CPU (from hot_path.py, given as --bare-us) a server
that did nothing but parse could reach.

Not a test. Run from the repo root: python benchmarks/big_json_breakdown.py [--bare-us 468]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import compare
import numpy as np
import orjson
import torch

from fastserve import codec
from fastserve.core.tensors import load_tensor_json

READ = 64 * 1024
F32 = np.dtype(np.float32)


def timed(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    """The fewest seconds fn() took."""
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return min(runs)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--bare-us", type=float, default=468.0,
                   help="the bare server's CPU µs per big_json request (hot_path.py bare_big)")
    args = p.parse_args()
    torch.set_num_threads(1)
    x = np.random.default_rng(1).random((1, 3, 224, 224), dtype=np.float32)
    body = json.dumps({"inputs": [{"name": "input__0", "shape": list(x.shape),
                                   "datatype": "FP32", "data": x.ravel().tolist()}]},
                      separators=(",", ":")).encode()
    n = len(body)
    chunks = [body[i:i + READ] for i in range(0, n, READ)]

    def receive() -> bytearray:
        buf = bytearray(n)  # NOTE: bytearray(n) zero-fills; measured apart below
        view = memoryview(buf)
        pos = 0
        for chunk in chunks:
            view[pos:pos + len(chunk)] = chunk
            pos += len(chunk)
        return buf

    zeros = timed(lambda: bytearray(n), args.repeat)  # allocation + the fill
    raw = timed(lambda: bytearray().join(chunks), args.repeat)  # one copy, no fill
    stages: dict[str, float] = {"receive (copy into the buffer)": raw,
                                "bytearray(n): allocate + zero-fill": zeros}
    split = codec.split_json_tensors(body)
    assert split is not None, "the body takes the general path"
    skeleton, found = split
    stages["split: walk + number parse (C)"] = timed(lambda: codec.split_json_tensors(body),
                                                    args.repeat)
    stages["skeleton orjson.loads"] = timed(lambda: orjson.loads(skeleton), args.repeat)
    count = x.size

    parsed = [codec.split_json_tensors(body)[1][0][1] for _ in range(args.repeat)]
    stages["to_array: doubles to float32"] = timed(lambda: parsed.pop().to_array(F32, count),
                                                  args.repeat)
    doc = load_tensor_json(body, orjson.loads)
    arr = doc["inputs"][0]["data"].to_array(F32, count).reshape(x.shape)
    assert np.array_equal(arr, x), "the C parse differs from the source tensor"
    with tempfile.TemporaryDirectory() as tmp:
        model = torch.jit.load(str(compare.build_models(Path(tmp))["conv"])).eval()
    tensor = torch.from_numpy(arr)
    with torch.no_grad():
        model(tensor)
        stages["forward (conv, 1 thread)"] = timed(lambda: model(tensor), args.repeat)
        out = model(tensor).numpy()
    stages["encode the answer (orjson)"] = timed(lambda: orjson.dumps(
        {"model_name": "conv", "outputs": [{"name": "output__0", "datatype": "FP32",
                                            "shape": list(out.shape), "data": out}]},
        option=orjson.OPT_SERIALIZE_NUMPY), args.repeat)
    total = sum(v for k, v in stages.items() if not k.startswith("bytearray(n)"))
    print(f"body {n:,} bytes, {count:,} numbers ({n / count:.1f} bytes each); "
          f"best of {args.repeat}, one core\n")
    print("| stage | µs | share |\n|---|---|---|")
    for name, secs in stages.items():
        share = "–" if name.startswith("bytearray(n)") else f"{secs / total:.0%}"
        print(f"| {name} | {secs * 1e6:,.0f} | {share} |")
    print(f"| sum | {total * 1e6:,.0f} | |")
    parse = stages["split: walk + number parse (C)"]
    floor = args.bare_us / (args.bare_us + parse * 1e6)
    print(f"\nparser alone: {n / parse / 1e9:.2f} GB/s of body, {parse * 1e6:,.0f} µs a request."
          f"\nA server that received the body as the bare server does ({args.bare_us:.0f} µs "
          f"CPU a request) and then only parsed it would reach {floor:.2f}x the bare server;"
          f"\nwith everything above: {args.bare_us / (args.bare_us + total * 1e6):.2f}x "
          f"(goal 0.65x needs the whole request within {args.bare_us / 0.65:,.0f} µs).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
