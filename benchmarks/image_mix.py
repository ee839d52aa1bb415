"""v2 image requests beside tensor requests: does image traffic slow the tensor clients?

Issue 14: "the tensor clients' p99 no longer grows with image traffic". One server per
tree (the working tree, A; with --base, also that ref, B), each with the digits model
twice: ``digits_ts`` (tensors) and ``digits_big`` (the image_classifier model, its
[image] section resizing to 8x8 so that --size x --size JPEGs are accepted). Per round
and tree, one wrk (--conns) sends small v2 JSON tensors to digits_ts (with --same-model:
to digits_big) alone, then again while a second wrk (--conns) sends one JPEG per request
(v2 binary extension) to digits_big. Printed per round: the tensor clients' req/s and
p99 alone and with images, the images' req/s, p99 and timeouts; then per tree the ratios
p99 with images / p99 alone (same server, one run after the other), their median and
spread, the spread of tensor-alone p99 over the rounds (the noise those ratios sit in),
and the medians of tensor req/s with images / alone and of the images' req/s and p99;
with --base, the medians of A over B. Servers pinned to core 0, both wrk to core 1
(_harness). From the repo root (about 20 s per tree and round; the defaults, 3 rounds of
4 s, take about a minute):

    python benchmarks/image_mix.py
    python benchmarks/image_mix.py --base HEAD~3
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
from pathlib import Path

import _harness as h
import numpy as np
from ab import ROOT, checkout, start
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


def measure(srv: h.Server, image: Path, header_length: str, seconds: int, conns: int,
            same_model: bool) -> dict[str, dict]:
    if same_model:
        tensors, path = image.parent / "tensors.json", "/v2/models/digits_big/infer"
    else:
        tensors = (ROOT / "examples/samples/digits_v2.json").resolve()
        path = "/v2/models/digits_ts/infer"
    alone = h.wrk(srv.port, path, seconds, tensors, conns=conns)
    images: dict = {}

    def send_images() -> None:
        images.update(h.wrk(srv.port, "/v2/models/digits_big/infer", seconds + 2, image,
                            conns=conns,
                            headers={"Inference-Header-Content-Length": header_length}))

    thread = threading.Thread(target=send_images)
    thread.start()
    mixed = h.wrk(srv.port, path, seconds, tensors, conns=conns)
    thread.join()
    # NOTE: image requests that time out (wrk: 2 s) are reported with the images' line;
    # only a failed tensor request, or an image answered with an error, stops the run.
    for what, r in (("tensors alone", alone), ("tensors with images", mixed),
                    ("images", images)):
        timeouts = r["timeout"] if what == "images" else 0
        if r["non_2xx"] or r["socket_errors"] - timeouts:
            raise SystemExit(f"{srv.name}: {what}: {r['non_2xx']} non-2xx, "
                             f"{r['socket_errors']} socket errors ({r})\n{srv.log_tail()}")
    return {"alone": alone, "mixed": mixed, "images": images}


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def summarise(name: str, runs: list[dict]) -> None:
    """Per tree: the p99 ratio per round, and what noise is (tensor-alone p99's spread)."""
    grow = sorted(r["mixed"]["p99_ms"] / r["alone"]["p99_ms"] for r in runs)
    alone = sorted(r["alone"]["p99_ms"] for r in runs)
    print(f"{name}: tensor p99 with images / alone, per round: "
          + ", ".join(f"{g:.2f}x" for g in grow)
          + f" (median {median(grow):.2f}x, spread {grow[0]:.2f}-{grow[-1]:.2f}x); noise: "
          f"tensor-alone p99 {alone[0]:.2f}-{alone[-1]:.2f} ms ({alone[-1] / alone[0]:.2f}x)")
    print(f"{name}: medians: tensor req/s with images / alone "
          f"{median([r['mixed']['rps'] / r['alone']['rps'] for r in runs]):.2f}x, "
          f"image req/s {median([r['images']['rps'] for r in runs]):,.0f}, "
          f"image p99 {median([r['images']['p99_ms'] for r in runs]):.0f} ms")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", help="git ref of tree B (A: the working tree); none: A only")
    p.add_argument("--size", type=int, default=512, help="JPEG width and height")
    p.add_argument("--duration", type=int, default=4, help="seconds per wrk run")
    p.add_argument("--conns", type=int, default=16, help="connections per wrk")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--same-model", action="store_true",
                   help="tensor clients call digits_big too (the image model's instance)")
    args = p.parse_args()
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
                        r = measure(srv, image, header_length, args.duration, args.conns,
                                    args.same_model)
                    finally:
                        srv.stop()
                    results[name].append(r)
                    print(f"{name}: tensors alone {r['alone']['rps']:8,.0f} req/s p99 "
                          f"{r['alone']['p99_ms']:7.2f} ms | with images "
                          f"{r['mixed']['rps']:8,.0f} req/s p99 {r['mixed']['p99_ms']:7.2f} ms"
                          f" | images {r['images']['rps']:6,.0f} req/s p99 "
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
                   "image req/s": ("images", "rps"), "image p99": ("images", "p99_ms")}
        ratios = {what: median([r[k][f] for r in results["A"]])
                  / median([r[k][f] for r in results["B"]]) for what, (k, f) in figures.items()}
        print("A / B (medians): " + ", ".join(f"{w} {x:.2f}x" for w, x in ratios.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
