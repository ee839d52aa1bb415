"""fastserve's gRPC front-end against its own HTTP binary path, with Triton's perf_analyzer.

One fastserve process on core 0 (`taskset -c 0`, OMP_NUM_THREADS=1) serves `mlp`
(64->256->10, [1,64] FP32) and `conv` ([1,3,224,224] FP32 = 602 KB -> [1,8]);
perf_analyzer on core 1 drives the same model with the same random tensor over
`-i grpc` (raw_input_contents) and `-i http` (binary data extension), alternating the
order every round. Also: gRPC's start-up and RSS cost, against a server started with
`--grpc-port 0` (time from exec to /v2/health/live, RSS once ready and after load).
The ceilings, in the same rounds on the same core: benchmarks/_grpc_echo.py (grpc.aio
answering fixed bytes) driven by perf_analyzer -i grpc, and benchmarks/bare_server.py
driven by wrk with the same body; each case's server CPU µs per call.

MLServer/KServe gRPC peers: benchmarks/grpc_peers.py.
Not a test. Run from the repo root: python benchmarks/grpc_vs_http.py [--scale 1 --repeat 2]
(Not named grpc.py: a module of that name here shadows grpcio for every script and test
that puts benchmarks/ on sys.path.)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import _harness as h

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
PERF_ANALYZER = os.environ.get("PERF_ANALYZER", "/work/shared/tools/perf_analyzer")
PERFA_ROOT = Path(os.environ.get("PERFA_HOME", Path.home() / ".cache" / "perfa")) / "trixie"
# name -> (input shape, output width, concurrency): PEERS.md's 32 for small infer; 4 for the
# 602 KB tensor (perf_analyzer 2.60 stalls and grows without bound at 8 over gRPC here).
PERF_ANALYZER_MAX_MB = 2000
MODELS = {"mlp": ((1, 64), 10, 32), "conv": ((1, 3, 224, 224), 8, 4)}
# perf_analyzer keeps what it sends (~150 MB/s with the 602 KB tensor: 5 s windows grew it
# to 18 GB, OOM-killed), so windows are short: (requests, at least ms) per model.
WINDOW = {"mlp": (4000, 2000), "conv": (100, 700)}


def build(root: Path) -> Path:
    import torch

    torch.manual_seed(0)
    nn = torch.nn
    nets = {"mlp": nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10)),
            "conv": nn.Sequential(nn.Conv2d(3, 8, 16, stride=16), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 8))}
    for name, net in nets.items():
        shape, width, _ = MODELS[name]
        folder = root / "models" / name
        (folder / "1").mkdir(parents=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.save(torch.jit.trace(net.eval(), torch.zeros(shape)),
                           str(folder / "1" / "model.pt"))
        dims = ", ".join(["-1", *map(str, shape[1:])])
        (folder / "config.toml").write_text(
            f'max_batch_size = 0\n[[inputs]]\nname = "input__0"\ndatatype = "FP32"\n'
            f'shape = [{dims}]\n[[outputs]]\nname = "output__0"\ndatatype = "FP32"\n'
            f"shape = [-1, {width}]\n")
    return root / "models"


def start(models: Path, grpc: bool) -> tuple[h.Server, int]:
    port, grpc_port = h.free_port(), h.free_port() if grpc else 0
    argv = [sys.executable, "-m", "fastserve", "--models", str(models), "--port", str(port),
            "--management-port", str(h.free_port()), "--grpc-port", str(grpc_port),
            "--log-level", "warning"]
    return h.Server("fastserve-grpc" if grpc else "fastserve", argv, port, ROOT), grpc_port


def perf(model: str, url: str, protocol: str, scale: float = 1.0, tries: int = 2) -> dict:
    """One perf_analyzer run; a run killed for its memory (it keeps what it sends and
    grows while it fails to stabilise on a busy box) is tried again, then reported as
    failed (rps NaN) rather than ending the benchmark."""
    for attempt in range(tries):
        try:
            return _perf(model, url, protocol, scale)
        except RuntimeError as exc:
            print(f"perf_analyzer {model}/{protocol} try {attempt + 1}: {str(exc)[:300]}",
                  file=sys.stderr, flush=True)
    nan = float("nan")
    return {"rps": nan, "p99_ms": nan, "p50_ms": nan, "failed": True}


def _perf(model: str, url: str, protocol: str, scale: float) -> dict:
    shape, _, conns = MODELS[model]
    return run_perf_analyzer([
        "-m", model, "-u", url, "-i", protocol,
        "--shape", "input__0:" + ",".join(map(str, shape)), "--concurrency-range",
        str(conns), "--measurement-mode", "count_windows", "--measurement-request-count",
        str(int(WINDOW[model][0] * scale)), "-p", str(int(WINDOW[model][1] * scale)),
        "--max-trials", "6", "-s", "999"])  # a shared box: take what it measures


def run_perf_analyzer(options: list[str], prefix: Sequence[str] = ()) -> dict:
    """perf_analyzer with ``options``, pinned to the client core (after ``prefix``, e.g.
    _harness.REALTIME): req/s, p99 and p50 of its CSV. RuntimeError when it fails, or
    is killed past 300 s or PERF_ANALYZER_MAX_MB."""
    name = f"pa-{os.getpid()}-{time.monotonic_ns()}.csv"
    cmd = [*prefix, "taskset", "-c", h.WRK_CORE, PERF_ANALYZER, *options, "-f", f"/tmp/{name}"]
    out = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while proc.poll() is None:
        # NOTE: perf_analyzer once grew to 18 GB here (OOM-killed); never let it near that.
        killed = ("past its deadline" if time.monotonic() > deadline else
                  f"over {PERF_ANALYZER_MAX_MB} MB" if _rss_mb(proc.pid) > PERF_ANALYZER_MAX_MB
                  else None)
        if killed:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"perf_analyzer killed: {killed}")
        time.sleep(0.2)
    out.seek(0)
    if proc.returncode != 0:
        raise RuntimeError(f"perf_analyzer failed ({proc.returncode}):\n{out.read()}")
    with open(PERFA_ROOT / "tmp" / name) as f:
        row = next(csv.DictReader(f))
    (PERFA_ROOT / "tmp" / name).unlink()
    return {"rps": float(row["Inferences/Second"]), "p99_ms": float(row["p99 latency"]) / 1e3,
            "p50_ms": float(row["p50 latency"]) / 1e3}


def binary_bodies(root: Path) -> dict[str, tuple[Path, dict[str, str]]]:
    """The v2 binary-extension body of each model's tensor, for wrk."""
    import numpy as np

    out = {}
    for model, (shape, _, _) in MODELS.items():
        x = np.random.default_rng(0).random(shape, dtype=np.float32)
        header = json.dumps({"inputs": [{
            "name": "input__0", "shape": list(shape), "datatype": "FP32",
            "parameters": {"binary_data_size": x.nbytes}}],
            "outputs": [{"name": "output__0", "parameters": {"binary_data": True}}]}).encode()
        path = root / f"{model}.body"
        path.write_bytes(header + x.tobytes())
        out[model] = (path, {"Content-Type": "application/octet-stream",
                             "Inference-Header-Content-Length": str(len(header))})
    return out


