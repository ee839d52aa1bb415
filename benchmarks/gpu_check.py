"""The GPU path, proven and measured in one run: `python benchmarks/gpu_check.py`.

Builds its own models (the digits MLP, a conv net on [N,3,224,224], a two-input model),
starts real `fastserve` servers on them and:
1. checks every output against the same model run on the CPU in this process (allclose);
2. on a GPU, shows the pinned path is taken (staging buffers pinned, one stream per
   instance, profiler memcpy kinds) and how much of the host-to-device copying of one
   batch overlaps another batch's compute (CUDA events from torch.profiler, a fraction);
3. measures the conv model over v2 binary at concurrency 1, 16, 64: batching on vs off,
   pinned vs pageable staging, 1 vs 2 instances, and the same requests on `--device cpu`,
   each as a ratio to the baseline (GPU, batching on, pinned, 1 instance) of the same run;
4. checks GPU memory stays flat over the load, and that a model too large for the GPU
   FAILS with a message while the others serve.
Without a GPU it says so, runs the CPU half (1 and 3 on the CPU) and exits 0. Writes
gpu_check.json and gpu_check.png (throughput and p99 against concurrency) to --out.
Needs only torch, numpy and Pillow beside fastserve (the GPU machine has no package index).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _harness import free_port, request

ROOT = Path(__file__).resolve().parent.parent
CONV_SHAPE = (3, 224, 224)
CONCURRENCY = (1, 16, 64)


# Models --------------------------------------------------------------------------------

class Digits(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(),
                                       torch.nn.Linear(256, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Conv(torch.nn.Module):
    """A small ResNet-like stem: enough work per image for batching to matter on a GPU."""

    def __init__(self) -> None:
        super().__init__()
        c = torch.nn.Conv2d
        self.features = torch.nn.Sequential(
            c(3, 32, 3, stride=2, padding=1), torch.nn.ReLU(),
            c(32, 64, 3, stride=2, padding=1), torch.nn.ReLU(),
            c(64, 128, 3, stride=2, padding=1), torch.nn.ReLU(),
            c(128, 128, 3, stride=2, padding=1), torch.nn.ReLU())
        self.fc = torch.nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


class TwoInputs(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(16, 8)
        self.b = torch.nn.Linear(4, 8)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.a(x) + self.b(y))


class Huge(torch.nn.Module):
    """Its warm-up needs 2 TiB on the device: the model that cannot fit."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.zeros(1 << 39, device=x.device)[:1]


def _spec(name: str, shape: list[int]) -> str:
    return f'name = "{name}"\ndatatype = "FP32"\nshape = {shape}\n'


def build_models(root: Path, gpu: bool) -> dict[str, torch.nn.Module]:
    """Writes the model repository; returns the CPU modules to check answers against."""
    torch.manual_seed(0)
    modules = {"digits": Digits().eval(), "conv": Conv().eval(), "two": TwoInputs().eval()}
    batch = torch.export.Dim("batch", min=1, max=256)
    examples = {"digits": (torch.zeros(2, 64),), "conv": (torch.zeros(2, *CONV_SHAPE),),
                "two": (torch.zeros(2, 16), torch.zeros(2, 4))}
    ios = {"digits": ([[-1, 64]], [-1, 10]), "conv": ([[-1, *CONV_SHAPE]], [-1, 10]),
           "two": ([[-1, 16], [-1, 4]], [-1, 8])}
    programs = {}
    for name, module in modules.items():
        shapes = tuple({0: batch} for _ in examples[name])
        programs[name] = torch.export.export(module, examples[name], dynamic_shapes=shapes)
    variants = {  # folder: (program, config.toml extras)
        "digits": ("digits", "max_batch_size = 64\nbatch_delay_ms = 2.0\n"),
        "two": ("two", "max_batch_size = 64\nbatch_delay_ms = 2.0\n"),
        "conv": ("conv", "max_batch_size = 64\nbatch_delay_ms = 2.0\n"),
        "conv_nobatch": ("conv", "max_batch_size = 0\n"),
        "conv_2inst": ("conv", "max_batch_size = 64\nbatch_delay_ms = 2.0\ninstances = 2\n"),
    }
    for folder, (name, extras) in variants.items():
        version = root / folder / "1"
        version.mkdir(parents=True)
        torch.export.save(programs[name], str(version / "model.pt2"))
        ins, out = ios[name]
        if "max_batch_size = 0" in extras:  # sent as [1, ...]: a fixed first dimension
            ins, out = [[1, *s[1:]] for s in ins], [1, *out[1:]]
        text = extras + "".join("[[inputs]]\n" + _spec(f"input__{i}", s) for i, s in
                                enumerate(ins)) + "[[outputs]]\n" + _spec("output__0", out)
        (root / folder / "config.toml").write_text(text)
    if gpu:
        huge = root / "huge" / "1"
        huge.mkdir(parents=True)
        torch.jit.save(torch.jit.script(Huge()), str(huge / "model.pt"))
        (root / "huge" / "config.toml").write_text("[[inputs]]\n" + _spec("input__0", [1]))
    return modules


