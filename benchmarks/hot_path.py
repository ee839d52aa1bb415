"""Issue 18's hot-path targets, each as a ratio to its baseline measured in the same run.

| target | case | baseline (same run, same wrk) |
|---|---|---|
| 1 | 2.9 MB v2 JSON [1,3,224,224] FP32, -c8 | the bare server receiving that body (below) |
| 2 | [1,64] FP32 over the binary extension (binary in and out), -c32 | the same tensor as v2 JSON |
| 5 | RSS after the 2.9 MB JSON load | RSS at ready (idle) |
| 4 | GET /v2/health/ready, -c32 | the bare server answering a GET |
| 4 | [1,64] v2 JSON, -c32 (goal: ≥ 30k req/s, p99 ≤ 2 ms) | the bare server receiving that body |

The bare server (benchmarks/bare_server.py) parses each request with httptools and answers
a fixed 14-byte JSON reply; it never looks at a body: httptools skips it (no on_body
callback), so no byte of it reaches Python. fastserve must receive the same body into a
buffer, parse it and run the model, so the JSON ratios compare serving with the floor of
merely receiving. `bare_big_kept` is a second bare server (--keep-body) that keeps each
body as an httptools server does: every on_body chunk (a new bytes object) copied into a
buffer of its Content-Length. fastserve reads a large body straight into its buffer
(BufferedProtocol), one copy fewer, so neither bare server is exactly like it: they
bracket it.

One fastserve (models of compare.py: `mlp` 64→256→10 and `conv`, both unbatched, one
torch thread) and one bare server (benchmarks/bare_server.py), both pinned to core 0; wrk
pinned to core 1 alternates between the cases round after round (order reversed every
other round), so load from others on the box hits every case alike. Each run records the
server's CPU µs per request (from /proc) and its CPU share (below ~95%: it lost its core
to someone else, so read that round with care). Printed per case: the median and every
round; per target: the median ratio and the spread of the per-round ratios.

Not a test. Run from the repo root: python benchmarks/hot_path.py [--rounds 3 --duration 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _harness as h
import compare
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
BIN = {"Content-Type": "application/octet-stream"}

# case: (server, path, body key, wrk connections)
CASES = {
    "bare_get": ("bare", "/", None, 32),
    "health": ("fastserve", "/v2/health/ready", None, 32),
    "bare_small": ("bare", "/", "small_json", 32),
    "small_json": ("fastserve", "/v2/models/mlp/infer", "small_json", 32),
    "small_binary": ("fastserve", "/v2/models/mlp/infer", "small_binary", 32),
    "bare_big": ("bare", "/", "big_json", 8),
    "bare_big_kept": ("bare_kept", "/", "big_json", 8),
    "big_json": ("fastserve", "/v2/models/conv/infer", "big_json", 8),
}
# --explain: why docs/benchmarks.md's small JSON infer (compare.py: `mlp`, unbatched, a
# body of 17-digit random floats) is far below a plain harness on examples' `digits`
# (batched, max 32, with examples/samples/digits_v2.json: short numbers like 0.8125).
EXPLAIN = {
    "bare_small_short": ("bare", "/", "small_short", 32),
    "small_json_short": ("fastserve", "/v2/models/mlp/infer", "small_short", 32),
    "small_json_batched": ("fastserve", "/v2/models/mlp_batched/infer", "small_json", 32),
    "small_json_batched_short": ("fastserve", "/v2/models/mlp_batched/infer", "small_short",
                                 32),
}
# ratio: (case, baseline case, target or None)
RATIOS = {
    "4: health vs bare answering a GET": ("health", "bare_get", 0.8),
    "1: big JSON vs bare receiving it": ("big_json", "bare_big", 0.65),
    "big JSON vs bare copying the body into a buffer": ("big_json", "bare_big_kept", None),
    "bare copying the body vs bare skipping it": ("bare_big_kept", "bare_big", None),
    "2: small binary vs small JSON": ("small_binary", "small_json", 1.0),
    "4: small JSON vs bare receiving it": ("small_json", "bare_small", None),
    "short-number body vs 17-digit body (mlp)": ("small_json_short", "small_json", None),
    "batched (max 32) vs unbatched, 17-digit body": ("small_json_batched", "small_json",
                                                      None),
    "batched + short body vs compare.py's case": ("small_json_batched_short", "small_json",
                                                  None),
}


def bodies(root: Path) -> dict[str, tuple[Path, dict[str, str]]]:
    """compare.py's request bodies (same seeds), plus the small tensor as binary."""
    small = np.random.default_rng(0).standard_normal((1, 64), dtype=np.float32)
    big = np.random.default_rng(1).random((1, 3, 224, 224), dtype=np.float32)
    dumps = lambda doc: json.dumps(doc, separators=(",", ":")).encode()  # noqa: E731
    v2 = lambda x: dumps({"inputs": [{"name": "input__0", "shape": list(x.shape),  # noqa: E731
                                      "datatype": "FP32", "data": x.ravel().tolist()}]})
    header = dumps({"inputs": [{"name": "input__0", "shape": list(small.shape),
                                "datatype": "FP32",
                                "parameters": {"binary_data_size": small.nbytes}}],
                    "parameters": {"binary_data_output": True}})
    raw = {"small_json": (v2(small), {}), "big_json": (v2(big), {}),
           "small_short": ((ROOT / "examples/samples/digits_v2.json").read_bytes(), {}),
           "small_binary": (header + small.tobytes(),
                            {**BIN, "Inference-Header-Content-Length": str(len(header))})}
    out = {}
    for key, (data, headers) in raw.items():
        (root / key).write_bytes(data)
        out[key] = root / key, headers
    return out


