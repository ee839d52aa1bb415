"""The requests both servers get, how to send them, how to compare their answers, and
the answers expected from local torch (the archives of build.py)."""

from __future__ import annotations

import http.client
import importlib.util
import io
import json
import math
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mar_build import SOURCES, TinyCNN  # noqa: F401  (TinyCNN: the mnist model's class)

SHIM = Path(__file__).resolve().parent / "shim"
BOUNDARY = "fastserve-ts-boundary"
TOLERANCE = 1e-5


def server_env() -> dict[str, str]:
    """PYTHONPATH for a server of these archives: the torchvision shim (see shim/) first."""
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(SHIM), os.environ.get("PYTHONPATH"))
                                          if p)}


def have_torchvision() -> bool:
    return importlib.util.find_spec("torchvision") is not None


@dataclass
class Case:
    id: str
    model: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"
    version: str = ""  # "" or "/1.0"


@dataclass
class Answer:
    status: int
    content_type: str | None
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def image_png(seed: int = 0, size: tuple[int, int] = (60, 80)) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def multipart(fields: list[tuple[str, bytes, str | None]], files: bool = True
              ) -> tuple[bytes, dict[str, str]]:
    """A form; a field with a content type is a file (has a filename) unless not files."""
    out = b""
    for name, value, ctype in fields:
        out += f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"".encode()
        out += b"; filename=\"f\"" if ctype and files else b""
        out += f"\r\nContent-Type: {ctype}".encode() if ctype else b""
        out += b"\r\n\r\n" + value + b"\r\n"
    out += f"--{BOUNDARY}--\r\n".encode()
    return out, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


JSON = {"Content-Type": "application/json"}
TEXT = {"Content-Type": "text/plain"}
EAGER_ROW = [0.5, -1.0, 2.0, 0.25, 1.5, -0.75, 0.0, 3.0]
BATCH_ROWS = [[1.0, 2.0, 3.0, 4.0], [-1.0, 0.5, 0.0, 2.0], [0.1, 0.2, 0.3, 0.4],
              [5.0, -5.0, 1.0, 0.0]]


def cases() -> list[Case]:
    form, form_headers = multipart([("data", bytes(range(7)), "application/octet-stream"),
                                    ("name", b"joe", None)])
    json_part, json_part_headers = multipart([("data", b'{"x": 1}', "application/json")])
    json_field, json_field_headers = multipart([("data", b'{"x": 1}', "application/json")],
                                               files=False)
    text_part, text_part_headers = multipart([("body", b"words", "text/plain")])
    return [
        Case("mnist-png", "mnist", image_png(0), {"Content-Type": "image/png"}),
        Case("mnist-png-raw", "mnist", image_png(1), {"Content-Type": "application/octet-stream"}),
        Case("mnist-form", "mnist", *multipart([("data", image_png(2), "image/png")])),
        Case("segmenter-png", "segmenter", image_png(3), {"Content-Type": "image/png"}),
        Case("detector-png", "detector", image_png(4), {"Content-Type": "image/png"}),
        Case("eager-json", "eager", json.dumps(EAGER_ROW).encode(), JSON),
        Case("eager-object", "eager", json.dumps({"inputs": EAGER_ROW}).encode(), JSON),
        Case("eager-version", "eager", json.dumps(EAGER_ROW).encode(), JSON, version="/1.0"),
        Case("eager-put", "eager", json.dumps(EAGER_ROW).encode(), JSON, method="PUT"),
        *[Case(f"batch-{i}", "batch", json.dumps(row).encode(), JSON)
          for i, row in enumerate(BATCH_ROWS)],
        Case("batch-text", "batch", json.dumps(BATCH_ROWS[0]).encode(), TEXT),
        Case("stream", "stream", b'{"parts": 4}', JSON),
        Case("headers-json", "headers", b'{"a": 1, "b": [1, 2]}',
             {**JSON, "x-name": "al"}),
        Case("headers-json-charset", "headers", b'{"x": 1}',
             {"Content-Type": "application/json; charset=utf-8"}),
        Case("headers-bad-json", "headers", b"{bad json", JSON),
        Case("headers-text", "headers", b"some text", TEXT),
        Case("headers-octets", "headers", b"[1, 2]", {"Content-Type": "application/octet-stream"}),
        Case("headers-empty", "headers", b"", {"Content-Type": "application/octet-stream"}),
        Case("headers-form", "headers", form, form_headers),
        Case("headers-json-part", "headers", json_part, json_part_headers),
        Case("headers-json-field", "headers", json_field, json_field_headers),
        Case("headers-text-part", "headers", text_part, text_part_headers),
        Case("headers-urlencoded", "headers", b"body=hello+x",
             {"Content-Type": "application/x-www-form-urlencoded"}),
        Case("headers-mode-text", "headers", b"hi", {**TEXT, "x-mode": "text", "x-name": "bob"}),
        Case("headers-mode-bytes", "headers", b"hi", {**TEXT, "x-mode": "bytes"}),
        Case("headers-mode-status", "headers", b"hi", {**TEXT, "x-mode": "status"}),
        Case("headers-mode-boom", "headers", b"hi", {**TEXT, "x-mode": "boom"}),
        Case("unknown-model", "nope", b"[1]", JSON),
    ]


