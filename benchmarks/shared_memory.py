"""Triton's perf_analyzer on a [1,3,224,224] FP32 input: system shared memory vs the
binary data extension, same server, same run.

fastserve (core 0, --allow-shared-memory) serves the conv model of binary.py;
perf_analyzer ($PERF_ANALYZER, else on PATH; core 1) drives it with
``--shared-memory system`` and with ``none`` (binary tensors in the HTTP body). Not a test.
Run from the repo root: python benchmarks/shared_memory.py [--seconds 2 --concurrency 4]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import _harness as h
from binary import build

ROOT = Path(__file__).resolve().parent.parent
# A workspace may keep it beside the clone (../shared/tools): the last place looked.
PERF_ANALYZER = Path(os.environ.get("PERF_ANALYZER") or shutil.which("perf_analyzer")
                     or ROOT.parent / "shared" / "tools" / "perf_analyzer")


def ensure_cudart() -> None:
    """perf_analyzer dlopens libcudart even for system shared memory; a chroot'd perf_analyzer
    (under $PERFA_HOME) has none, so put the CUDA runtime wheel's copy there."""
    root = Path(os.environ.get("PERFA_HOME", Path.home() / ".cache" / "perfa")) / "trixie"
    target = root / "usr" / "lib" / "x86_64-linux-gnu" / "libcudart.so"
    if target.exists() or not root.exists():
        return
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp,
                        "nvidia-cuda-runtime-cu12"], check=True)
        wheel = next(Path(tmp).glob("nvidia_cuda_runtime*.whl"))
        with zipfile.ZipFile(wheel) as z:
            name = next(n for n in z.namelist() if n.endswith("libcudart.so.12"))
            (target.parent / "libcudart.so.12").write_bytes(z.read(name))
    target.symlink_to("libcudart.so.12")


def perf_analyzer(port: int, mode: str, args: argparse.Namespace) -> dict:
    cmd = ["taskset", "-c", h.WRK_CORE, str(PERF_ANALYZER), "-m", "conv", "-u",
           f"127.0.0.1:{port}", "-i", "http", "--concurrency-range", str(args.concurrency),
           "--shape", "input__0:1,3,224,224", "-p", str(args.seconds * 1000),
           "--stability-percentage", "50", "--max-trials", "10", "--shared-memory", mode,
           "--output-shared-memory-size", "64"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    text = run.stdout + run.stderr
    tput = re.search(r"Throughput: ([\d.]+) infer/sec", text)
    p99 = re.search(r"p99 latency: (\d+) usec", text)
    if run.returncode != 0 or not tput:
        raise SystemExit(f"perf_analyzer --shared-memory {mode} failed:\n{text[-3000:]}")
    return {"infer_per_s": float(tput.group(1)),
            "p99_ms": int(p99.group(1)) / 1000 if p99 else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=int, default=2, help="perf_analyzer window")
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args()
    subprocess.run([str(PERF_ANALYZER), "--version"], capture_output=True)  # makes the chroot
    ensure_cudart()
    with tempfile.TemporaryDirectory() as tmp:
        build(Path(tmp))
        port, mport = h.free_port(), h.free_port()
        srv = h.Server("fastserve", [sys.executable, "-m", "fastserve", "--models",
                                     str(Path(tmp) / "models"), "--port", str(port),
                                     "--management-port", str(mport), "--torch-threads", "1",
                                     "--allow-shared-memory"], port, ROOT)
        try:
            srv.wait_until("GET", "/v2/health/ready", timeout=120)
            rows = {mode: perf_analyzer(port, mode, args) for mode in ("none", "system")}
        finally:
            srv.stop()
    print(f"\nCPU: {h.cpu_model()}; fastserve core {h.SERVER_CORE}, perf_analyzer core "
          f"{h.WRK_CORE}, concurrency {args.concurrency}; load "
          f"{open('/proc/loadavg').read().split()[0]}\n")
    print("| input path | infer/s | p99 ms |")
    print("|---|---|---|")
    for mode, r in rows.items():
        label = "binary data extension" if mode == "none" else "system shared memory"
        print(f"| {label} | {r['infer_per_s']:,.1f} | {r['p99_ms']:.2f} |")
    print(f"\nshared memory ÷ binary: "
          f"{rows['system']['infer_per_s'] / rows['none']['infer_per_s']:.2f}×")


if __name__ == "__main__":
    main()
