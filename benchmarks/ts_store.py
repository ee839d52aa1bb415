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
archive), and the ratios fastserve / TorchServe. Not a test; needs Java 17, torchserve
and wrk.

Start to ready is what a user sees: from starting the command (``torchserve --start
--foreground ...`` / ``fastserve ...``) to the first 2xx answer of the benchmarked
request, polled every 10 ms; the median of ``--starts`` starts of each (alternating,
so neither side gets the warmer page cache), with the CPU time the server's processes
(TorchServe: the torchserve script, its JVM and worker) had spent by then, which a
busy machine does not inflate as it does wall time. Beside it, the floor on the same core:
a bare ``python`` that imports torch, loads the same model (eager: model.py + the state
dict from the .mar) and runs it once, timed to its "ready" line (not to its exit: the
interpreter's teardown is no part of a start). Last, one more fastserve start step by
step (benchmarks/ts_start_steps.py): where its start goes, in wall and CPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _harness as h
import ts_start_steps

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
    """fastserve as TorchServe runs above: HTTP inference and management, gRPC inference and
    management (its default is gRPC on), /metrics (on the inference port)."""
    port = h.free_port()
    argv = [sys.executable, "-m", "fastserve", "--model-store", str(store),
            "--models", f"{model}.mar", "--port", str(port),
            "--management-port", str(h.free_port()), "--grpc-port", str(h.free_port()),
            "--grpc-management-port", str(h.free_port()), "--log-level", "warning"]
    return h.Server("fastserve", argv, port, ROOT)


FLOOR = """
import io, sys, zipfile
import torch
if sys.argv[2] == "eager":
    zf = zipfile.ZipFile(sys.argv[1])
    scope = {}
    exec(zf.read("model.py"), scope)
    model = scope["TinyMLP"]()
    model.load_state_dict(torch.load(io.BytesIO(zf.read("eager.pth")), weights_only=True))
    model.eval()(torch.zeros(1, 8))
print("ready", flush=True)
sys.stdin.read()
"""


Start = tuple[float, float]  # (wall seconds, CPU seconds of the process tree) to ready


def floor_seconds(store: Path, model: str) -> Start:
    """Start of a bare python on the server core to torch imported and the model run."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    proc = subprocess.Popen(["taskset", "-c", h.SERVER_CORE, sys.executable, "-c", FLOOR,
                             str(store / f"{model}.mar"), model], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    line = proc.stdout.readline() if proc.stdout else ""
    seconds = time.perf_counter() - t0
    cpu = h.Server.cpu_of(proc.pid)
    proc.communicate("")
    if line.strip() != "ready":
        raise SystemExit(f"floor run failed (exit {proc.returncode})")
    return seconds, cpu


def ready_seconds(srv: h.Server, model: str) -> Start:
    """Wall time to the first answer, and the CPU time the server (its JVM and worker
    too) spent by then: the second holds on a busy machine, where the first does not."""
    wall = srv.wait_until("POST", f"/predictions/{model}", BODIES[model], timeout=300)
    return wall, srv.cpu_seconds()


def measure(srv: h.Server, model: str, seconds: int, conns: int, body: Path) -> dict:
    path = f"/predictions/{model}"
    ready, ready_cpu = ready_seconds(srv, model)
    h.wrk(srv.port, path, 2, body, conns=conns)  # warm-up (TorchServe's JVM needs it)
    run = h.wrk(srv.port, path, seconds, body, conns=conns)
    if run["non_2xx"] or run["socket_errors"]:
        raise SystemExit(f"{srv.name}: failed requests {run}\n{srv.log_tail()}")
    return {"rps": run["rps"], "p99_ms": run["p99_ms"], "p50_ms": run["p50_ms"],
            "ready_s": ready, "ready_cpu_s": ready_cpu, "rss_mb": srv.rss_mb()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--conns", type=int, default=16)
    p.add_argument("--model", default="eager", choices=sorted(BODIES))
    p.add_argument("--starts", type=int, default=3,
                   help="starts of each server for start to ready (the median is printed)")
    args = p.parse_args()
    results: dict[str, dict] = {}
    starters = (("torchserve", start_torchserve), ("fastserve", start_fastserve))
    with tempfile.TemporaryDirectory(prefix="ts-store-bench-") as tmp:
        store = build_store(Path(tmp))
        body = Path(tmp) / "body.json"
        body.write_bytes(BODIES[args.model])
        starts: dict[str, list[Start]] = {"torchserve": [], "fastserve": [], "floor": []}
        for i in range(args.starts - 1):  # the last start of each is the measured run's
            for name, start in starters:
                folder = Path(tmp) / f"{name}-{i}"
                folder.mkdir()
                srv = start(store, folder, args.model)
                try:
                    starts[name].append(ready_seconds(srv, args.model))
                finally:
                    srv.stop()
            starts["floor"].append(floor_seconds(store, args.model))
        starts["floor"].append(floor_seconds(store, args.model))
        for name, start in starters:
            folder = Path(tmp) / name
            folder.mkdir()
            srv = start(store, folder, args.model)
            try:
                results[name] = measure(srv, args.model, args.seconds, args.conns, body)
            finally:
                srv.stop()
            starts[name].append((results[name]["ready_s"], results[name]["ready_cpu_s"]))
        found = ts_start_steps.steps(store, args.model, BODIES[args.model])
    for name in results:
        results[name]["ready_s"] = statistics.median(w for w, _ in starts[name])
        results[name]["ready_cpu_s"] = statistics.median(c for _, c in starts[name])
        results[name]["ready_all_s"] = starts[name]
    floor = statistics.median(w for w, _ in starts["floor"])
    floor_cpu = statistics.median(c for _, c in starts["floor"])
    ts, fs = results["torchserve"], results["fastserve"]
    print(f"model {args.model}, {args.conns} connections, {args.seconds} s, one core each "
          f"({h.cpu_model()}); start to ready: median of {args.starts} starts")
    for name, r in results.items():
        print(f"  {name:10s} {r['rps']:9.0f} req/s  p50 {r['p50_ms']:7.2f} ms  p99 "
              f"{r['p99_ms']:7.2f} ms  ready {r['ready_s']:5.2f} s (CPU "
              f"{r['ready_cpu_s']:5.2f} s)  RSS {r['rss_mb']:6.0f} MB")
    ratios = {"req/s (x)": fs["rps"] / ts["rps"], "p99 (fastserve/torchserve)":
              fs["p99_ms"] / ts["p99_ms"], "start to ready (fastserve/torchserve)":
              fs["ready_s"] / ts["ready_s"], "start, CPU s to ready (fastserve/torchserve)":
              fs["ready_cpu_s"] / ts["ready_cpu_s"], "RSS (fastserve/torchserve)":
              fs["rss_mb"] / ts["rss_mb"],
              "floor: python + import torch + model (/torchserve)": floor / ts["ready_s"],
              "floor, CPU s (/torchserve)": floor_cpu / ts["ready_cpu_s"]}
    print(f"  {'floor':10s} python + import torch + load and run the model: {floor:5.2f} s "
          f"(CPU {floor_cpu:4.2f} s; median of {len(starts['floor'])})")
    for key, value in ratios.items():
        print(f"  {key:52s} {value:6.2f}")
    ts_start_steps.report(found)
    print(json.dumps({"results": results, "floor_s": starts["floor"], "ratios": ratios,
                      "fastserve_steps": found, "pid": os.getpid()}))


if __name__ == "__main__":
    main()