# The one difference kept on purpose (CONTRACT section 3's errors table): a handler that
# raises answers 500 InternalServerException with its reason; TorchServe 0.12 answers 503
# "Prediction failed" for the whole batch.
DIFFERENT = {"headers-mode-boom"}


def send(port: int, case: Case, timeout: float = 60.0) -> Answer:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(case.method, f"/predictions/{case.model}{case.version}", body=case.body,
                     headers=case.headers)
        response = conn.getresponse()
        return Answer(response.status, response.getheader("content-type"), response.read())
    finally:
        conn.close()


def same_json(a: Any, b: Any, path: str = "$") -> None:
    """Equal JSON values, numbers within TOLERANCE; raises AssertionError naming the spot."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not (
            isinstance(a, bool) or isinstance(b, bool)):
        assert math.isclose(a, b, rel_tol=TOLERANCE, abs_tol=TOLERANCE), f"{path}: {a} != {b}"
    elif isinstance(a, dict) and isinstance(b, dict):
        assert list(a) == list(b), f"{path}: keys {list(a)} != {list(b)}"
        for key in a:
            same_json(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{path}: {len(a)} items != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same_json(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def same_body(a: bytes, b: bytes) -> None:
    try:
        left, right = json.loads(a), json.loads(b)
    except ValueError:
        assert a == b
        return
    same_json(left, right)


# Expected answers, computed here with torch


def _scripted(path: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.load(str(path))


def _imagenet(png: bytes) -> torch.Tensor:
    """TorchServe's vision handlers' preprocessing, batch of one."""
    from PIL import Image
    from torchvision import transforms

    prep = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224),
                               transforms.ToTensor(),
                               transforms.Normalize([0.485, 0.456, 0.406],
                                                    [0.229, 0.224, 0.225])])
    return prep(Image.open(io.BytesIO(png)))[None]


def expected_mnist(work: Path, png: bytes) -> dict[str, float]:
    """image_classifier's answer: TorchServe's transforms, softmax, top 5 with labels."""
    with torch.inference_mode():
        p = torch.softmax(_scripted(work / "mnist.pt")(_imagenet(png)), dim=1)[0]
    labels = json.loads((SOURCES / "mnist" / "index_to_name.json").read_text())
    top = torch.topk(p, 5)
    return {labels[str(int(i))]: float(v) for v, i in zip(top.values, top.indices,
                                                           strict=True)}


def expected_segmenter(work: Path, png: bytes) -> list[Any]:
    """image_segmenter's answer: per pixel [class, probability] of the most probable."""
    with torch.inference_mode():
        out = _scripted(work / "segmenter.pt")(_imagenet(png))["out"]
        best = torch.max(torch.softmax(out, dim=1), dim=1)
        return torch.stack([best.indices.type(best.values.dtype), best.values],
                           dim=3)[0].tolist()


def expected_detector(work: Path, png: bytes) -> list[dict[str, Any]]:
    """object_detector's answer: the image as it is (ToTensor, no resize), the boxes that
    score >= 0.5, each as {label name: box, "score": score}."""
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32) / 255.0
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None]
    names = json.loads((SOURCES / "detector" / "index_to_name.json").read_text())
    with torch.inference_mode():
        (found,) = _scripted(work / "detector.pt")(x)
    keep = found["scores"] >= 0.5
    return [{names[str(int(label))]: box, "score": score}
            for label, box, score in zip(found["labels"][keep].tolist(),
                                         found["boxes"][keep].tolist(),
                                         found["scores"][keep].tolist(), strict=True)]


def expected_eager(work: Path, row: list[float]) -> dict[str, Any]:
    sys.path.insert(0, str(SOURCES / "eager"))
    try:
        from model import TinyMLP  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(SOURCES / "eager"))
        sys.modules.pop("model", None)
    model = TinyMLP()
    model.load_state_dict(torch.load(work / "eager.pth"))
    with torch.inference_mode():
        out = model.eval()(torch.tensor([row]))[0]
    return {"scores": out.tolist(), "label": int(out.argmax())}


def expected_batch(work: Path, row: list[float]) -> dict[str, Any]:
    with torch.inference_mode():
        out = _scripted(work / "batch.pt")(torch.tensor([row]))[0] * 2.0  # yaml scale: 2.0
    return {"sum": float(out.sum()), "values": out.tolist()}
