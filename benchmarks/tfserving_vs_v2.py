"""TF Serving row-format predict vs KServe v2 JSON infer: the same 32 rows, the same run.

One fastserve process (core 0, one torch thread) serves an MLP 64→256→10
(max_batch_size 32, so every request is one whole batch). wrk (core 1, -c32) posts,
in turn and round-robin:

- tf_row:   POST /v1/models/mlp:predict  {"instances": [[64 floats] x 32]}
- v2_json:  POST /v2/models/mlp/infer    {"inputs": [{"name", "shape": [32, 64],
            "datatype": "FP32", "data": <the same nested rows>}]}
- v2_flat:  the same, "data" flat (as tritonclient sends it)

Both answers are checked to agree before the load runs. Reports requests/s, p50/p99,
the server's CPU time per request, and the ratio tf_row / v2_json (per round, then the
median; and per server CPU second, which holds up better when others load the box).
Not a test.

Run from the repo root: python benchmarks/tfserving_vs_v2.py [--duration 10 --repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import _harness as h
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
ROWS = 32


def build_repository(root: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 10)).eval()
    folder = root / "mlp" / "1"
    folder.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(model, torch.zeros(1, 64)), str(folder / "model.pt"))
    (root / "mlp" / "config.toml").write_text(
        f"max_batch_size = {ROWS}\nbatch_delay_ms = 1.0\n"
        '[[inputs]]\nname = "input__0"\ndatatype = "FP32"\nshape = [-1, 64]\n'
        '[[outputs]]\nname = "output__0"\ndatatype = "FP32"\nshape = [-1, 10]\n')


def bodies(tmp: Path) -> dict[str, tuple[str, Path]]:
    rows = np.random.default_rng(0).random((ROWS, 64), dtype=np.float32).round(4).tolist()
    docs = {
        "tf_row": ("/v1/models/mlp:predict", {"instances": rows}),
        "v2_json": ("/v2/models/mlp/infer", {"inputs": [
            {"name": "input__0", "shape": [ROWS, 64], "datatype": "FP32", "data": rows}]}),
        "v2_flat": ("/v2/models/mlp/infer", {"inputs": [
            {"name": "input__0", "shape": [ROWS, 64], "datatype": "FP32",
             "data": [v for row in rows for v in row]}]}),
    }
    out = {}
    for name, (path, doc) in docs.items():
        file = tmp / f"{name}.json"
        file.write_bytes(json.dumps(doc, separators=(",", ":")).encode())
        out[name] = (path, file)
    return out


def check_same_answer(port: int, cases: dict[str, tuple[str, Path]]) -> None:
    answers = {}
    for name, (path, file) in cases.items():
        status, data = h.request(port, "POST", path, file.read_bytes(), timeout=30)
        if status != 200:
            raise SystemExit(f"{name}: HTTP {status}: {data[:300]!r}")
        doc = json.loads(data)
        got = doc["predictions"] if "predictions" in doc else doc["outputs"][0]["data"]
        answers[name] = np.asarray(got, dtype=np.float32).reshape(ROWS, 10)
    for name, arr in answers.items():
        if not np.allclose(arr, answers["tf_row"], rtol=1e-6, atol=1e-6):
            raise SystemExit(f"{name} and tf_row disagree")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--conns", type=int, default=32)
    args = ap.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "models"
        build_repository(repo)
        cases = bodies(Path(tmp))
        port, mport = h.free_port(), h.free_port()
        srv = h.Server("fastserve", [sys.executable, "-m", "fastserve", "--models", str(repo),
                                     "--port", str(port), "--management-port", str(mport),
                                     "--torch-threads", "1"], port, ROOT)
        try:
            srv.wait_until("GET", "/v2/health/ready", timeout=120)
            check_same_answer(port, cases)
            for path, file in cases.values():
                h.wrk(port, path, args.warmup, file, conns=args.conns)
            runs = h.round_robin(srv, port, cases, args.duration, args.repeat, args.conns)
        finally:
            srv.stop()
    keys = ("rps", "p50_ms", "p99_ms", "cpu_us_per_req")
    rows = {name: {k: statistics.median(r[k] for r in rs) for k in keys}
            for name, rs in runs.items()}
    # Ratio per round (same moment, same load), then the median of those.
    ratios = [tf["rps"] / v2["rps"] for tf, v2 in zip(runs["tf_row"], runs["v2_json"],
                                                      strict=True)]
    ratio = statistics.median(ratios)
    # Server CPU per request: robust when others on the box take the core from it.
    cpu_ratio = rows["v2_json"]["cpu_us_per_req"] / rows["tf_row"]["cpu_us_per_req"]
    print(f"\nCPU: {h.cpu_model()}; server on core {h.SERVER_CORE} (1 torch thread), "
          f"wrk -c{args.conns} on core {h.WRK_CORE}; median of {args.repeat} × "
          f"{args.duration} s; load average before {load_before[0]:.2f}\n")
    print(f"| case ({ROWS} rows of 64 FP32) | req/s | rows/s | p50 ms | p99 ms "
          "| server CPU µs/req |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['rps']:,.0f} | {r['rps'] * ROWS:,.0f} | {r['p50_ms']:.2f} "
              f"| {r['p99_ms']:.2f} | {r['cpu_us_per_req']:,.0f} |")
    print(f"\ntf_row / v2_json req/s = {ratio:.3f} (per round: "
          f"{', '.join(f'{x:.3f}' for x in ratios)}); per server CPU second: {cpu_ratio:.3f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"tfserving_vs_v2-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({
        "cpu": h.cpu_model(), "versions": h.versions(), "git": h.git_state(ROOT),
        "load_before": load_before, "load_after": os.getloadavg(), "args": vars(args),
        "rows": rows, "ratio_tf_row_over_v2_json": ratio, "ratios": ratios,
        "ratio_per_cpu": cpu_ratio, "runs": runs,
    }, indent=2))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
