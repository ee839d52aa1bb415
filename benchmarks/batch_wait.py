"""Does batching cost a lone client anything? Issue 18 target 3, in one run.

One server per tree (this working tree, and --base if given), each serving one MLP
under two names: ``nobatch`` (max_batch_size 0) and ``batched`` (max 32, batch_delay_ms
2). wrk posts a [1,64] v2 JSON infer with 1 connection (one client, one request at a
time) and with 64, to each name in turn, round after round. Reports per tree the
median p50/p99 and req/s, as ratios batched / nobatch from the same rounds. Not a test.

Targets: 1 client, batched p50 within 1.15x of nobatch; 64 clients (``--heavy``, where
per-call overhead dominates) batched req/s >= 3x nobatch.

Run from the repo root:
    python benchmarks/batch_wait.py --base main --rounds 3 --duration 4 [--heavy]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import _harness as h
import torch
from ab import LAUNCHER, checkout

ROOT = Path(__file__).resolve().parent.parent
NAMES = {"nobatch": 0, "batched": 32}


def build_repository(root: Path, heavy: bool) -> None:
    torch.manual_seed(0)
    hidden = 2048 if heavy else 256
    layers: list[torch.nn.Module] = [torch.nn.Linear(64, hidden), torch.nn.ReLU()]
    if heavy:
        layers += [torch.nn.Linear(hidden, hidden), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(hidden, 10)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, torch.zeros(1, 64))
        for name, max_batch in NAMES.items():
            (root / name / "1").mkdir(parents=True)
            torch.jit.save(traced, str(root / name / "1" / "model.pt"))
            (root / name / "config.toml").write_text(
                f"max_batch_size = {max_batch}\nbatch_delay_ms = 2.0\n"
                '[[inputs]]\nname = "input__0"\ndatatype = "FP32"\nshape = [-1, 64]\n'
                '[[outputs]]\nname = "output__0"\ndatatype = "FP32"\nshape = [-1, 10]\n')


def counts(port: int, model: str) -> tuple[int, int]:
    """(rows run, model runs) of a model so far, from the v2 statistics extension."""
    stats = json.loads(h.request(port, "GET", f"/v2/models/{model}/stats")[1])
    model_stats = stats["model_stats"][0]
    return model_stats["inference_count"], model_stats["execution_count"]


def start(name: str, tree: Path, models: Path) -> h.Server:
    """ab.py's start, with gRPC off where the tree has it (its fixed default port would
    collide between the two servers and with any other on the box)."""
    port, mport = h.free_port(), h.free_port()
    argv = [sys.executable, "-c", LAUNCHER, str(tree), "--models", str(models), "--port",
            str(port), "--management-port", str(mport)]
    if "--grpc-port" in (tree / "fastserve" / "cli.py").read_text():
        argv += ["--grpc-port", "0"]
    return h.Server(name, argv, port, tree)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--base", help="git ref to measure beside the working tree")
    p.add_argument("--heavy", action="store_true", help="64->2048->2048->10, not 64->256->10")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=int, default=4, help="seconds per wrk run")
    p.add_argument("--conns", default="1,64", help="client counts, comma-separated")
    args = p.parse_args()
    conn_counts = [int(c) for c in args.conns.split(",")]
    with tempfile.TemporaryDirectory(prefix="fastserve-wait-") as tmp:
        models = Path(tmp) / "models"
        build_repository(models, args.heavy)
        body = Path(tmp) / "body.json"
        body.write_text(json.dumps({"inputs": [{"name": "input__0", "shape": [1, 64],
                                                "datatype": "FP32",
                                                "data": [0.01 * i for i in range(64)]}]}))
        trees = {"A": ROOT}
        if args.base:
            trees["B"] = Path(tmp) / "b"
            checkout(args.base, trees["B"])
        servers = {name: start(name, tree, models) for name, tree in trees.items()}
        runs: dict[tuple[str, str, int], list[dict]] = {}
        try:
            for srv in servers.values():
                srv.wait_until("GET", "/v2/health/ready", timeout=120)
                for model in NAMES:
                    h.wrk(srv.port, f"/v2/models/{model}/infer", 1, body, conns=8)
            for i in range(args.rounds):
                for tree in servers if i % 2 == 0 else reversed(servers):
                    for conns in conn_counts:
                        for model in NAMES:
                            before = counts(servers[tree].port, model)
                            r = h.wrk(servers[tree].port, f"/v2/models/{model}/infer",
                                      args.duration, body, conns=conns)
                            after = counts(servers[tree].port, model)
                            r["mean_batch"] = ((after[0] - before[0])
                                               / max(1, after[1] - before[1]))
                            if r["non_2xx"] or r["socket_errors"]:
                                print(f"{tree} {model} -c{conns}: {r['non_2xx']} non-2xx, "
                                      f"{r['socket_errors']} socket errors {r}", flush=True)
                                if r["non_2xx"]:
                                    raise SystemExit(servers[tree].log_tail())
                            runs.setdefault((tree, model, conns), []).append(r)
                print(f"round {i + 1}/{args.rounds} done", flush=True)
        finally:
            for srv in servers.values():
                srv.stop()
            if "B" in trees:
                subprocess.run(["git", "worktree", "remove", "--force", str(trees["B"])],
                               cwd=ROOT, capture_output=True)
    fields = ("rps", "p50_ms", "p99_ms", "mean_batch")
    med = {k: {m: statistics.median(r[m] for r in rs) for m in fields} for k, rs in runs.items()}
    print(f"\nCPU: {h.cpu_model()}; server on core {h.SERVER_CORE}, wrk on core {h.WRK_CORE}; "
          f"{'heavy' if args.heavy else 'light'} MLP; median of {args.rounds} x "
          f"{args.duration} s; A = working tree ({h.git_state(ROOT)}), B = {args.base}\n")
    print("| tree | conns | nobatch req/s | batched req/s | × | nobatch p50 ms | batched p50 ms "
          "| × | batched p99 ms | mean batch |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for tree in servers:
        for conns in conn_counts:
            n, b = med[(tree, "nobatch", conns)], med[(tree, "batched", conns)]
            print(f"| {tree} | {conns} | {n['rps']:,.0f} | {b['rps']:,.0f} | "
                  f"{b['rps'] / n['rps']:.2f} | {n['p50_ms']:.2f} | {b['p50_ms']:.2f} | "
                  f"{b['p50_ms'] / n['p50_ms']:.2f} | {b['p99_ms']:.2f} | "
                  f"{b['mean_batch']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
