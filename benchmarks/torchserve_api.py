"""TorchServe's /predictions vs KServe v2 on the same models, bodies and run.

One fastserve process (core 0, one torch thread) serves examples/models. wrk (core 1,
-c16, as the issue asks) posts, round-robin, the order reversed every other round:

- ts_png:   POST /predictions/digits_image   examples/samples/digit_7.png (image/png)
            -> the top-5 {label: probability} (image_classifier handler)
- v2_bytes: POST /v2/models/digits_image/infer, binary extension: the same PNG as one
            BYTES element (Inference-Header-Content-Length) -> the logits
- ts_json:  POST /predictions/digits          the 64 floats of digit_7.npy, a JSON list
- v2_json:  POST /v2/models/digits/infer      examples/samples/digits_v2.json (same image)

Before the load, each pair is checked to give the same answer (top-5 = softmax of the
v2 logits; the same logits). Reports req/s, p50/p99, server CPU per request, and per
pair the ratio /predictions over v2 (per round, then the median). Not a test.

Run from the repo root: python benchmarks/torchserve_api.py [--duration 10 --repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

import _harness as h
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "examples" / "samples"
RESULTS = ROOT / "benchmarks" / "results"
PAIRS = (("ts_png", "v2_bytes"), ("ts_json", "v2_json"))

def cases(tmp: Path) -> dict[str, tuple[str, Path, dict[str, str]]]:
    png = (SAMPLES / "digit_7.png").read_bytes()
    x = np.load(SAMPLES / "digit_7.npy")
    header = json.dumps({"inputs": [{"name": "input__0", "shape": [1], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": 4 + len(png)}}]},
                        separators=(",", ":")).encode()
    bodies = {
        "ts_png": ("/predictions/digits_image", png, {"Content-Type": "image/png"}),
        "v2_bytes": ("/v2/models/digits_image/infer", header + struct.pack("<I", len(png)) + png,
                     {"Content-Type": "application/octet-stream",
                      "Inference-Header-Content-Length": str(len(header))}),
        "ts_json": ("/predictions/digits",
                    json.dumps([round(float(v), 4) for v in x], separators=(",", ":")).encode(),
                    {"Content-Type": "application/json"}),
        "v2_json": ("/v2/models/digits/infer", (SAMPLES / "digits_v2.json").read_bytes(),
                    {"Content-Type": "application/json"}),
    }
    out = {}
    for name, (path, body, headers) in bodies.items():
        file = tmp / f"{name}.body"
        file.write_bytes(body)
        out[name] = (path, file, headers)
    return out


def post(port: int, path: str, file: Path, headers: dict[str, str]) -> object:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, file.read_bytes(), headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise SystemExit(f"{path}: HTTP {resp.status}: {data[:300]!r}")
        return json.loads(data)
    finally:
        conn.close()


def check_same_answers(port: int, all_cases: dict[str, tuple[str, Path, dict[str, str]]],
                       labels: dict[str, str]) -> None:
    got = {name: post(port, *case) for name, case in all_cases.items()}
    logits = np.asarray(got["v2_bytes"]["outputs"][0]["data"], np.float64)  # type: ignore[index]
    p = np.exp(logits - logits.max())
    p /= p.sum()
    top = np.argsort(-p, kind="stable")[:5]
    want = {labels[str(i)]: p[i] for i in top}
    ts_png = got["ts_png"]
    assert isinstance(ts_png, dict)
    if list(ts_png) != list(want) or not np.allclose(list(ts_png.values()),
                                                     list(want.values()), atol=1e-6):
        raise SystemExit(f"ts_png {ts_png} and v2_bytes {want} disagree")
    v2 = np.asarray(got["v2_json"]["outputs"][0]["data"])  # type: ignore[index]
    if not np.allclose(np.asarray(got["ts_json"]).ravel(), v2, atol=1e-5):
        raise SystemExit("ts_json and v2_json disagree")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--conns", type=int, default=16)
    args = ap.parse_args()
    load_before = os.getloadavg()
    labels = json.loads((ROOT / "examples/models/digits_image/labels.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        all_cases = cases(Path(tmp))
        port, mport = h.free_port(), h.free_port()
        srv = h.Server("fastserve", [sys.executable, "-m", "fastserve", "--models",
                                     str(ROOT / "examples" / "models"), "--port", str(port),
                                     "--management-port", str(mport), "--torch-threads", "1"],
                       port, ROOT)
        try:
            srv.wait_until("GET", "/v2/health/ready", timeout=120)
            check_same_answers(port, all_cases, labels)
            for path, file, headers in all_cases.values():
                h.wrk(port, path, args.warmup, file, conns=args.conns, headers=headers)
            runs = h.round_robin(srv, port, all_cases, args.duration, args.repeat,
                                 args.conns)
        finally:
            srv.stop()
    keys = ("rps", "p50_ms", "p99_ms", "cpu_us_per_req")
    rows = {name: {k: statistics.median(r[k] for r in rs) for k in keys}
            for name, rs in runs.items()}
    ratios = {f"{a}/{b}": [x["rps"] / y["rps"] for x, y in zip(runs[a], runs[b], strict=True)]
              for a, b in PAIRS}
    print(f"\nCPU: {h.cpu_model()}; server on core {h.SERVER_CORE} (1 torch thread), "
          f"wrk -c{args.conns} on core {h.WRK_CORE}; median of {args.repeat} x "
          f"{args.duration} s; load average before {load_before[0]:.2f}\n")
    print("| case | req/s | p50 ms | p99 ms | server CPU µs/req |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
              f"| {r['cpu_us_per_req']:,.0f} |")
    print()
    summary = {}
    for (a, b), (key, values) in zip(PAIRS, ratios.items(), strict=True):
        med = statistics.median(values)
        p99 = rows[a]["p99_ms"] / rows[b]["p99_ms"]
        cpu = rows[a]["cpu_us_per_req"] / rows[b]["cpu_us_per_req"]
        summary[key] = {"rps": med, "p99": p99, "cpu_per_req": cpu, "per_round": values}
        print(f"{key}: req/s {med:.3f} (per round {', '.join(f'{v:.3f}' for v in values)}), "
              f"p99 {p99:.3f}, server CPU per request {cpu:.3f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"torchserve_api-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({
        "cpu": h.cpu_model(), "versions": h.versions(), "git": h.git_state(ROOT),
        "load_before": load_before, "load_after": os.getloadavg(), "args": vars(args),
        "rows": rows, "ratios": summary, "runs": runs,
    }, indent=2))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
