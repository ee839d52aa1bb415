"""Dynamic batching benchmark: a model where per-call overhead dominates, 64 connections.

One fastserve process (core 0, one torch thread) serves the same 64→2048→2048→10 MLP
under four names: unbatched (max_batch_size 0) and batched with max 8, 16 and 32; wrk
(core 1, -c64) posts a [1,64] v2 JSON infer to each in turn, in the same run. Reports
requests/s and p50/p99, each as a ratio to the unbatched model. Not a test.

Run from the repo root: python benchmarks/batching.py [--duration 10 --repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import _harness as h
import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
VARIANTS = {"heavy_nobatch": 0, "heavy_b8": 8, "heavy_b16": 16, "heavy_b32": 32}


def build_repository(root: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 2048), torch.nn.ReLU(),
                                torch.nn.Linear(2048, 2048), torch.nn.ReLU(),
                                torch.nn.Linear(2048, 10)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.trace(model, torch.zeros(1, 64))
    for name, max_batch in VARIANTS.items():
        folder = root / name / "1"
        folder.mkdir(parents=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.save(scripted, str(folder / "model.pt"))
        (root / name / "config.toml").write_text(
            f"max_batch_size = {max_batch}\nbatch_delay_ms = 2.0\n"
            '[[inputs]]\nname = "input__0"\ndatatype = "FP32"\nshape = [-1, 64]\n'
            '[[outputs]]\nname = "output__0"\ndatatype = "FP32"\nshape = [-1, 10]\n')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--conns", type=int, default=64)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "models"
        build_repository(repo)
        body = Path(tmp) / "body.json"
        body.write_bytes(json.dumps({"inputs": [{
            "name": "input__0", "shape": [1, 64], "datatype": "FP32",
            "data": [0.01 * i for i in range(64)]}]}).encode())
        port, mport = h.free_port(), h.free_port()
        srv = h.Server("fastserve", [sys.executable, "-m", "fastserve", "--models", str(repo),
                                     "--port", str(port), "--management-port", str(mport),
                                     "--torch-threads", "1"], port, ROOT)
        try:
            srv.wait_until("GET", "/v2/health/ready", timeout=120)
            rows = {}
            for name in VARIANTS:
                path = f"/v2/models/{name}/infer"
                h.wrk(port, path, args.warmup, body, conns=args.conns)
                runs = [h.wrk(port, path, args.duration, body, conns=args.conns)
                        for _ in range(args.repeat)]
                bad = sum(r["non_2xx"] + r["socket_errors"] for r in runs)
                if bad:
                    raise SystemExit(f"{name}: {bad} failed requests\n{srv.log_tail()}")
                rows[name] = {k: statistics.median(r[k] for r in runs)
                              for k in ("rps", "p50_ms", "p99_ms")}
            stats = json.loads(h.request(port, "GET", "/v2/models/stats")[1])
        finally:
            srv.stop()
    base = rows["heavy_nobatch"]
    print(f"\nCPU: {h.cpu_model()}; server on core {h.SERVER_CORE} (1 torch thread), "
          f"wrk -c{args.conns} on core {h.WRK_CORE}; median of {args.repeat} × "
          f"{args.duration} s\n")
    print("| model | max_batch_size | req/s | × unbatched | p50 ms | p99 ms | p99 vs unbatched |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {VARIANTS[name]} | {r['rps']:,.0f} | {r['rps'] / base['rps']:.2f} "
              f"| {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['p99_ms'] / base['p99_ms']:.2f} |")
    sizes = {s["name"]: {b["batch_size"]: b["compute_infer"]["count"] for b in s["batch_stats"]}
             for s in stats["model_stats"]}
    for name in VARIANTS:
        hist = sizes.get(name, {})
        total = sum(hist.values()) or 1
        mean = sum(k * v for k, v in hist.items()) / total
        print(f"{name}: mean batch size {mean:.1f} over {total} batches")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"batching-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"cpu": h.cpu_model(), "rows": rows, "batch_sizes": sizes},
                              indent=2))
    print(f"\nresults: {out}")


if __name__ == "__main__":
    main()
