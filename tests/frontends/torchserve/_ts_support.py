"""TorchServe API tests' support: the model repository they serve, and the local oracle.

| name           | handler          | batch | what                                                |
|----------------|------------------|-------|-----------------------------------------------------|
| digits         | tensor           | 32    | copy of examples/models/digits (.pt2, [-1, 64])     |
| digits_ts      | tensor           | 0     | copy of examples/models/digits_ts (TorchScript)     |
| digits_image   | image_classifier | 32    | copy of examples/models/digits_image (8x8 grey PNG) |
| digits_sal     | tensor           | 32    | digits with explainer = "saliency"                  |
| digits_handler | handler.py       | 8     | the worked example of docs/handlers.md, as written  |
| wrong_count    | handler.py       | 8     | postprocess: one answer too many, any batch         |
| rgb            | image_classifier | 4     | conv [-1,3,12,12] -> 7 classes; resize 16, crop 12, |
|                |                  |       | input_x_gradient; index_to_name.json labels         |
| pair           | tensor           | 4     | a, b FP32 [-1,3] -> (a * b, a + b)                  |

The server (conftest.py) runs with ``--max-request-size 4MB`` (the 413 tests). Expected
answers are computed with the same files (``Local``), never written down.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples" / "models"
SAMPLES = ROOT / "examples" / "samples"
DOC = ROOT / "docs" / "handlers.md"
MAX_REQUEST = 4_000_000
RGB_LABELS = {str(i): [f"n0000{i}", name] for i, name in
              enumerate(["cat", "dog", "owl", "fox", "elk", "emu", "yak"])}

WRONG_COUNT = '''
class OneTooMany:
    def initialize(self, context):
        self.context = context

    def preprocess(self, data):
        return data

    def inference(self, data):
        return data

    def postprocess(self, data):
        return [len(data)] * (len(data) + 1)  # one answer too many, whatever the batch
'''


class Rgb(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                 nn.Flatten(), nn.Linear(4, 7))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Pair(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return a * b, a + b


def doc_block(marker: str) -> str:
    """The code block right after ``<!-- worked-example: marker -->`` in docs/handlers.md."""
    text = DOC.read_text(encoding="utf-8")
    m = re.search(rf"<!-- worked-example: {re.escape(marker)} -->\n```\w*\n(.*?)```", text,
                  re.S)
    assert m is not None, f"docs/handlers.md has no worked-example block {marker!r}"
    return m.group(1)


def _trace_save(module: nn.Module, example: tuple[Any, ...], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # torch.jit warns on every call in torch 2.13
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(module.eval(), example), str(path))


def _copy(name: str, root: Path, target: str | None = None) -> Path:
    dest = root / (target or name)
    shutil.copytree(EXAMPLES / name, dest)
    return dest


def build_repository(root: Path) -> None:
    for name in ("digits", "digits_ts", "digits_image"):
        _copy(name, root)
    sal = _copy("digits", root, "digits_sal")
    config = (sal / "config.toml").read_text()
    (sal / "config.toml").write_text('explainer = "saliency"\n' + config)

    handler = root / "digits_handler"
    (handler / "1").mkdir(parents=True)
    shutil.copy(EXAMPLES / "digits" / "1" / "model.pt2", handler / "1" / "model.pt2")
    (handler / "handler.py").write_text(doc_block("handler.py"))
    (handler / "config.toml").write_text(doc_block("config.toml"))

    wrong = root / "wrong_count"
    (wrong / "1").mkdir(parents=True)
    (wrong / "handler.py").write_text(WRONG_COUNT)
    (wrong / "config.toml").write_text('handler = "handler.py"\nmax_batch_size = 8\n')

    torch.manual_seed(0)
    rgb = root / "rgb"
    _trace_save(Rgb(), (torch.zeros(2, 3, 12, 12),), rgb / "1" / "model.pt")
    (rgb / "config.toml").write_text(
        'handler = "image_classifier"\nexplainer = "input_x_gradient"\nmax_batch_size = 4\n'
        "[image]\nresize = 16\ncrop = 12\n"
        '[[inputs]]\nname = "image"\ndatatype = "FP32"\nshape = [-1, 3, 12, 12]\n'
        '[[outputs]]\nname = "logits"\ndatatype = "FP32"\nshape = [-1, 7]\n')
    (rgb / "index_to_name.json").write_text(json.dumps(RGB_LABELS))

    pair = root / "pair"
    _trace_save(Pair(), (torch.zeros(2, 3), torch.zeros(2, 3)), pair / "1" / "model.pt")
    (pair / "config.toml").write_text(
        "max_batch_size = 4\n"
        '[[inputs]]\nname = "a"\ndatatype = "FP32"\nshape = [-1, 3]\n'
        '[[inputs]]\nname = "b"\ndatatype = "FP32"\nshape = [-1, 3]\n'
        '[[outputs]]\nname = "prod"\ndatatype = "FP32"\nshape = [-1, 3]\n'
        '[[outputs]]\nname = "sum"\ndatatype = "FP32"\nshape = [-1, 3]\n')


class Local:
    """The repository's models loaded in the test process: the oracle."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._models: dict[str, Any] = {}

    def model(self, name: str) -> Any:
        if name not in self._models:
            folder = self.root / name / "1"
            if (folder / "model.pt2").exists():
                self._models[name] = torch.export.load(str(folder / "model.pt2")).module()
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self._models[name] = torch.jit.load(str(folder / "model.pt"))
        return self._models[name]

    def run(self, name: str, *args: Any) -> Any:
        with torch.no_grad():
            return self.model(name)(*(torch.as_tensor(np.asarray(a)) for a in args))

    def labels(self, name: str) -> dict[str, str]:
        for filename in ("labels.json", "index_to_name.json"):
            path = self.root / name / filename
            if path.exists():
                raw = json.loads(path.read_text())
                return {k: v[-1] if isinstance(v, list) else v for k, v in raw.items()}
        return {}

    def top5(self, name: str, logits: torch.Tensor) -> list[tuple[str, float]]:
        """TorchServe's image_classifier postprocess: softmax, topk, labels."""
        probs = torch.softmax(logits.to(torch.float64).reshape(-1), 0)
        values, indices = torch.topk(probs, min(5, probs.numel()))
        labels = self.labels(name)
        return [(labels.get(str(int(i)), str(int(i))), float(v))
                for v, i in zip(values, indices, strict=True)]


def digit_png(path: Path) -> np.ndarray:
    """A samples PNG as the digits model's [64] input (pixel / 240 = value / 16)."""
    return (np.asarray(Image.open(path), dtype=np.float32) / 240.0).reshape(64)


def rgb_tensor(data: bytes) -> torch.Tensor:
    """The rgb model's preprocessing, written out with PIL and torch ops (torchvision's
    Resize(16) + CenterCrop(12) + ToTensor + Normalize(ImageNet))."""
    img = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = img.size
    size = (16, int(16 * h / w)) if w <= h else (int(16 * w / h), 16)
    img = img.resize(size, Image.Resampling.BILINEAR)
    left, top = int(round((size[0] - 12) / 2.0)), int(round((size[1] - 12) / 2.0))
    img = img.crop((left, top, left + 12, top + 12))
    t = torch.from_numpy(np.array(img)).permute(2, 0, 1).to(torch.float32) / 255.0
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    return (t - mean) / std


def noise_image(width: int, height: int, fmt: str, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, format=fmt)
    return buf.getvalue()


