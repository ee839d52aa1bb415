"""v2 image requests beside tensor requests: does image traffic slow the tensor clients?

Issue 14: "the tensor clients' p99 no longer grows with image traffic". One server per
tree (the working tree, A; with --base, also that ref, B), each with the digits model
twice: ``digits_ts`` (tensors) and ``digits_big`` (the image_classifier model, its
[image] section resizing to 8x8 so that --size x --size JPEGs are accepted). Per round
and tree, the tensor clients (small v2 requests to digits_ts; with --same-model, to
digits_big) run three times, and their p99 is recorded each time:

- alone;
- with images: beside a wrk of --conns connections sending one JPEG per request (v2
  binary extension) to digits_big, as fast as they are answered;
- with the same bytes answered at once (the ceiling): beside --conns connections
  (_paced.py) sending that image body at the rate the images were answered, to
  digits_ts, which refuses it (400) once parsed: the transport's and the parser's share
  of the growth, without the image work.

The tensor clients: a wrk of --conns connections (closed loop: the server's core is
always busy), or with --tensor-rate R, Triton's perf_analyzer at R requests a second
(open loop: the core has room; the tensor figures are perf_analyzer's). They run at
SCHED_FIFO where this user may (root or CAP_SYS_NICE), so that the load generator's own
waits for its core do not count as the server's (--no-realtime: as every process).
Servers pinned to core 0, every client to core 1 (_harness). Printed per round: the
three tensor runs, the images' req/s, p99 and timeouts; then per tree the medians of p99
with images / alone and with images / with the same bytes, and the images' req/s and p99;
with --base, the medians of A over B. From the repo root (about 30 s per tree and round):

    python benchmarks/image_mix.py --base HEAD~3
    python benchmarks/image_mix.py --base HEAD~3 --tensor-rate 2500
    python benchmarks/image_mix.py --base HEAD   # A/A: what noise alone makes of A / B
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import _harness as h
import numpy as np
from ab import ROOT, checkout, start
from grpc_vs_http import run_perf_analyzer
from PIL import Image

IMAGE_CONFIG = """max_batch_size = 32
batch_delay_ms = 1.0
handler = "image_classifier"
[image]
mode = "L"
resize = 8
crop = 8
mean = [0.0]
std = [0.9411764705882353]
[[inputs]]
name = "input__0"
datatype = "FP32"
shape = [-1, 1, 8, 8]
[[outputs]]
name = "output__0"
datatype = "FP32"
shape = [-1, 10]
"""


def build(models: Path, tmp: Path, size: int) -> tuple[Path, Path, str]:
    """The model repository, the image request body and its JSON header's length (and
    tensors.json: a v2 JSON tensor request for digits_big itself)."""
    shutil.copytree(ROOT / "examples/models/digits_ts", models / "digits_ts")
    (models / "digits_big").mkdir()
    shutil.copytree(ROOT / "examples/models/digits_image/1", models / "digits_big/1")
    (models / "digits_big/config.toml").write_text(IMAGE_CONFIG)
    pixels = np.random.default_rng(0).integers(0, 256, (size, size), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    jpeg = out.getvalue()
    element = struct.pack("<I", len(jpeg)) + jpeg
    header = json.dumps({"inputs": [{"name": "input__0", "shape": [1], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(element)}}]})
    digit = json.loads((ROOT / "examples/samples/digits_v2.json").read_text())
    digit["inputs"][0]["shape"] = [1, 1, 8, 8]
    (tmp / "tensors.json").write_text(json.dumps(digit))
    body = tmp / "image.bin"
    body.write_bytes(header.encode() + element)
    return models, body, str(len(header))


def tensors(srv: h.Server, args: argparse.Namespace, tensors_body: Path, path: str) -> dict:
    """One run of the tensor clients: wrk (closed loop), or perf_analyzer at a rate."""
    if not args.tensor_rate:
        return h.wrk(srv.port, path, args.duration, tensors_body, conns=args.conns,
                     realtime=args.realtime)
    try:
        r = run_perf_analyzer([
            "-m", path.split("/")[3], "-u", f"127.0.0.1:{srv.port}", "-i", "http",
            "--shape", "input__0:" + ("1,64" if "digits_ts" in path else "1,1,8,8"),
            "--request-rate-range", str(args.tensor_rate), "--max-threads", str(args.conns),
            # three windows (its fewest), all taken as stable: about --duration in all
            "--measurement-interval", str(args.duration * 1000 // 3), "--max-trials", "3",
            "-s", "999"], prefix=h.REALTIME if args.realtime else ())
    except RuntimeError as exc:
        raise SystemExit(str(exc)[-2000:]) from None
    return {**r, "non_2xx": 0, "socket_errors": 0, "timeout": 0}


def images_answered(srv: h.Server) -> int:
    """Image requests digits_big answered so far (its v2 statistics)."""
    status, body = h.request(srv.port, "GET", "/v2/models/digits_big/stats")
    if status != 200:
        raise SystemExit(f"{srv.name}: statistics answered {status}: {body[:200]!r}")
    return json.loads(body)["model_stats"][0]["inference_stats"]["success"]["count"]


def measure(srv: h.Server, image: Path, header_length: str, args: argparse.Namespace
            ) -> dict[str, dict]:
    if args.same_model:
        body, path = image.parent / "tensors.json", "/v2/models/digits_big/infer"
    else:
        body = (ROOT / "examples/samples/digits_v2.json").resolve()
        path = "/v2/models/digits_ts/infer"
    alone = tensors(srv, args, body, path)
    images: dict = {}

    def send_images() -> None:
        images.update(h.wrk(srv.port, "/v2/models/digits_big/infer", args.duration + 4,
                            image, conns=args.conns,
                            headers={"Inference-Header-Content-Length": header_length}))

    thread = threading.Thread(target=send_images)
    thread.start()
    time.sleep(1)  # the images' batches running
    start, answered = time.monotonic(), images_answered(srv)
    mixed = tensors(srv, args, body, path)
    # the images' rate while the tensors ran (wrk's own covers its whole run)
    images["rps_beside"] = ((images_answered(srv) - answered) / (time.monotonic() - start))
    thread.join()
    # The same bytes at the images' rate, to a model that refuses them once parsed.
    period = args.conns / max(images["rps_beside"], 1.0)
    paced = subprocess.Popen(["taskset", "-c", h.WRK_CORE, sys.executable,
                              str(ROOT / "benchmarks/_paced.py"), str(srv.port),
                              "/v2/models/digits_ts/infer", str(image), header_length,
                              str(args.duration + 2), str(period), str(args.conns)],
                             stdout=subprocess.PIPE, text=True)
    time.sleep(1)
    same_bytes = tensors(srv, args, body, path)
    out, _ = paced.communicate(timeout=args.duration + 60)
    statuses = json.loads(out)["statuses"]
    # NOTE: image requests that time out (wrk: 2 s) are reported with the images' line;
    # only a failed tensor request, or an image answered with an error, stops the run.
    for what, r in (("tensors alone", alone), ("tensors with images", mixed),
                    ("tensors with the same bytes", same_bytes), ("images", images)):
        timeouts = r["timeout"] if what == "images" else 0
        if r["non_2xx"] or r["socket_errors"] - timeouts:
            raise SystemExit(f"{srv.name}: {what}: {r['non_2xx']} non-2xx, "
                             f"{r['socket_errors']} socket errors ({r})\n{srv.log_tail()}")
    if set(statuses) != {"400"}:
        raise SystemExit(f"{srv.name}: the same bytes were answered {statuses}, not 400")
    same_bytes["sent_rps"] = sum(statuses.values()) / (args.duration + 2)
    return {"alone": alone, "mixed": mixed, "same_bytes": same_bytes, "images": images}


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def summarise(name: str, runs: list[dict]) -> None:
    """Per tree: the medians over the rounds, and what noise is (tensor-alone p99's spread)."""
    grow = sorted(r["mixed"]["p99_ms"] / r["alone"]["p99_ms"] for r in runs)
    ceiling = sorted(r["mixed"]["p99_ms"] / r["same_bytes"]["p99_ms"] for r in runs)
    alone = sorted(r["alone"]["p99_ms"] for r in runs)
    print(f"{name}: tensor p99 with images / alone, per round: "
          + ", ".join(f"{g:.2f}x" for g in grow)
          + f" (median {median(grow):.2f}x); with images / with the same bytes answered at "
          f"once: " + ", ".join(f"{g:.2f}x" for g in ceiling)
          + f" (median {median(ceiling):.2f}x); noise: tensor-alone p99 "
          f"{alone[0]:.2f}-{alone[-1]:.2f} ms ({alone[-1] / alone[0]:.2f}x)")
    print(f"{name}: medians: tensor req/s with images / alone "
          f"{median([r['mixed']['rps'] / r['alone']['rps'] for r in runs]):.2f}x, "
          f"image req/s beside the tensors "
          f"{median([r['images']['rps_beside'] for r in runs]):,.0f}, "
          f"image p99 {median([r['images']['p99_ms'] for r in runs]):.0f} ms")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", help="git ref of tree B (A: the working tree); none: A only")
    p.add_argument("--size", type=int, default=512, help="JPEG width and height")
    p.add_argument("--duration", type=int, default=4, help="seconds per wrk run")
    p.add_argument("--conns", type=int, default=16, help="connections per wrk")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--tensor-rate", type=int, default=0,
                   help="tensor requests a second, open loop (perf_analyzer); 0: closed "
                        "loop (wrk)")
    p.add_argument("--no-realtime", dest="realtime", action="store_false",
                   help="tensor clients at normal priority (default: SCHED_FIFO if allowed)")
    p.add_argument("--same-model", action="store_true",
                   help="tensor clients call digits_big too (the image model's instance)")
    args = p.parse_args()
    args.realtime = args.realtime and h.can_realtime()
    client = (f"perf_analyzer at {args.tensor_rate} req/s" if args.tensor_rate
              else f"wrk, {args.conns} connections")
    print(f"tensor clients: {client}, {'SCHED_FIFO' if args.realtime else 'normal priority'};"
          f" images: wrk, {args.conns} connections", flush=True)
    with tempfile.TemporaryDirectory(prefix="fastserve-imagemix-") as tmp:
        models, image, header_length = build(Path(tmp) / "models", Path(tmp), args.size)
        tree_b = Path(tmp) / "b"
        trees = [("A", ROOT)]
        if args.base:
            checkout(args.base, tree_b)
            trees.append(("B", tree_b))
        results: dict[str, list[dict]] = {name: [] for name, _ in trees}
        try:
            for i in range(args.rounds):
                for name, tree in trees[:: 1 if i % 2 == 0 else -1]:
                    srv = start(name, tree, models)
                    try:
                        srv.wait_until("GET", "/v2/health/ready", timeout=120)
                        h.wrk(srv.port, "/v2/models/digits_big/infer", 2, image, conns=2,
                              headers={"Inference-Header-Content-Length": header_length})
                        r = measure(srv, image, header_length, args)
                    finally:
                        srv.stop()
                    results[name].append(r)
                    print(f"{name}: tensors alone {r['alone']['rps']:8,.0f} req/s p99 "
                          f"{r['alone']['p99_ms']:7.2f} ms | with images "
                          f"{r['mixed']['rps']:8,.0f} req/s p99 {r['mixed']['p99_ms']:7.2f} ms"
                          f" | with the same bytes ({r['same_bytes']['sent_rps']:,.0f}/s) p99 "
                          f"{r['same_bytes']['p99_ms']:7.2f} ms"
                          f" | images {r['images']['rps_beside']:6,.0f} req/s beside them, p99 "
                          f"{r['images']['p99_ms']:7.2f} ms, {r['images']['timeout']} timed out",
                          flush=True)
        finally:
            if args.base:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree_b)],
                               cwd=ROOT, capture_output=True)
    for name, runs in results.items():
        summarise(name, runs)
    if args.base:  # the same figure of both trees, measured in the same run
        figures = {"tensor p99 with images": ("mixed", "p99_ms"),
                   "tensor p99 alone": ("alone", "p99_ms"),
                   "image req/s beside them": ("images", "rps_beside"),
                   "image p99": ("images", "p99_ms")}
        ratios = {what: median([r[k][f] for r in results["A"]])
                  / median([r[k][f] for r in results["B"]]) for what, (k, f) in figures.items()}
        print("A / B (medians): " + ", ".join(f"{w} {x:.2f}x" for w, x in ratios.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
