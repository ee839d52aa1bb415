"""Builds the test archives with the real torch-model-archiver 0.12, from the handlers
and models in sources/ (written in TorchServe's style) and weights made here.

    mnist    built-in image_classifier, a TorchScript CNN, index_to_name.json extra file
    segmenter  built-in image_segmenter, a TorchScript model answering {"out": ...}
    eager    --model-file model.py + a state dict, a BaseHandler subclass
    batch    a custom batch handler class, model-config.yaml (batchSize 4, handler keys)
    stream   a handler that streams with send_intermediate_predict_response
    headers  a module function handle(data, context) using headers, status, content type
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import torch
from torch import nn

SOURCES = Path(__file__).resolve().parent / "sources"
VERSION = "1.0"


class TinyCNN(nn.Module):
    """MNIST-like: a small conv net over 3 x 224 x 224 images, 10 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, kernel_size=8, stride=8)
        self.fc = nn.Linear(4 * 28 * 28, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


class TinySegmenter(nn.Module):
    """A 1x1 conv over the image: 3 classes per pixel, under "out" as image_segmenter reads."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, kernel_size=1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.conv(x)}


class TinyDetector(nn.Module):
    """torchvision detectors' interface (one {boxes, labels, scores} per image) over each
    image's channel means; two of its four boxes score >= 0.5, object_detector's cut."""

    def __init__(self) -> None:
        super().__init__()
        self.score = nn.Linear(3, 4)
        self.box = nn.Linear(3, 16)
        with torch.no_grad():
            self.score.weight.mul_(0.1)
            self.score.bias.copy_(torch.tensor([3.0, -3.0, 2.0, -2.0]))

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        found: list[dict[str, torch.Tensor]] = []
        for image in x.unbind(0):
            means = image.mean(dim=[1, 2])
            found.append({"boxes": self.box(means).reshape(4, 4) * 100.0,
                          "labels": torch.arange(1, 5),
                          "scores": torch.sigmoid(self.score(means))})
        return found


def _archive(out: Path, name: str, *args: str) -> Path:
    """torch-model-archiver's own command line, run in this process."""
    from unittest import mock

    from model_archiver.arg_parser import ArgParser
    from model_archiver.model_packaging import generate_model_archive

    out.mkdir(parents=True, exist_ok=True)
    argv = ["--model-name", name, "--version", VERSION, "--export-path", str(out), "--force",
            *args]
    with mock.patch.object(sys, "argv", ["torch-model-archiver", *argv]):
        config = ArgParser.export_model_args_parser()  # parses sys.argv, as its CLI does
    generate_model_archive(config)
    return out / f"{name}.mar"


def _script(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():  # torch 2.13 deprecates torch.jit; TorchServe uses it
        warnings.simplefilter("ignore")
        torch.jit.trace(model.eval(), example).save(str(path))


def weights(out: Path) -> Path:
    """Where the weights of the archives in ``out`` are kept (beside it, never inside: a
    folder in a model store is a model to TorchServe)."""
    return out.parent / f"{out.name}-weights"


def build(out: Path) -> dict[str, Path]:
    """Every archive in TorchServe 0.12's reach, by model name."""
    work = weights(out)
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    _script(TinyCNN(), torch.zeros(1, 3, 224, 224), work / "mnist.pt")
    sys.path.insert(0, str(SOURCES / "eager"))
    try:
        from model import TinyMLP  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(SOURCES / "eager"))
        sys.modules.pop("model", None)
    torch.save(TinyMLP().state_dict(), work / "eager.pth")
    _script(nn.Linear(4, 2), torch.zeros(1, 4), work / "batch.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(TinySegmenter().eval()).save(str(work / "segmenter.pt"))
        torch.jit.script(TinyDetector().eval()).save(str(work / "detector.pt"))
    src = SOURCES
    return {
        "mnist": _archive(out, "mnist", "--serialized-file", str(work / "mnist.pt"),
                          "--handler", "image_classifier",
                          "--extra-files", str(src / "mnist" / "index_to_name.json")),
        "eager": _archive(out, "eager", "--model-file", str(src / "eager" / "model.py"),
                          "--serialized-file", str(work / "eager.pth"),
                          "--handler", str(src / "eager" / "handler.py")),
        "batch": _archive(out, "batch", "--serialized-file", str(work / "batch.pt"),
                          "--handler", str(src / "batch" / "batch_handler.py"),
                          "--config-file", str(src / "batch" / "model-config.yaml")),
        "segmenter": _archive(out, "segmenter", "--serialized-file",
                              str(work / "segmenter.pt"), "--handler", "image_segmenter"),
        "detector": _archive(out, "detector", "--serialized-file", str(work / "detector.pt"),
                             "--handler", "object_detector", "--extra-files",
                             str(src / "detector" / "index_to_name.json")),
        "stream": _archive(out, "stream", "--handler",
                           str(src / "stream" / "stream_handler.py")),
        "headers": _archive(out, "headers", "--handler", str(src / "headers" / "echo.py")),
    }


def build_fastserve_only(out: Path) -> dict[str, Path]:
    """Archives TorchServe 0.12 itself cannot serve or that must FAIL: a .pt2 program behind
    a BaseHandler subclass, a handler raising in initialize, one importing a missing
    package; and one that answers late (responseTimeout 1 s, 2 workers)."""
    work = weights(out)
    work.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(SOURCES / "eager"))
    try:
        from model import TinyMLP  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(SOURCES / "eager"))
        sys.modules.pop("model", None)
    torch.manual_seed(1)
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(TinyMLP().eval(), (torch.zeros(2, 8),),
                                  dynamic_shapes=({0: batch},))
    torch.export.save(program, str(work / "exported.pt2"))
    torch.save(TinyMLP().state_dict(), work / "exported_eager.pth")
    broken = SOURCES / "broken"
    return {
        "exported": _archive(out, "exported", "--serialized-file", str(work / "exported.pt2"),
                             "--handler", str(SOURCES / "eager" / "handler.py")),
        "initfails": _archive(out, "initfails", "--handler", str(broken / "init_fails.py")),
        "missingdep": _archive(out, "missingdep", "--handler",
                               str(broken / "needs_missing.py")),
        "slow": _archive(out, "slow", "--handler", str(SOURCES / "slow" / "slow_handler.py"),
                         "--config-file", str(SOURCES / "slow" / "model-config.yaml")),
    }


if __name__ == "__main__":
    print(build(Path(sys.argv[1])))
