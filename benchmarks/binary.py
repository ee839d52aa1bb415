"""A [1,3,224,224] FP32 tensor through v2 JSON vs the binary data extension, same server.

One fastserve process (core 0) serves a small conv model ([N,3,224,224] -> [N,8]); wrk
(core 1) posts the same tensor as a 2.9 MB v2 JSON body and as a 602 KB binary-extension
body. Reports requests/s, MB/s of tensor data and p50/p99, binary as a ratio to JSON.
With --copies, also counts user-space copies of the tensor bytes per request (valgrind's
DHAT in copy mode over an in-process server with the real transport and v2 decoder).
Not a test. Run from the repo root: python benchmarks/binary.py [--duration 10 --repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import _harness as h
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SHAPE = (1, 3, 224, 224)


class Conv(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, kernel_size=7, stride=7)
        self.fc = torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean(dim=(2, 3)))


def build(root: Path) -> tuple[Path, Path]:
    torch.manual_seed(0)
    folder = root / "models" / "conv" / "1"
    folder.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(Conv().eval(), torch.zeros(SHAPE)), str(folder / "model.pt"))
    (root / "models" / "conv" / "config.toml").write_text(
        'max_batch_size = 0\n[[inputs]]\nname = "input__0"\ndatatype = "FP32"\n'
        'shape = [-1, 3, 224, 224]\n[[outputs]]\nname = "output__0"\ndatatype = "FP32"\n'
        "shape = [-1, 8]\n")
    x = np.random.default_rng(0).random(SHAPE, dtype=np.float32)
    json_body = root / "json.body"
    json_body.write_bytes(json.dumps({"inputs": [{
        "name": "input__0", "shape": list(SHAPE), "datatype": "FP32",
        "data": x.ravel().tolist()}]}).encode())
    header = json.dumps({"inputs": [{
        "name": "input__0", "shape": list(SHAPE), "datatype": "FP32",
        "parameters": {"binary_data_size": x.nbytes}}],
        "outputs": [{"name": "output__0", "parameters": {"binary_data": True}}]}).encode()
    binary_body = root / "binary.body"
    binary_body.write_bytes(header + x.tobytes())
    (root / "binary.header_length").write_text(str(len(header)))
    return json_body, binary_body


def throughput(args: argparse.Namespace, root: Path) -> dict:
    json_body, binary_body = build(root)
    header_length = (root / "binary.header_length").read_text()
    port, mport = h.free_port(), h.free_port()
    srv = h.Server("fastserve", [sys.executable, "-m", "fastserve", "--models",
                                 str(root / "models"), "--port", str(port),
                                 "--management-port", str(mport), "--torch-threads", "1"],
                   port, ROOT)
    path = "/v2/models/conv/infer"
    cases = {"json": (json_body, {}),
             "binary": (binary_body, {"Inference-Header-Content-Length": header_length,
                                      "Content-Type": "application/octet-stream"})}
    rows: dict[str, dict] = {}
    try:
        srv.wait_until("GET", "/v2/health/ready", timeout=120)
        runs: dict[str, list] = {name: [] for name in cases}
        for i in range(args.repeat):
            order = list(cases) if i % 2 == 0 else list(reversed(cases))
            for name in order:
                body, headers = cases[name]
                h.wrk(port, path, args.warmup, body, conns=args.conns, headers=headers)
                runs[name].append(h.wrk(port, path, args.duration, body, conns=args.conns,
                                        headers=headers))
        for name, rs in runs.items():
            bad = sum(r["non_2xx"] + r["socket_errors"] for r in rs)
            if bad:
                raise SystemExit(f"{name}: {bad} failed requests\n{srv.log_tail()}")
            rps = statistics.median(r["rps"] for r in rs)
            rows[name] = {"rps": rps, "tensor_MBps": rps * 4 * np.prod(SHAPE) / 1e6,
                          "p50_ms": statistics.median(r["p50_ms"] for r in rs),
                          "p99_ms": statistics.median(r["p99_ms"] for r in rs),
                          "body_bytes": cases[name][0].stat().st_size}
    finally:
        srv.stop()
    return rows


def copies(root: Path, requests: int) -> dict:
    """User-space bytes copied per request ÷ tensor bytes, from DHAT's copy profile.

    The real transport and v2 decoder run under valgrind (DHAT, --mode=copy counts every
    memcpy/memmove); the client is another process. Two runs, with 0 and ``requests``
    binary requests, so start-up copies cancel out.
    """
    _, binary_body = build(root / "copies")
    header_length = (root / "copies" / "binary.header_length").read_text()
    body = binary_body.read_bytes()
    totals = {}
    for n in (0, requests):
        out = root / f"dhat-{n}.json"
        port = h.free_port()
        proc = subprocess.Popen(
            ["valgrind", "--tool=dhat", "--mode=copy", f"--dhat-out-file={out}",
             sys.executable, str(Path(__file__).parent / "_copies_server.py"), str(port)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT)
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        for _ in range(n):
            status, _ = h.request(port, "POST", "/v2/models/conv/infer", body, timeout=120,
                                  headers={"Inference-Header-Content-Length": header_length})
            assert status == 200
        h.request(port, "GET", "/exit", timeout=120)
        proc.wait(600)
        doc = json.loads(out.read_text())
        totals[n] = sum(pp["tb"] for pp in doc["pps"])
    per_request = (totals[requests] - totals[0]) / requests
    tensor = 4 * int(np.prod(SHAPE))
    return {"bytes_copied_per_request": per_request, "tensor_bytes": tensor,
            "copies_of_tensor": per_request / tensor}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--copies", action="store_true", help="also count copies (valgrind)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = throughput(args, Path(tmp))
        counted = copies(Path(tmp), 10) if args.copies else None
    print(f"\nCPU: {h.cpu_model()}; server core {h.SERVER_CORE}, wrk -c{args.conns} core "
          f"{h.WRK_CORE}; median of {args.repeat} × {args.duration} s; load "
          f"{open('/proc/loadavg').read().split()[0]}\n")
    print("| body | bytes | req/s | tensor MB/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['body_bytes']:,} | {r['rps']:,.0f} | {r['tensor_MBps']:,.1f} | "
              f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} |")
    print(f"\nbinary ÷ JSON requests/s: {rows['binary']['rps'] / rows['json']['rps']:.1f}×")
    if counted:
        print(f"user-space copies of the tensor per request: {counted['copies_of_tensor']:.2f} "
              f"({counted['bytes_copied_per_request']:,.0f} bytes for "
              f"{counted['tensor_bytes']:,} tensor bytes)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"binary-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"cpu": h.cpu_model(), "rows": rows, "copies": counted},
                              indent=2, default=float))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
