"""fastserve's gRPC small infer against MLServer 1.7.1's and KServe 0.21's gRPC servers.

Same model (mlp: 64->256->10 TorchScript, seed 0), same [1,64] FP32 tensor in
`raw_input_contents`, one run: the servers are started together, each pinned to core 0
(taskset, OMP_NUM_THREADS=1, one worker, one torch thread), and driven in turn, round
robin (order reversed on odd rounds), by one load generator on core 1:
benchmarks/_grpc_load.py, `--concurrency` calls in flight on one HTTP/2 channel (perf_analyzer
cannot drive the peers: it needs Triton's ModelConfig RPC, which neither has). Each
server's answer is checked against local torch first. `echo` is benchmarks/_grpc_echo.py, a
grpc.aio server answering fixed bytes: the ceiling of grpc.aio and of this client together.
Each run records the server's CPU µs per call; the median of `--repeat` rounds counts.

Peers: MLServer with benchmarks/peers/mlserver_runtime.py (as compare.py), KServe with
benchmarks/peers/kserve_model.py (its per-call INFO log line off), each installed in its
own venv under --cache the way compare.py installs them (reused when present).

Not named grpc.py: a module of that name in benchmarks/ shadows grpcio for every script
and test that puts benchmarks/ on sys.path. Not a test.
Run from the repo root: python benchmarks/grpc_peers.py [--seconds 5 --repeat 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import _harness as h
import compare
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
INFER = "/inference.GRPCInferenceService/ModelInfer"
compare.PEER_PACKAGES.setdefault("kserve", ["kserve==0.21.0", "numpy"])
PEERS = ("mlserver", "kserve")


def build(root: Path) -> tuple[Path, np.ndarray, np.ndarray, bytes]:
    """The model file, its input and local answer, and the serialized ModelInferRequest."""
    from tritonclient.grpc import service_pb2 as pb

    torch.manual_seed(0)
    nn = torch.nn
    net = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10)).eval()
    path = root / "mlp.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(net, torch.zeros(1, 64)), str(path))
    x = np.random.default_rng(0).random((1, 64), dtype=np.float32)
    with torch.inference_mode():
        want = net(torch.from_numpy(x)).numpy()
    request = pb.ModelInferRequest(model_name="mlp")
    request.inputs.add(name="input__0", datatype="FP32", shape=[1, 64])
    request.raw_input_contents.append(x.tobytes())
    return path, x, want, request.SerializeToString()


def start(name: str, tmp: Path, model: Path, cache: Path) -> tuple[compare.Group, int]:
    """A server pinned to core 0 and its gRPC port (its HTTP port says when it is ready)."""
    port, grpc_port = h.free_port(), h.free_port()
    if name == "fastserve":
        repo = tmp / "fastserve" / "mlp" / "1"
        repo.mkdir(parents=True)
        shutil.copy(model, repo / "model.pt")
        (repo.parent / "config.toml").write_text(
            'max_batch_size = 0\n[[inputs]]\nname = "input__0"\ndatatype = "FP32"\n'
            'shape = [-1, 64]\n[[outputs]]\nname = "output__0"\ndatatype = "FP32"\n'
            "shape = [-1, 10]\n")
        argv = [sys.executable, "-m", "fastserve", "--models", str(repo.parent.parent),
                "--port", str(port), "--management-port", str(h.free_port()),
                "--grpc-port", str(grpc_port), "--torch-threads", "1", "--workers", "1",
                "--log-level", "warning"]
        return compare.Group(name, argv, port, ROOT), grpc_port
    if name == "mlserver":
        root = tmp / "mlserver"
        (root / "mlp").mkdir(parents=True)
        shutil.copy(BENCH / "peers" / "mlserver_runtime.py", root)
        shutil.copy(model, root / "mlp" / "model.pt")
        (root / "settings.json").write_text(compare.fill(
            "mlserver_settings.json", http_port=port, grpc_port=grpc_port,
            metrics_port=h.free_port()))
        (root / "mlp" / "model-settings.json").write_text(compare.fill(
            "mlserver_model_settings.json", name="mlp", max_batch_size=0, max_batch_time=0))
        return compare.Group(name, [str(cache / name / "bin" / "mlserver"), "start",
                                    str(root)], port, root), grpc_port
    if name == "kserve":
        argv = [str(cache / name / "bin" / "python"), str(BENCH / "peers" / "kserve_model.py"),
                "--model_name", "mlp", "--model_file", str(model), "--http_port", str(port),
                "--grpc_port", str(grpc_port), "--enable_latency_logging", "false"]
        return compare.Group(name, argv, port, tmp), grpc_port
    argv = [sys.executable, str(BENCH / "_grpc_echo.py"), "--port", str(grpc_port)]
    return compare.Group(name, argv, grpc_port, ROOT), grpc_port


def wait_ready(server: compare.Group, grpc_port: int, timeout: float = 120.0) -> None:
    import grpc
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc as pb_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        while time.monotonic() < deadline:
            if not server.alive():
                raise RuntimeError(f"{server.name} {server.state()}\n{server.log_tail()}")
            try:
                if stub.ModelReady(pb.ModelReadyRequest(name="mlp"), timeout=2).ready:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise RuntimeError(f"{server.name}: model not ready after {timeout} s\n{server.log_tail()}")


def check_answer(name: str, grpc_port: int, request: bytes, want: np.ndarray) -> None:
    import grpc
    from tritonclient.grpc import service_pb2 as pb

    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        reply = pb.ModelInferResponse.FromString(channel.unary_unary(INFER)(request, timeout=30))
    if reply.raw_output_contents:
        got = np.frombuffer(reply.raw_output_contents[0], np.float32)
    else:
        got = np.asarray(reply.outputs[0].contents.fp32_contents, np.float32)
    if name != "echo" and not np.allclose(got, want.ravel(), rtol=1e-4, atol=1e-5):
        raise RuntimeError(f"{name}: wrong answer {got[:4]}..., want {want.ravel()[:4]}...")


def load(server: compare.Group, grpc_port: int, request_file: Path,
         args: argparse.Namespace) -> dict:
    cmd = ["taskset", "-c", h.WRK_CORE, sys.executable, str(BENCH / "_grpc_load.py"),
           f"127.0.0.1:{grpc_port}", INFER, str(request_file), "--concurrency",
           str(args.concurrency), "--seconds", str(args.seconds), "--warmup", str(args.warmup)]
    cpu0 = server.cpu_seconds()
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=args.seconds * 3 + 60)
    cpu = server.cpu_seconds() - cpu0
    if run.returncode != 0:
        raise RuntimeError(f"load generator failed on {server.name}:\n{run.stderr[-2000:]}")
    r = json.loads(run.stdout.strip().splitlines()[-1])
    if r["errors"]:
        raise RuntimeError(f"{server.name}: {r['errors']} failed calls, first: "
                           f"{r['first_error']}")
    # CPU over warm-up + timed window, per call at the timed rate.
    r["cpu_us"] = cpu / ((args.seconds + args.warmup) * r["rps"]) * 1e6 if r["rps"] else 0.0
    r["cpu_share"] = cpu / (args.seconds + args.warmup)
    return r


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=5.0, help="timed seconds per run")
    p.add_argument("--warmup", type=float, default=1.0, help="untimed seconds before each")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=32, help="calls in flight (PEERS.md)")
    p.add_argument("--servers", default="fastserve,mlserver,kserve,echo")
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "fastserve-bench",
                   help="where the peers' virtual environments live (as compare.py)")
    p.add_argument("--json", type=Path, help="write the figures here too")
    args = p.parse_args()
    names = args.servers.split(",")
    envs = {name: compare.ensure_env(args.cache, name) for name in names if name in PEERS}
    tmp = Path(tempfile.mkdtemp(prefix="bench-grpc-peers-"))
    model, _, want, request = build(tmp)
    request_file = tmp / "mlp.request"
    request_file.write_bytes(request)
    servers = {name: start(name, tmp, model, args.cache) for name in names}
    runs: dict[str, list[dict]] = {name: [] for name in names}
    try:
        for name, (server, grpc_port) in servers.items():
            wait_ready(server, grpc_port)
            check_answer(name, grpc_port, request, want)
        for i in range(args.repeat):
            for name in names if i % 2 == 0 else names[::-1]:
                compare.settle({n: s for n, (s, _) in servers.items()})
                runs[name].append(load(*servers[name], request_file, args))
                r = runs[name][-1]
                print(f"round {i + 1} {name:<10}{r['rps']:>9.0f} req/s  p99 {r['p99_ms']:6.2f} ms"
                      f"  {r['cpu_us']:6.0f} µs CPU/call", flush=True)
    finally:
        for server, _ in servers.values():
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    med = {n: {k: statistics.median(r[k] for r in rs) for k in ("rps", "p50_ms", "p99_ms",
                                                                "cpu_us")}
           for n, rs in runs.items()}
    print(f"\ngRPC small infer (mlp, [1,64] FP32 raw_input_contents), servers on core "
          f"{h.SERVER_CORE}, _grpc_load.py on core {h.WRK_CORE}, {args.concurrency} in flight; "
          f"median of {args.repeat} rounds of {args.seconds:g} s")
    print(f"{'server':<11}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'µs CPU/call':>13}"
          f"{'fastserve /':>13}")
    fs = med.get("fastserve")
    for name, m in med.items():
        ratio = f"{fs['rps'] / m['rps']:.2f}x" if fs and name != "fastserve" else ""
        print(f"{name:<11}{m['rps']:>9.0f}{m['p50_ms']:>9.2f}{m['p99_ms']:>9.2f}"
              f"{m['cpu_us']:>13.0f}{ratio:>13}")
    peers = [n for n in PEERS if n in med]
    if fs and peers:
        best = max(peers, key=lambda n: med[n]["rps"])
        ratio = fs["rps"] / med[best]["rps"]
        lower = fs["p99_ms"] < med[best]["p99_ms"]
        print(f"fastserve vs the better peer ({best}): {ratio:.2f}x req/s (target >= 5x: "
              f"{'met' if ratio >= 5 else 'NOT met'}), p99 {fs['p99_ms']:.2f} vs "
              f"{med[best]['p99_ms']:.2f} ms ({'lower' if lower else 'NOT lower'})")
    if fs and "echo" in med:
        print(f"fastserve at {fs['rps'] / med['echo']['rps']:.2f}x the grpc.aio echo ceiling "
              f"({med['echo']['cpu_us']:.0f} µs CPU/call for fixed bytes)")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "median": med,
                                         "envs": envs, "args": vars(args)}, indent=1,
                                        default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