def _rss_mb(pid: int) -> float:
    return sum(h._vmrss_kb(p) for p in h._tree(pid)) * 1024 / 1e6


def startup(models: Path, grpc: bool, load: bool) -> dict:
    server, grpc_port = start(models, grpc)
    try:
        live = server.wait_until("GET", "/v2/health/live")
        grpc_s = grpc_live(server, grpc_port) if grpc else None
        server.wait_until("GET", "/v2/health/ready")
        time.sleep(0.5)
        ready_mb = server.rss_mb()
        if load:
            perf("mlp", f"127.0.0.1:{server.port}", "http", 0.25)
            if grpc:
                perf("mlp", f"127.0.0.1:{grpc_port}", "grpc", 0.25)
                perf("conv", f"127.0.0.1:{grpc_port}", "grpc", 0.25)
            perf("conv", f"127.0.0.1:{server.port}", "http", 0.25)
        return {"live_s": live, "grpc_live_s": grpc_s, "ready_mb": ready_mb,
                "loaded_mb": server.rss_mb()}
    finally:
        server.stop()


def _median(values: list[float]) -> float:
    """The median of the runs that did not fail (NaN when all failed)."""
    kept = [v for v in values if v == v]
    return statistics.median(kept) if kept else float("nan")


def grpc_live(server: h.Server, port: int, timeout: float = 60.0) -> float:
    """Seconds from exec until the gRPC port answers ServerLive."""
    import grpc
    from tritonclient.grpc import service_pb2 as pb

    live = f"/{pb.DESCRIPTOR.services_by_name['GRPCInferenceService'].full_name}/ServerLive"
    # NOTE: grpc waits ~1 s before reconnecting after a refused connection: keep it short.
    options = [("grpc.initial_reconnect_backoff_ms", 10), ("grpc.min_reconnect_backoff_ms", 10),
               ("grpc.max_reconnect_backoff_ms", 20)]
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        call = channel.unary_unary(live)
        while time.perf_counter() - server.t0 < timeout:
            try:
                call(b"", timeout=1.0)
                return time.perf_counter() - server.t0
            except grpc.RpcError:
                time.sleep(0.01)
    raise RuntimeError(f"gRPC port not live after {timeout} s\n{server.log_tail()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="perf_analyzer window size, times the default request count")
    parser.add_argument("--wrk-seconds", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--starts", type=int, default=3, help="start-ups timed per setting")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-grpc-"))
    models = build(tmp)
    server, grpc_port = start(models, grpc=True)
    # The ceilings, on the same core: fixed answers over gRPC and over HTTP.
    echo_port, bare_port = h.free_port(), h.free_port()
    echo = h.Server("grpc-echo", [sys.executable, str(BENCH / "_grpc_echo.py"), "--port",
                                  str(echo_port)], echo_port, ROOT)
    bare = h.Server("bare", [sys.executable, str(BENCH / "bare_server.py"), "--port",
                             str(bare_port)], bare_port, ROOT)
    runs: dict[str, list[dict]] = {}
    try:
        server.wait_until("GET", "/v2/health/ready")
        bare.wait_until("GET", "/")
        urls = {"http": f"127.0.0.1:{server.port}", "grpc": f"127.0.0.1:{grpc_port}"}
        bodies = binary_bodies(tmp)
        for model in MODELS:  # warm-up, and a check that both paths answer
            for protocol, url in urls.items():
                perf(model, url, protocol, 0.25)
        perf("mlp", f"127.0.0.1:{echo_port}", "grpc", 0.25)
        for i in range(args.repeat):
            order = [(m, p) for m in MODELS for p in (*urls, "wrk")]
            order += [("mlp", "echo"), ("mlp", "bare")]
            for model, protocol in order if i % 2 == 0 else order[::-1]:
                target = {"echo": echo, "bare": bare}.get(protocol, server)
                cpu = target.cpu_seconds()
                t0 = time.perf_counter()
                if protocol in ("wrk", "bare"):
                    r = h.wrk(target.port, f"/v2/models/{model}/infer", args.wrk_seconds,
                              bodies[model][0], conns=MODELS[model][2],
                              headers=bodies[model][1])
                    if r["non_2xx"] or r["socket_errors"]:
                        raise SystemExit(f"wrk: failed requests\n{target.log_tail()}")
                    r = {"rps": r["rps"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"]}
                    busy = args.wrk_seconds
                else:
                    url = f"127.0.0.1:{echo_port}" if protocol == "echo" else urls[protocol]
                    r = perf(model, url, "grpc" if protocol == "echo" else protocol,
                             args.scale)
                    busy = time.perf_counter() - t0
                # CPU per call: over perf_analyzer's whole run (its start included: a
                # slight underestimate), over wrk's timed seconds.
                r["cpu_us"] = (target.cpu_seconds() - cpu) / (r["rps"] * busy) * 1e6
                runs.setdefault(f"{model}/{protocol}", []).append(r)
    finally:
        server.stop()
        echo.stop()
        bare.stop()
    med = {k: {m: _median([r[m] for r in rs]) for m in ("rps", "p50_ms", "p99_ms", "cpu_us")}
           for k, rs in runs.items()}
    costs: dict[str, list[dict]] = {"off": [], "on": []}
    for i in range(args.starts):  # interleaved, so a busy moment weighs on both
        settings = (("off", False), ("on", True))
        for setting, grpc in settings if i % 2 == 0 else settings[::-1]:
            costs[setting].append(startup(models, grpc, load=(i == 0)))
    cost = {s: {"live_s": statistics.median(r["live_s"] for r in rs),
                "grpc_live_s": statistics.median(r["grpc_live_s"] or 0.0 for r in rs),
                "ready_mb": statistics.median(r["ready_mb"] for r in rs),
                "loaded_mb": rs[0]["loaded_mb"]} for s, rs in costs.items()}
    print(f"fastserve gRPC vs HTTP binary, server on core {h.SERVER_CORE}, client on core "
          f"{h.WRK_CORE}; median of {args.repeat} rounds. http: perf_analyzer -i http "
          "(binary data), wrk: the same binary body from wrk")
    print(f"{'case':<12}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'µs CPU':>8}{'/ http':>8}"
          f"{'/ wrk':>8}")
    for key, m in sorted(med.items()):
        model, protocol = key.split("/")
        http, wrk = med[f"{model}/http"]["rps"], med[f"{model}/wrk"]["rps"]
        print(f"{key:<12}{m['rps']:>10.0f}{m['p50_ms']:>9.2f}{m['p99_ms']:>9.2f}"
              f"{m['cpu_us']:>8.0f}{m['rps'] / http:>8.2f}{m['rps'] / wrk:>8.2f}")
    echo, bare, grpc = med["mlp/echo"], med["mlp/bare"], med["mlp/grpc"]
    print(f"ceilings (fixed answers, same core): grpc.aio echo {echo['rps']:.0f} req/s, "
          f"{echo['cpu_us']:.0f} µs CPU/call (perf_analyzer -i grpc); bare HTTP "
          f"{bare['rps']:.0f} req/s, {bare['cpu_us']:.0f} µs (wrk). fastserve gRPC small infer "
          f"is {grpc['rps'] / echo['rps']:.2f}x its ceiling, HTTP binary (wrk) "
          f"{med['mlp/wrk']['rps'] / bare['rps']:.2f}x; the echo alone is "
          f"{echo['rps'] / med['mlp/wrk']['rps']:.2f}x fastserve's HTTP binary rate")
    on, off = cost["on"], cost["off"]
    print(f"start to /v2/health/live: {off['live_s']:.3f} s with --grpc-port 0, "
          f"{on['live_s']:.3f} s with gRPC (+{on['live_s'] - off['live_s']:.3f} s); "
          f"gRPC ServerLive answered {on['grpc_live_s']:.3f} s after start "
          f"({on['grpc_live_s'] - on['live_s']:+.3f} s after HTTP liveness)")
    print(f"RSS once ready: {off['ready_mb']:.0f} MB vs {on['ready_mb']:.0f} MB "
          f"(+{on['ready_mb'] - off['ready_mb']:.1f} MB); after load: {off['loaded_mb']:.0f} "
          f"vs {on['loaded_mb']:.0f} MB (+{on['loaded_mb'] - off['loaded_mb']:.1f} MB)")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "median": med, "cost": costs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