def start(root: Path, files: dict) -> tuple[dict[str, h.Server], dict]:
    models = compare.build_models(root)
    compare.MODELS["mlp_batched"] = (*compare.MODELS["mlp"][:2], compare.BATCH)
    fs = compare.start_fastserve(root, {"mlp": models["mlp"], "conv": models["conv"],
                                        "mlp_batched": models["mlp"]})
    bares = {}
    for name, extra in (("bare", []), ("bare_kept", ["--keep-body"])):
        port = h.free_port()
        bares[name] = h.Server(name, [sys.executable, str(ROOT / "benchmarks" / "bare_server.py"),
                                      "--port", str(port), *extra], port, ROOT)
    fs.wait_until("GET", "/v2/health/ready", timeout=120)
    for bare in bares.values():
        bare.wait_until("GET", "/", timeout=60)
    for case, (server, path, key, _) in CASES.items():
        if server == "fastserve" and key is not None:  # every request answers 200 first
            file, headers = files[key]
            status, reply = h.request(fs.port, "POST", path, file.read_bytes(), timeout=60,
                                      headers=headers)
            if status != 200:
                raise SystemExit(f"{case}: HTTP {status}: {reply[:300]!r}")
    return {"fastserve": fs, **bares}, {"rss_idle_mb": fs.rss_mb()}


def write(root: Path) -> None:
    """The bodies, and the model repository start() serves, without serving it."""
    root.mkdir(parents=True, exist_ok=True)
    files = bodies(root)
    models = compare.build_models(root)
    compare.MODELS["mlp_batched"] = (*compare.MODELS["mlp"][:2], compare.BATCH)
    srv = compare.start_fastserve(root, {"mlp": models["mlp"], "conv": models["conv"],
                                         "mlp_batched": models["mlp"]})
    srv.stop()
    for file, headers in files.values():
        print(file, " ".join(f"--header {k}:{v}" for k, v in headers.items()))
    print(root / "fastserve")


