"""A/B: this working tree against a git ref, two servers on one box, alternating runs.

How the second session measured each change (docs/benchmarks.md lists them): on this
shared 2-core box one run of a case swings ±20%, so one server per tree, both started,
both pinned to core 0 (only one is under load at a time), and wrk on core 1 alternates
between them round after round. Reported per tree: the median req/s, p99 and server CPU
µs per request (from /proc), and the ratios A/B; CPU per request moves less with the
box's mood than req/s does.

B's tree is `git worktree add` of --base in a temporary folder, its C codec built in
place; each server imports fastserve from its own tree (the editable install's finder
is bypassed). Not a test. Run from the repo root:

    python benchmarks/ab.py --base HEAD~1 --path /v2/models/digits_ts/infer \\
        --body examples/samples/digits_v2.json --rounds 5 --duration 6
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _harness as h

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

# Imports fastserve from the tree given as argv[1], not from the editable install.
LAUNCHER = (
    "import sys; root = sys.argv.pop(1); "
    "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f).lower() "
    "and 'editable' not in type(f).__module__.lower()]; "
    "sys.path.insert(0, root); sys.argv[0] = 'fastserve'; "
    "from fastserve.cli import main; sys.exit(main())"
)


def checkout(ref: str, into: Path) -> None:
    subprocess.run(["git", "worktree", "add", "--detach", str(into), ref], cwd=ROOT,
                   check=True, capture_output=True)
    built = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=into,
                           capture_output=True, text=True)
    if built.returncode:
        raise SystemExit(f"building the codec of {ref} failed:\n{built.stderr[-2000:]}")


def start(name: str, tree: Path, models: Path) -> h.Server:
    port, mport = h.free_port(), h.free_port()
    argv = [sys.executable, "-c", LAUNCHER, str(tree), "--models", str(models), "--port",
            str(port), "--management-port", str(mport)]
    if "--grpc-port" in (tree / "fastserve" / "cli.py").read_text():
        argv += ["--grpc-port", "0"]  # off: two servers (and others' on the box) would clash
    return h.Server(name, argv, port, tree)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--base", required=True, help="git ref of tree B (A: the working tree)")
    p.add_argument("--path", default="/v2/models/digits_ts/infer")
    p.add_argument("--body", type=Path, default=ROOT / "examples/samples/digits_v2.json",
                   help="POST this file (none: GET)")
    p.add_argument("--get", action="store_true", help="GET --path instead of POSTing --body")
    p.add_argument("--models", type=Path, default=ROOT / "examples/models")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=int, default=6, help="seconds per wrk run")
    p.add_argument("--conns", type=int, default=32)
    p.add_argument("--header", action="append", default=[], metavar="NAME:VALUE",
                   help="an extra request header (repeatable), e.g. "
                        "Inference-Header-Content-Length:123 for a v2 binary body")
    args = p.parse_args()
    headers = dict(item.split(":", 1) for item in args.header)
    body = None if args.get else args.body.resolve()
    ready = args.path if args.get else "/v2/health/ready"
    with tempfile.TemporaryDirectory(prefix="fastserve-ab-") as tmp:
        tree_b = Path(tmp) / "b"
        checkout(args.base, tree_b)
        servers = {"A": start("A", ROOT, args.models.resolve()),
                   "B": start("B", tree_b, args.models.resolve())}
        runs: dict[str, list[dict]] = {"A": [], "B": []}
        try:
            for srv in servers.values():
                srv.wait_until("GET", ready, timeout=120)
                if body is not None:  # every model loaded and answering, then a warm-up
                    srv.wait_until("POST", args.path, body.read_bytes(), timeout=120,
                                   headers=headers)
                h.wrk(srv.port, args.path, 2, body, conns=args.conns, headers=headers)
            for i in range(args.rounds):
                for name in ("A", "B") if i % 2 == 0 else ("B", "A"):
                    srv = servers[name]
                    cpu0 = srv.cpu_seconds()
                    r = h.wrk(srv.port, args.path, args.duration, body, conns=args.conns,
                              headers=headers)
                    ok = r["requests"] - r["non_2xx"]
                    r["cpu_us_per_req"] = (srv.cpu_seconds() - cpu0) / ok * 1e6 if ok else 0
                    if r["non_2xx"] or r["socket_errors"]:
                        raise SystemExit(f"{name}: failed requests\n{srv.log_tail()}")
                    runs[name].append(r)
                    print(f"[{i + 1}/{args.rounds}] {name} {r['rps']:>9,.0f} req/s  p99 "
                          f"{r['p99_ms']:6.2f} ms  {r['cpu_us_per_req']:6.1f} µs CPU/request",
                          flush=True)
        finally:
            for srv in servers.values():
                srv.stop()
            subprocess.run(["git", "worktree", "remove", "--force", str(tree_b)], cwd=ROOT,
                           capture_output=True)
    med = {name: {k: statistics.median(r[k] for r in rs)
                  for k in ("rps", "p99_ms", "cpu_us_per_req")} for name, rs in runs.items()}
    a, b = med["A"], med["B"]
    print(f"\nA = working tree ({h.git_state(ROOT)}), B = {args.base}; median of "
          f"{args.rounds} x {args.duration} s, {args.path}\n"
          f"req/s A {a['rps']:,.0f}  B {b['rps']:,.0f}  A/B {a['rps'] / b['rps']:.3f}\n"
          f"p99   A {a['p99_ms']:.2f} ms  B {b['p99_ms']:.2f} ms  A/B "
          f"{a['p99_ms'] / b['p99_ms']:.3f}\n"
          f"CPU/request A {a['cpu_us_per_req']:.1f} µs  B {b['cpu_us_per_req']:.1f} µs  A/B "
          f"{a['cpu_us_per_req'] / b['cpu_us_per_req']:.3f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"ab-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                               "git": h.git_state(ROOT), "cpu": h.cpu_model(),
                               "median": med, "runs": runs}, indent=2, default=str))
    print(f"results: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
