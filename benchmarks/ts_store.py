"""TorchServe 0.12 vs fastserve on the same model store: the same .mar, the same requests.

    python benchmarks/ts_store.py [--seconds 5] [--conns 16] [--model eager]

Both servers get the archives that tests/ts_handlers/mar_build.py makes with the real
torch-model-archiver (``eager``: a state dict + --model-file behind a BaseHandler
subclass; ``headers``: a function handler), each pinned to core 0 (taskset,
OMP_NUM_THREADS=1; TorchServe: frontend JVM and its one Python worker together) with
wrk on core 1 at ``--conns`` connections. TorchServe runs with its loggers at WARN
(benchmarks/peers/ts_log4j2.xml), as PEERS.md measured it, and gets a warm-up run first
like fastserve. Printed, from one run: req/s and p99 of each, start to first answer,
RSS after the run (server and its child processes; each loads only the benchmarked
archive), and the ratios
fastserve / TorchServe. Not a test; needs Java 17, torchserve and wrk.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import _harness as h

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "tests" / "ts_handlers"
PEERS = Path(__file__).resolve().parent / "peers"
BODIES = {"eager": json.dumps([0.5, -1.0, 2.0, 0.25, 1.5, -0.75, 0.0, 3.0]).encode(),
          "headers": b'{"a": 1}'}


def build_store(folder: Path) -> Path:
    sys.path.insert(0, str(SOURCES))
    import mar_build

    store = folder / "model-store"
    mar_build.build(store)
    return store


def start_torchserve(store: Path, folder: Path, model: str) -> h.Server:
    port = h.free_port()
    config = folder / "config.properties"
    config.write_text(
        f"inference_address=http://127.0.0.1:{port}\n"
        f"management_address=http://127.0.0.1:{h.free_port()}\n"
        f"metrics_address=http://127.0.0.1:{h.free_port()}\n"
        f"grpc_inference_port={h.free_port()}\ngrpc_management_port={h.free_port()}\n"
        "default_workers_per_model=1\ninstall_py_dep_per_model=false\n"
        "disable_token_authorization=true\n"
        f"vmargs=-Dlog4j.configurationFile=file://{PEERS / 'ts_log4j2.xml'}\n")
    (folder / "tmp").mkdir()
    torchserve = shutil.which("torchserve") or str(Path(sys.executable).with_name("torchserve"))
    # TMPDIR: TorchServe keeps a pid file there and refuses to start beside another one.
    argv = ["env", f"TMPDIR={folder / 'tmp'}", f"PYTHONPATH={SOURCES / 'shim'}",
            torchserve, "--start", "--foreground", "--ncs", "--disable-token-auth",
            "--ts-config", str(config), "--model-store", str(store), "--models", f"{model}.mar"]
    return h.Server("torchserve", argv, port, folder)


def start_fastserve(store: Path, folder: Path, model: str) -> h.Server:
    port = h.free_port()
    argv = [sys.executable, "-m", "fastserve", "--model-store", str(store),
            "--models", f"{model}.mar",
            "--port", str(port), "--management-port", str(h.free_port()), "--grpc-port", "0",
            "--log-level", "warning"]
    return h.Server("fastserve", argv, port, ROOT)


def measure(srv: h.Server, model: str, seconds: int, conns: int, body: Path) -> dict:
    path = f"/predictions/{model}"
    ready = srv.wait_until("POST", path, BODIES[model], timeout=300)
    h.wrk(srv.port, path, 2, body, conns=conns)  # warm-up (TorchServe's JVM needs it)
    run = h.wrk(srv.port, path, seconds, body, conns=conns)
    if run["non_2xx"] or run["socket_errors"]:
        raise SystemExit(f"{srv.name}: failed requests {run}\n{srv.log_tail()}")
    return {"rps": run["rps"], "p99_ms": run["p99_ms"], "p50_ms": run["p50_ms"],
            "ready_s": ready, "rss_mb": srv.rss_mb()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--conns", type=int, default=16)
    p.add_argument("--model", default="eager", choices=sorted(BODIES))
    args = p.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="ts-store-bench-") as tmp:
        store = build_store(Path(tmp))
        body = Path(tmp) / "body.json"
        body.write_bytes(BODIES[args.model])
        for name, start in (("torchserve", start_torchserve), ("fastserve", start_fastserve)):
            folder = Path(tmp) / name
            folder.mkdir()
            srv = start(store, folder, args.model)
            try:
                results[name] = measure(srv, args.model, args.seconds, args.conns, body)
            finally:
                srv.stop()
    ts, fs = results["torchserve"], results["fastserve"]
    print(f"model {args.model}, {args.conns} connections, {args.seconds} s, one core each "
          f"({h.cpu_model()})")
    for name, r in results.items():
        print(f"  {name:10s} {r['rps']:9.0f} req/s  p50 {r['p50_ms']:7.2f} ms  p99 "
              f"{r['p99_ms']:7.2f} ms  ready {r['ready_s']:5.1f} s  RSS {r['rss_mb']:6.0f} MB")
    ratios = {"req/s (x)": fs["rps"] / ts["rps"], "p99 (fastserve/torchserve)":
              fs["p99_ms"] / ts["p99_ms"], "start to ready (fastserve/torchserve)":
              fs["ready_s"] / ts["ready_s"], "RSS (fastserve/torchserve)":
              fs["rss_mb"] / ts["rss_mb"]}
    for key, value in ratios.items():
        print(f"  {key:40s} {value:6.2f}")
    print(json.dumps({"results": results, "ratios": ratios, "pid": os.getpid()}))


if __name__ == "__main__":
    main()