def run_case(servers: dict, files: dict, case: str, seconds: int) -> dict:
    server, path, key, conns = CASES[case]
    srv = servers[server]
    file, headers = files[key] if key is not None else (None, {})
    cpu0 = srv.cpu_seconds()
    r = h.wrk(srv.port, path, seconds, file, conns=conns, headers=headers)
    ok = r["requests"] - r["non_2xx"]
    r["cpu_us_per_req"] = (srv.cpu_seconds() - cpu0) / ok * 1e6 if ok else 0.0
    r["server_cpu"] = (srv.cpu_seconds() - cpu0) / (r["duration_us"] / 1e6)
    if r["non_2xx"] or r["socket_errors"] or not ok:
        raise SystemExit(f"{case}: {r['non_2xx']} non-2xx, {r['socket_errors']} socket "
                         f"errors\n{srv.log_tail()}")
    return r


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=int, default=3, help="seconds per wrk run")
    p.add_argument("--cases", default=",".join(CASES),
                   help=f"comma-separated subset of {', '.join(CASES)}")
    p.add_argument("--write", type=Path, metavar="DIR",
                   help="measure nothing: write the model repository and bodies to DIR (for "
                        "ab.py --models DIR/fastserve --body DIR/<body>)")
    p.add_argument("--explain", action="store_true",
                   help="also the cases that explain docs/benchmarks.md's small-infer figure")
    args = p.parse_args()
    if args.write:
        write(args.write)
        return 0
    if args.explain:
        CASES.update(EXPLAIN)
        args.cases += "," + ",".join(EXPLAIN)
    for case in set(CASES) - set(args.cases.split(",")):
        del CASES[case]
    res: dict = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "git": h.git_state(ROOT),
                 "cpu": h.cpu_model(), "args": vars(args), "load_before": os.getloadavg()}
    runs: dict[str, list[dict]] = {case: [] for case in CASES}
    with tempfile.TemporaryDirectory(prefix="fastserve-hot-path-") as tmp:
        files = bodies(Path(tmp))
        servers, res["rss"] = start(Path(tmp), files)
        try:
            for case in CASES:  # one warm-up each
                run_case(servers, files, case, 1)
            order = list(CASES)
            for i in range(args.rounds):
                for case in order if i % 2 == 0 else order[::-1]:
                    r = run_case(servers, files, case, args.duration)
                    r["load1"] = os.getloadavg()[0]
                    runs[case].append(r)
                    print(f"[{i + 1}/{args.rounds}] {case:13} {r['rps']:>9,.0f} req/s  p99 "
                          f"{r['p99_ms']:7.2f} ms  {r['cpu_us_per_req']:8.1f} µs CPU/req  "
                          f"server CPU {r['server_cpu']:4.0%}  load {r['load1']:.1f}",
                          flush=True)
            res["rss"]["rss_after_mb"] = servers["fastserve"].rss_mb()
        finally:
            for srv in servers.values():
                srv.stop()
    res["load_after"] = os.getloadavg()
    res["runs"] = runs
    res["median"] = {c: {k: statistics.median(r[k] for r in rs)
                         for k in ("rps", "p99_ms", "cpu_us_per_req", "server_cpu")}
                     for c, rs in runs.items()}
    res["ratios"] = {}
    for name, (case, base, target) in RATIOS.items():
        if case not in runs or base not in runs:
            continue
        pairs = list(zip(runs[case], runs[base], strict=True))
        per_round = [a["rps"] / b["rps"] for a, b in pairs]
        # The same ratio from server CPU per request (baseline's / case's): what the case
        # would reach with a core to itself, steadier than req/s on a shared box.
        by_cpu = [b["cpu_us_per_req"] / a["cpu_us_per_req"] for a, b in pairs]
        res["ratios"][name] = {"median": statistics.median(per_round), "rounds": per_round,
                               "cpu_median": statistics.median(by_cpu), "target": target}
    rss = res["rss"]
    rss["growth_mb"] = rss["rss_after_mb"] - rss["rss_idle_mb"]
    rss["big_json_ran"] = "big_json" in runs
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"hot_path-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(res, indent=2, default=str))
    print(report(res))
    print(f"results: {out.relative_to(ROOT)}")
    return 0


def report(res: dict) -> str:
    loads = [r["load1"] for rs in res["runs"].values() for r in rs]
    lines = [f"\n{res['cpu']}; git {res['git']}; {res['args']['rounds']} rounds x "
             f"{res['args']['duration']} s; 1-min load {min(loads):.1f}–{max(loads):.1f}", "",
             "| case | req/s (median) | per round | p99 ms | CPU µs/req | server CPU |",
             "|---|---|---|---|---|---|"]
    for case, m in res["median"].items():
        rounds = ", ".join(f"{r['rps']:,.0f}" for r in res["runs"][case])
        lines.append(f"| {case} | {m['rps']:,.0f} | {rounds} | {m['p99_ms']:.2f} | "
                     f"{m['cpu_us_per_req']:,.1f} | {m['server_cpu']:.0%} |")
    lines += ["", "| target | ratio (median of rounds) | per round | spread | by CPU/req | goal |",
              "|---|---|---|---|---|---|"]
    for name, r in res["ratios"].items():
        goal = f"≥ {r['target']}" if r["target"] else "–"
        lines.append(f"| {name} | {r['median']:.2f} | "
                     f"{', '.join(f'{x:.2f}' for x in r['rounds'])} | "
                     f"{min(r['rounds']):.2f}–{max(r['rounds']):.2f} | {r['cpu_median']:.2f} | "
                     f"{goal} |")
    small = res["median"].get("small_json")
    if small:
        lines.append(f"| 4: small JSON infer, one core | {small['rps']:,.0f} req/s, p99 "
                     f"{small['p99_ms']:.2f} ms | | | {1e6 / small['cpu_us_per_req']:,.0f} req/s "
                     "a core | ≥ 30,000 req/s, p99 ≤ 2 ms |")
    rss = res["rss"]
    if rss["big_json_ran"]:
        lines.append(f"| 5: RSS after the big JSON load − idle | {rss['growth_mb']:+.0f} MB "
                     f"({rss['rss_idle_mb']:.0f} → {rss['rss_after_mb']:.0f}) | | | | ≤ +60 MB |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
