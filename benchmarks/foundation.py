"""Foundation benchmark: fastserve vs a bare uvloop + httptools server, in one run.

Measures start-up (process start → ready / first infer), RSS, and wrk throughput and
latency of health and small JSON infers, each server pinned to core 0 and wrk to core 1.
Figures are reported as ratios to the bare server measured in the same run; the peers of
PEERS.md are printed as references only (not measured here). Not a test.

Run from the repo root: python benchmarks/foundation.py [--duration 10 --warmup 2 --repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import _harness as h

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "examples" / "models"
SAMPLE = ROOT / "examples" / "samples" / "digits_v2.json"
RESULTS = ROOT / "benchmarks" / "results"

# Best peer per figure, from PEERS.md (the peers' reference measurements, not in this
# repository; 1 core, same kind of machine); printed
# as a reference, never measured by this script.
PEERS = {
    "health": ("TorchServe 0.12 /ping", 54_910),
    "small_infer": ("KServe 0.21 v1 (p99 18 ms)", 2_509),
    "start_s": ("FastAPI + uvicorn, to first answer", 1.9),
    "rss_mb": ("FastAPI + uvicorn, 270–350", 270),
}

# case: (server, method path, body?, what it is compared with)
CASES = {
    "fs_health": ("fastserve", "/v2/health/ready", False, "bare_get"),
    "bare_get": ("bare", "/", False, None),
    "fs_digits": ("fastserve", "/v2/models/digits/infer", True, "bare_post"),
    "fs_digits_ts": ("fastserve", "/v2/models/digits_ts/infer", True, "bare_post"),
    "bare_post": ("bare", "/", True, None),
}
# The bare uvloop + httptools row of PEERS.md (wrk-bound there), to normalise peer ratios.
PEERS_BARE = {"health": 116_630, "small_infer": 109_710}
PEER_OF = {"fs_health": "health", "fs_digits": "small_infer", "fs_digits_ts": "small_infer"}


def start_fastserve() -> tuple[h.Server, dict]:
    port, mport = h.free_port(), h.free_port()
    argv = [sys.executable, "-m", "fastserve", "--models", str(MODELS), "--port", str(port),
            "--management-port", str(mport), "--grpc-port", "0"]
    srv = h.Server("fastserve", argv, port, ROOT)
    body = SAMPLE.read_bytes()
    t = {"ready_s": srv.wait_until("GET", "/v2/health/ready")}
    t["rss_at_ready_mb"] = srv.rss_mb()
    t["first_infer_s"] = srv.wait_until("POST", "/v2/models/digits/infer", body)
    t["first_infer_ts_s"] = srv.wait_until("POST", "/v2/models/digits_ts/infer", body)
    return srv, t


def start_bare() -> tuple[h.Server, dict]:
    port = h.free_port()
    argv = [sys.executable, str(ROOT / "benchmarks" / "bare_server.py"), "--port", str(port)]
    srv = h.Server("bare", argv, port, ROOT)
    t = {"ready_s": srv.wait_until("GET", "/")}
    t["rss_at_ready_mb"] = srv.rss_mb()
    return srv, t


def measure(args: argparse.Namespace, servers: dict[str, h.Server], runs: dict,
            problems: list[str]) -> None:
    """Round-robin over the cases `repeat` times, so background noise hits them alike."""
    for rep in range(args.repeat):
        for case, (name, path, post, _) in CASES.items():
            srv = servers[name]
            body = SAMPLE if post else None
            try:
                warm = h.wrk(srv.port, path, args.warmup, body) if args.warmup > 0 else None
                cpu0 = srv.cpu_seconds()
                r = h.wrk(srv.port, path, args.duration, body)
                # Below ~95%: the server lost its core to other work (or idled waiting).
                r["server_cpu"] = (srv.cpu_seconds() - cpu0) / (r["duration_us"] / 1e6)
                r["rps_per_cpu"] = r["rps"] / r["server_cpu"] if r["server_cpu"] else 0.0
            except RuntimeError as exc:
                raise RuntimeError(f"{case}: {exc}\n{name}: {srv.state()}; log tail:\n"
                                   f"{srv.log_tail()}") from None
            r["warmup_non_2xx"] = warm["non_2xx"] if warm else 0
            runs[case].append(r)
            print(f"  [{rep + 1}/{args.repeat}] {case:13} {r['rps']:>10,.0f} req/s  "
                  f"p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  "
                  f"server CPU {r['server_cpu']:.0%}  "
                  f"non-2xx {r['non_2xx'] + r['warmup_non_2xx']}  "
                  f"socket errors {r['socket_errors']}", flush=True)
            if r["non_2xx"] + r["warmup_non_2xx"] or r["socket_errors"] or not r["requests"]:
                problems.append(_explain(case, srv, path, post, r))
            if not srv.alive():
                problems.append(f"{name} {srv.state()} during {case}\n"
                                f"{srv.log_tail()}")
                raise RuntimeError(problems[-1])


def _explain(case: str, srv: h.Server, path: str, post: bool, r: dict) -> str:
    try:
        status, reply = h.request(srv.port, "POST" if post else "GET", path,
                                  SAMPLE.read_bytes() if post else None, timeout=5)
        probe = f"a fresh request now gives HTTP {status}: {reply[:300]!r}"
    except OSError as exc:
        probe = f"a fresh request now fails: {exc!r}"
    return (f"{case}: {r['non_2xx']} non-2xx (+{r['warmup_non_2xx']} in warm-up), "
            f"{r['socket_errors']} socket errors (timeouts {r['timeout']}) of "
            f"{r['requests']} requests; {probe}\n{srv.log_tail()}")


def summarise(runs: dict, cpu: str, loop: str) -> dict:
    med = {}
    for case, rs in runs.items():
        if rs:
            med[case] = {k: statistics.median(r[k] for r in rs)
                         for k in ("rps", "p50_ms", "p99_ms", "server_cpu", "rps_per_cpu")}
            med[case].update(non_2xx=sum(r["non_2xx"] + r["warmup_non_2xx"] for r in rs),
                             socket_errors=sum(r["socket_errors"] for r in rs),
                             server=CASES[case][0], cpu=cpu, loop=loop, runs=len(rs))
    for case, m in med.items():
        base = CASES[case][3]
        if base in med:
            m["ratio_to_bare"] = m["rps"] / med[base]["rps"]
            m["ratio_to_bare_per_cpu"] = m["rps_per_cpu"] / med[base]["rps_per_cpu"]
        if case in PEER_OF:
            key = PEER_OF[case]
            m["ratio_to_peer"] = m["rps"] / PEERS[key][1]
            if base in med:  # (fastserve / bare here) / (peer / bare in PEERS.md)
                m["ratio_to_peer_bare_normalised"] = (
                    m["ratio_to_bare"] / (PEERS[key][1] / PEERS_BARE[key]))
    return med


def table(res: dict) -> str:
    fs, bare, med = res["fastserve"], res["bare"], res["median"]
    peer = lambda key: f"{PEERS[key][1]:,} ({PEERS[key][0]})"  # noqa: E731
    lines = [f"CPU: {res['cpu']} ({res['cores']} cores); loop: {res['loop']}; "
             f"wrk -t1 -c32, {res['args']['duration']:g} s after {res['args']['warmup']:g} s "
             f"warm-up, median of {res['args']['repeat']}; git {res['git']}; load average "
             f"{res['loadavg_before'][0]:.1f} before, {res['loadavg_after'][0]:.1f} after", "",
             "| case | req/s | p50 ms | p99 ms | server CPU | req per CPU-s | non-2xx "
             "| vs bare (same run): req/s; per CPU-s | vs best peer (PEERS.md, reference) |",
             "|---|---|---|---|---|---|---|---|---|"]
    labels = {"fs_health": "fastserve GET /v2/health/ready", "bare_get": "bare GET /",
              "fs_digits": "fastserve POST digits infer (batched)",
              "fs_digits_ts": "fastserve POST digits_ts infer (unbatched)",
              "bare_post": "bare POST same body"}
    for case, m in med.items():
        vs_bare = (f"{m['ratio_to_bare']:.3f}; {m['ratio_to_bare_per_cpu']:.3f}"
                   if "ratio_to_bare" in m else "–")
        vs_peer = (f"{m['ratio_to_peer']:.2f}× {peer(PEER_OF[case])}" if case in PEER_OF
                   else "–")
        if "ratio_to_peer_bare_normalised" in m:
            vs_peer += f"; {m['ratio_to_peer_bare_normalised']:.2f}× bare-normalised"
        lines.append(f"| {labels[case]} | {m['rps']:,.0f} | {m['p50_ms']:.2f} | "
                     f"{m['p99_ms']:.2f} | {m['server_cpu']:.0%} | {m['rps_per_cpu']:,.0f} | "
                     f"{m['non_2xx']} | {vs_bare} | {vs_peer} |")
    lines += ["", "| start-up and memory | fastserve | bare | fastserve / bare "
              "| best peer (PEERS.md, reference) |", "|---|---|---|---|---|"]
    for label, key, peer_key, f in [("start → ready (s)", "ready_s", "start_s", ".2f"),
                                    ("start → first digits infer (s)", "first_infer_s", None,
                                     ".2f"),
                                    ("RSS at ready (MB)", "rss_at_ready_mb", "rss_mb", ".0f"),
                                    ("RSS after load tests (MB)", "rss_after_mb", None, ".0f")]:
        a, b = fs.get(key), bare.get(key)
        if a is None:
            continue
        lines.append(f"| {label} | {a:{f}} | " + (f"{b:{f}} | {a / b:.1f}" if b else "– | –")
                     + f" | {peer(peer_key) if peer_key else '–'} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    p.add_argument("--warmup", type=int, default=2, help="wrk warm-up seconds per run (0: none)")
    p.add_argument("--repeat", type=int, default=3, help="runs per case; the median counts")
    args = p.parse_args()
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs 2 cores: server on core 0, wrk on core 1")
    ver = h.versions()
    res: dict = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpu": h.cpu_model(),
                 "cores": os.cpu_count(), "loop": f"uvloop {ver['uvloop']}", "versions": ver,
                 "git": h.git_state(ROOT), "args": vars(args), "peers_reference": PEERS,
                 "loadavg_before": os.getloadavg(),
                 "pinning": {"server": h.SERVER_CORE, "wrk": h.WRK_CORE, "OMP_NUM_THREADS": 1}}
    runs: dict = {case: [] for case in CASES}
    problems: list[str] = []
    servers: dict[str, h.Server] = {}
    try:
        # Start-up alone, one server at a time, before any load.
        servers["fastserve"], res["fastserve"] = start_fastserve()
        servers["bare"], res["bare"] = start_bare()
        print(f"fastserve ready {res['fastserve']['ready_s']:.2f} s, first infer "
              f"{res['fastserve']['first_infer_s']:.2f} s; bare ready "
              f"{res['bare']['ready_s']:.2f} s", flush=True)
        measure(args, servers, runs, problems)
        for name, srv in servers.items():
            res[name]["rss_after_mb"] = srv.rss_mb()
    except RuntimeError as exc:
        if str(exc) not in problems:
            problems.append(str(exc))
    finally:
        for name, srv in servers.items():
            res.setdefault(name, {})["exit_code"] = srv.stop(keep_log=bool(problems))
        res["runs"], res["problems"] = runs, problems
        res["loadavg_after"] = os.getloadavg()
        res["median"] = summarise(runs, res["cpu"], res["loop"])
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / f"foundation-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(json.dumps(res, indent=2))
    if "ready_s" in res.get("fastserve", {}) and "ready_s" in res.get("bare", {}):
        print("\n" + table(res) + "\n")
    print(f"results: {out.relative_to(ROOT)}")
    if problems:
        print("\n!!! FAILED: errors under load !!!\n" + "\n\n".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
