"""--workers 1 vs 2 on this 2-core machine: health and a small JSON infer, same run.

Each server is started unpinned (two workers need both cores) and wrk runs with one
thread; on a 2-core box wrk competes with the server, so the ratio is what a user of
such a box would see. Not a test. Run from the repo root:
    python benchmarks/workers.py [--duration 10 --repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import _harness as h

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "examples" / "models"
SAMPLE = ROOT / "examples" / "samples" / "digits_v2.json"
CASES = {"health": ("/v2/health/ready", None), "small_infer": ("/v2/models/digits/infer", SAMPLE)}


def ready_everywhere(port: int, timeout: float = 180.0) -> None:
    """Each connection may reach any worker: 30 ready answers in a row."""
    deadline, streak = time.monotonic() + timeout, 0
    while streak < 30:
        if time.monotonic() > deadline:
            raise SystemExit("workers never all ready")
        try:
            ok = h.request(port, "GET", "/v2/health/ready")[0] == 200
        except OSError:
            ok = False
        streak = streak + 1 if ok else 0
        if not ok:
            time.sleep(0.2)


def measure(workers: int, args: argparse.Namespace) -> dict:
    port, mport = h.free_port(), h.free_port()
    argv = [sys.executable, "-m", "fastserve", "--models", str(MODELS), "--port", str(port),
            "--management-port", str(mport), "--workers", str(workers)]
    srv = h.Server(f"workers{workers}", argv, port, ROOT, cores="0,1")
    try:
        ready_everywhere(port)
        out = {}
        for name, (path, body) in CASES.items():
            h.wrk(port, path, args.warmup, body, conns=args.conns)
            runs = [h.wrk(port, path, args.duration, body, conns=args.conns)
                    for _ in range(args.repeat)]
            if sum(r["non_2xx"] + r["socket_errors"] for r in runs):
                raise SystemExit(f"{name} with {workers} workers: failed requests\n"
                                 f"{srv.log_tail()}")
            out[name] = {k: statistics.median(r[k] for r in runs)
                         for k in ("rps", "p50_ms", "p99_ms")}
        out["rss_mb"] = srv.rss_mb()
        return out
    finally:
        srv.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--conns", type=int, default=32)
    args = ap.parse_args()
    results = {n: measure(n, args) for n in (1, 2)}
    print(f"\nCPU: {h.cpu_model()}; servers on cores 0,1, wrk -t1 -c{args.conns} on core 1 "
          f"(shared); median of {args.repeat} × {args.duration} s; load "
          f"{open('/proc/loadavg').read().split()[0]}\n")
    print("| case | 1 worker req/s | 2 workers req/s | ratio | p99 ms (1 → 2) |")
    print("|---|---|---|---|---|")
    for name in CASES:
        one, two = results[1][name], results[2][name]
        print(f"| {name} | {one['rps']:,.0f} | {two['rps']:,.0f} | {two['rps'] / one['rps']:.2f} "
              f"| {one['p99_ms']:.1f} → {two['p99_ms']:.1f} |")
    print(f"RSS: {results[1]['rss_mb']:.0f} MB → {results[2]['rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
