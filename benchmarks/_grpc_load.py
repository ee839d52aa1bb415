"""A small gRPC load generator: `--concurrency` calls in flight on one HTTP/2 channel,
each sending the same pre-serialized request bytes (no message objects on the client),
for `--warmup` s untimed then `--seconds` s timed. Prints one JSON line: rps, p50_ms,
p99_ms, calls, errors (the first error's text). One process on one core (the caller pins
it with taskset): the same client for every server compared, so its own cost is the same
for all of them (its ceiling: the bare echo server row of grpc_peers.py).

python benchmarks/_grpc_load.py 127.0.0.1:8001 /inference.GRPCInferenceService/ModelInfer \
    request.bin --concurrency 32 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import grpc
import uvloop


async def load(target: str, method: str, payload: bytes, concurrency: int, warmup: float,
               seconds: float) -> dict:
    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        call = channel.unary_unary(method)  # bytes in, bytes out
        await call(payload, timeout=30)  # connected, and the server answers at all
        latencies: list[float] = []
        errors: list[str] = []
        clock = time.perf_counter
        start = clock() + warmup
        end = start + seconds

        async def worker() -> None:
            while True:
                t0 = clock()
                if t0 >= end:
                    return
                try:
                    await call(payload, timeout=30)
                except grpc.aio.AioRpcError as exc:
                    errors.append(f"{exc.code().name}: {exc.details()}")
                    continue
                if t0 >= start:
                    latencies.append(clock() - t0)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    latencies.sort()
    n = len(latencies)
    pick = lambda q: latencies[min(n - 1, int(q * n))] * 1e3 if n else float("nan")  # noqa: E731
    return {"rps": n / seconds, "p50_ms": pick(0.50), "p99_ms": pick(0.99), "calls": n,
            "errors": len(errors), "first_error": errors[0] if errors else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("target")
    p.add_argument("method")
    p.add_argument("request", type=Path, help="the serialized request message")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--seconds", type=float, default=5.0)
    args = p.parse_args()
    result = uvloop.run(load(args.target, args.method, args.request.read_bytes(),
                             args.concurrency, args.warmup, args.seconds))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