# HTTP ----------------------------------------------------------------------------------

def v2_binary_request(model: str, arrays: list[np.ndarray], port: int) -> bytes:
    inputs = [{"name": f"input__{i}", "shape": list(a.shape), "datatype": "FP32",
               "parameters": {"binary_data_size": a.nbytes}} for i, a in enumerate(arrays)]
    header = json.dumps({"inputs": inputs, "outputs": [
        {"name": "output__0", "parameters": {"binary_data": True}}]}).encode()
    body = header + b"".join(a.astype(np.float32).tobytes() for a in arrays)
    return (f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/octet-stream\r\nInference-Header-Content-Length: "
            f"{len(header)}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(":") for line in lines[1:] if line)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


def infer_binary(port: int, model: str, arrays: list[np.ndarray]) -> np.ndarray:
    """One v2 binary request; the FP32 output as an array (raises on a non-200)."""
    async def one() -> tuple[int, dict[str, str], bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(v2_binary_request(model, arrays, port))
        try:
            return await _read_response(reader)
        finally:
            writer.close()
    status, headers, body = asyncio.run(one())
    if status != 200:
        raise RuntimeError(f"{model}: HTTP {status}: {body[:300]!r}")
    n = int(headers["inference-header-content-length"])
    meta = json.loads(body[:n])["outputs"][0]
    return np.frombuffer(body[n:], dtype=np.float32).reshape(meta["shape"])


def get(port: int, path: str) -> tuple[int, dict]:
    status, body = request(port, "GET", path, timeout=5)
    return status, json.loads(body or b"{}")


# Load ----------------------------------------------------------------------------------

async def _connection(port: int, request: bytes, until: float, lat: list[float],
                      errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < until:
            t0 = time.perf_counter()
            writer.write(request)
            status, _, _ = await _read_response(reader)
            lat.append(time.perf_counter() - t0)
            if status != 200:
                errors.append(status)
    finally:
        writer.close()


def _load_process(port: int, request: bytes, conns: int, duration: float, warm: float,
                  out: multiprocessing.Queue) -> None:
    async def main() -> tuple[list[float], list[int]]:
        lat: list[float] = []
        errors: list[int] = []
        start = time.perf_counter()
        await asyncio.gather(*[_connection(port, request, start + warm + duration, lat,
                                           errors) for _ in range(conns)])
        return lat, errors
    # Latencies of the warm-up part are dropped by count afterwards (see measure()).
    lat, errors = asyncio.run(main())
    out.put((lat, errors))


def measure(port: int, request: bytes, conns: int, duration: float) -> dict:
    """req/s and p50/p99 (ms) of `conns` keep-alive connections for `duration` seconds,
    spread over up to 4 client processes so the client is not the bottleneck."""
    procs = max(1, min(4, conns, (os.cpu_count() or 2) // 4))
    share = [conns // procs + (i < conns % procs) for i in range(procs)]
    queue: multiprocessing.Queue = multiprocessing.Queue()
    warm = min(1.0, duration / 4)
    workers = [multiprocessing.Process(target=_load_process,
                                       args=(port, request, n, duration, warm, queue))
               for n in share]
    for w in workers:
        w.start()
    lat: list[float] = []
    errors: list[int] = []
    for _ in workers:
        got_lat, got_err = queue.get()
        lat += got_lat
        errors += got_err
    for w in workers:
        w.join()
    total = warm + duration
    kept = sorted(lat[int(len(lat) * warm / total):]) or [float("nan")]
    return {"rps": len(lat) / total, "p50_ms": 1e3 * kept[len(kept) // 2],
            "p99_ms": 1e3 * kept[min(len(kept) - 1, int(len(kept) * 0.99))],
            "errors": len(errors)}


# Servers -------------------------------------------------------------------------------

class Server:
    def __init__(self, models: Path, device: str, log: Path, env: dict[str, str]) -> None:
        self.port, self.mport = free_port(), free_port()
        args = [sys.executable, "-m", "fastserve", "--models", str(models), "--device", device,
                "--port", str(self.port), "--management-port", str(self.mport)]
        if "--grpc-port" in _help():
            args += ["--grpc-port", "0"]
        self.log = log
        self.proc = subprocess.Popen(args, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                                     cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env})
        self.started = time.monotonic()

    def wait_ready(self, timeout: float = 180) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                if get(self.port, "/v2/health/ready")[0] == 200:
                    return time.monotonic() - self.started
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"not ready in {timeout}s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@functools.cache
def _help() -> str:
    return subprocess.run([sys.executable, "-m", "fastserve", "--help"], cwd=ROOT,
                          capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout


# Checks --------------------------------------------------------------------------------

def check_outputs(port: int, modules: dict[str, torch.nn.Module], device: str) -> dict:
    """Every model's answer over HTTP against the CPU module in this process."""
    rng = np.random.default_rng(0)
    cases = {"digits": [rng.random((3, 64), dtype=np.float32)],
             "conv": [rng.random((2, *CONV_SHAPE), dtype=np.float32)],
             "conv_nobatch": [rng.random((1, *CONV_SHAPE), dtype=np.float32)],
             "conv_2inst": [rng.random((5, *CONV_SHAPE), dtype=np.float32)],
             "two": [rng.random((4, 16), dtype=np.float32), rng.random((4, 4), dtype=np.float32)]}
    # cuDNN convolutions may use TF32 on Ampere and later (PyTorch's default): 10-bit
    # mantissas, so the GPU answers are compared at 2e-3 there; CPU answers at 1e-5.
    tol = 2e-3 if device == "cuda" else 1e-5
    report = {}
    for model, arrays in cases.items():
        module = modules[model.split("_")[0]]
        with torch.no_grad():
            want = module(*[torch.from_numpy(a) for a in arrays]).numpy()
        got = infer_binary(port, model, arrays)
        diff = float(np.max(np.abs(got - want)))
        report[model] = {"max_abs_diff": diff, "tolerance": tol,
                         "ok": bool(np.allclose(got, want, rtol=tol, atol=tol))}
    return report


def check_pinned_and_overlap(models: Path) -> dict:
    """In this process: the backend's staging, streams and copy/compute overlap."""
    from fastserve.backends.torch import load
    from fastserve.core.model_config import parse_model_config

    config = dataclasses.replace(parse_model_config(models / "conv_2inst"), device="cuda")
    backend = load(models / "conv_2inst" / "1", config, {})
    x = np.random.default_rng(1).random((32, *CONV_SHAPE), dtype=np.float32)
    for i in range(2):
        backend.infer({"input__0": x}, i)
    pinned = all(b.is_pinned() for s in backend._staging for b in s.values())
    streams = len({s.cuda_stream for s in backend._streams})
    from concurrent.futures import ThreadPoolExecutor

    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda i: [backend.infer({"input__0": x}, i % 2) for _ in range(20)],
                          range(2)))
        torch.cuda.synchronize()
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(trace))
        events = json.loads(trace.read_text())["traceEvents"]
    copies = [e for e in events if e.get("cat") == "gpu_memcpy" and "HtoD" in e.get("name", "")]
    kernels = [e for e in events if e.get("cat") == "kernel"]
    kinds = sorted({e["name"] for e in copies})
    overlap = total = 0.0
    for c in copies:
        c0, c1 = c["ts"], c["ts"] + c["dur"]
        total += c["dur"]
        spans = sorted((max(c0, k["ts"]), min(c1, k["ts"] + k["dur"])) for k in kernels
                       if k.get("args", {}).get("stream") != c.get("args", {}).get("stream"))
        covered, edge = 0.0, c0
        for a, b in spans:
            if b > max(a, edge):
                covered += b - max(a, edge)
                edge = b
        overlap += covered
    backend.close()
    return {"staging_pinned": pinned, "streams_per_instance": streams, "instances": 2,
            "htod_copy_kinds": kinds, "htod_copies": len(copies),
            "htod_overlapped_by_other_stream_compute": overlap / total if total else 0.0}


def gpu_used_bytes() -> int:
    free, total = torch.cuda.mem_get_info()
    return total - free


# Run -----------------------------------------------------------------------------------

def run(out: Path, duration: float, concurrency: tuple[int, ...]) -> dict:
    gpu = torch.cuda.is_available()
    report: dict = {"gpu": torch.cuda.get_device_name(0) if gpu else None,
                    "cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(), "torch": torch.__version__,
                    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "duration_s": duration}
    if not gpu:
        print("no CUDA device here: running the CPU half (outputs and load on --device cpu)")
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        modules = build_models(models, gpu)
        configs = [("cpu", "cpu", {})]
        if gpu:
            configs = [("gpu", "cuda", {}), ("gpu_pageable", "cuda",
                                             {"FASTSERVE_CUDA_PINNED": "0"})] + configs
            report["pinned_path"] = check_pinned_and_overlap(models)
        rows = report["load"] = []
        for label, device, env in configs:
            server = Server(models, device, Path(tmp) / f"{label}.log", env)
            try:
                report.setdefault("ready_s", {})[label] = server.wait_ready()
                report.setdefault("outputs", {})[label] = check_outputs(server.port, modules,
                                                                         device)
                if label == "gpu":
                    status, body = get(server.port, "/v2/models/huge/ready")
                    report["too_large"] = {"status": status, "body": body,
                                           "log": [line for line in server.log.read_text()
                                                   .splitlines() if "huge" in line][-2:]}
                    before = gpu_used_bytes()
                models_here = (["conv", "conv_nobatch", "conv_2inst"] if label == "gpu"
                               else ["conv"] if label == "gpu_pageable"
                               else ["conv", "conv_nobatch"])
                for model in models_here:
                    x = np.random.default_rng(2).random((1, *CONV_SHAPE), dtype=np.float32)
                    request = v2_binary_request(model, [x], server.port)
                    for c in concurrency:
                        m = measure(server.port, request, c, duration)
                        rows.append({"server": label, "model": model, "concurrency": c, **m})
                        print(f"  {label:13s} {model:13s} c={c:<3d} {m['rps']:9.1f} req/s  "
                              f"p50 {m['p50_ms']:7.2f} ms  p99 {m['p99_ms']:7.2f} ms  "
                              f"errors {m['errors']}", flush=True)
                if label == "gpu":
                    after = gpu_used_bytes()
                    report["gpu_memory"] = {"before_load_mb": before / 2**20,
                                            "after_load_mb": after / 2**20,
                                            "growth_mb": (after - before) / 2**20}
            finally:
                server.stop()
    report["ratios"] = ratios(rows)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    plot(rows, out / "gpu_check.png")
    print_table(report)
    return report


def ratios(rows: list[dict]) -> dict:
    """Each configuration against the baseline of the same run, per concurrency."""
    base_server = "gpu" if any(r["server"] == "gpu" for r in rows) else "cpu"
    find = {(r["server"], r["model"], r["concurrency"]): r for r in rows}
    pairs = {"batching_on_vs_off": ((base_server, "conv"), (base_server, "conv_nobatch")),
             "two_vs_one_instance": (("gpu", "conv_2inst"), ("gpu", "conv")),
             "pinned_vs_pageable": (("gpu", "conv"), ("gpu_pageable", "conv")),
             "gpu_vs_cpu": (("gpu", "conv"), ("cpu", "conv"))}
    out: dict = {}
    for name, (a, b) in pairs.items():
        for c in sorted({r["concurrency"] for r in rows}):
            ra, rb = find.get((*a, c)), find.get((*b, c))
            if ra and rb and rb["rps"] > 0:
                out.setdefault(name, {})[str(c)] = {
                    "rps_ratio": ra["rps"] / rb["rps"],
                    "p99_ratio": ra["p99_ms"] / rb["p99_ms"] if rb["p99_ms"] else None}
    return out


def print_table(report: dict) -> None:
    print(f"\nGPU: {report['gpu'] or 'none'}   CPU cores: {report['cores']}   "
          f"torch {report['torch']}   {report['date']}")
    for label, models in report.get("outputs", {}).items():
        bad = [m for m, r in models.items() if not r["ok"]]
        worst = max(r["max_abs_diff"] for r in models.values())
        print(f"outputs on {label}: {'all equal to CPU' if not bad else 'MISMATCH ' + str(bad)}"
              f" (max |diff| {worst:.2e})")
    if "pinned_path" in report:
        p = report["pinned_path"]
        print(f"pinned staging: {p['staging_pinned']}, streams for 2 instances: "
              f"{p['streams_per_instance']}, HtoD kinds {p['htod_copy_kinds']}, "
              f"copy time overlapped by other-stream compute: "
              f"{100 * p['htod_overlapped_by_other_stream_compute']:.0f}%")
    if "gpu_memory" in report:
        print(f"GPU memory over the load: {report['gpu_memory']['growth_mb']:+.1f} MB")
    if "too_large" in report:
        print(f"too-large model: HTTP {report['too_large']['status']} "
              f"{json.dumps(report['too_large']['body'])[:160]}")
    print("\nratio (req/s, p99) per concurrency, same run:")
    for name, per_c in report["ratios"].items():
        cells = "  ".join(f"c={c}: {v['rps_ratio']:.2f}x / {v['p99_ratio'] or 0:.2f}x"
                          for c, v in per_c.items())
        print(f"  {name:22s} {cells}")


def plot(rows: list[dict], path: Path) -> None:
    """Throughput and p99 against concurrency, one line per configuration (Pillow only)."""
    from PIL import Image, ImageDraw

    series: dict[str, list[dict]] = {}
    for r in rows:
        series.setdefault(f"{r['server']}/{r['model']}", []).append(r)
    img = Image.new("RGB", (1000, 440), "white")
    draw = ImageDraw.Draw(img)
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]
    cs = sorted({r["concurrency"] for r in rows})
    for panel, (key, title) in enumerate((("rps", "req/s"), ("p99_ms", "p99 ms"))):
        x0, y0, w, h = 60 + panel * 490, 40, 400, 330
        draw.rectangle([x0, y0, x0 + w, y0 + h], outline="black")
        draw.text((x0 + w // 2 - 30, 15), f"{title} vs concurrency", fill="black")
        top = max(r[key] for r in rows if r[key] == r[key]) * 1.1 or 1
        draw.text((x0 - 55, y0), f"{top:.0f}", fill="black")
        for i, c in enumerate(cs):
            draw.text((x0 + i * w // max(1, len(cs) - 1) - 5, y0 + h + 5), str(c), fill="black")
        for n, (name, pts) in enumerate(sorted(series.items())):
            xy = [(x0 + cs.index(p["concurrency"]) * w // max(1, len(cs) - 1),
                   y0 + h - int(h * p[key] / top)) for p in pts if p[key] == p[key]]
            colour = colours[n % len(colours)]
            if len(xy) > 1:
                draw.line(xy, fill=colour, width=2)
            if panel == 0:
                draw.text((x0 + 10, y0 + 10 + 14 * n), name, fill=colour)
    img.save(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per load point")
    parser.add_argument("--concurrency", default=",".join(map(str, CONCURRENCY)))
    args = parser.parse_args()
    run(args.out, args.duration, tuple(int(c) for c in args.concurrency.split(",")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
