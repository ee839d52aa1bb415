"""TF Serving REST fixtures: a model repository written with torch at test time, one server.

| name            | batch | what                                                              |
|-----------------|-------|-------------------------------------------------------------------|
| half_plus_three | 8     | version 123: x FP32 [-1] -> y = 0.5 x + 3 (TF's doc example)      |
| half_plus_two   | 4     | x FP32 [-1,1,2] -> y = 0.5 x + 2 (version 1), 0.5 x + 2.5 (2)    |
| two_io          | 4     | a, b FP32 [-1,3] -> sum = a + b, prod = a * b                     |
| multi           | 0     | tag BYTES [-1], signal INT64 [-1,5], sensor INT64 [-1,2,2] ->     |
|                 |       | tag_bytes, tag_upper BYTES, signal_sum INT64, sensor_mean FP32    |
| words           | 0     | text BYTES [-1] -> length INT64 [-1]                              |
| iris            | 8     | x FP32 [-1,4] -> scores FP32 [-1,3] (softmax); labels.json        |
| objects         | 0     | image, caption BYTES [-1] -> scores FP32 [-1,2]; no labels        |
| house           | 8     | size, rooms FP32 [-1,1] -> price FP32 [-1,1]                      |
| picture         | 4     | handler = "image_classifier", [-1,3,4,4] -> [-1,2]                |
| broken          | a model.pt that is not TorchScript: FAILED at load                 |
| no_version      | a model folder without a version folder: FAILED                    |

All TorchScript (model.pt): the front-end does not care about the format, and
torch.export's first use costs seconds twice (here and in the server). Expected
answers are computed with the same files loaded here (``local``), never written down.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from _server import ServerProcess  # tests/ is on sys.path (tests/conftest.py)


class HalfPlus(nn.Module):
    def __init__(self, constant: float) -> None:
        super().__init__()
        self.constant = constant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x + self.constant


class TwoIO(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return a + b, a * b


class Multi(nn.Module):
    def forward(self, tag: list[str], signal: torch.Tensor, sensor: torch.Tensor
                ) -> tuple[list[str], list[str], torch.Tensor, torch.Tensor]:
        upper = [t.upper() for t in tag]
        return ([t + "!" for t in upper], upper, signal.sum(1),
                sensor.to(torch.float32).mean(dim=(1, 2)))


class Words(nn.Module):
    def forward(self, text: list[str]) -> torch.Tensor:
        return torch.tensor([len(t) for t in text], dtype=torch.int64)


class Iris(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.linear(x), dim=1)


class Objects(nn.Module):
    def forward(self, image: list[str], caption: list[str]) -> torch.Tensor:
        rows = [[len(image[i]) / 10.0, len(caption[i]) / 10.0] for i in range(len(image))]
        return torch.tensor(rows, dtype=torch.float32)


class House(nn.Module):
    def forward(self, size: torch.Tensor, rooms: torch.Tensor) -> torch.Tensor:
        return 2.0 * size + 0.5 * rooms


class Picture(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x.mean(dim=(1, 2, 3)), x.amax(dim=(1, 2, 3))], dim=1)


def _config(folder: Path, head: str,
            tensors: Iterable[tuple[str, str, str, list[int]]] = ()) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    parts = [head]
    for section, name, datatype, shape in tensors:
        parts.append(f'[[{section}]]\nname = "{name}"\ndatatype = "{datatype}"\n'
                     f"shape = {shape}\n")
    (folder / "config.toml").write_text("\n".join(parts), encoding="utf-8")


def _script(module: nn.Module, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # torch 2.13 deprecates torch.jit; it still works
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(module), str(path))


def build_repository(root: Path) -> None:
    folder = root / "half_plus_three"
    _config(folder, "max_batch_size = 8\n", [("inputs", "x", "FP32", [-1]),
                                            ("outputs", "y", "FP32", [-1])])
    _script(HalfPlus(3.0), folder / "123" / "model.pt")

    folder = root / "half_plus_two"
    _config(folder, "max_batch_size = 4\n", [("inputs", "x", "FP32", [-1, 1, 2]),
                                            ("outputs", "y", "FP32", [-1, 1, 2])])
    for version, constant in (("1", 2.0), ("2", 2.5)):
        _script(HalfPlus(constant), folder / version / "model.pt")

    folder = root / "two_io"
    _config(folder, "max_batch_size = 4\n", [
        ("inputs", "a", "FP32", [-1, 3]), ("inputs", "b", "FP32", [-1, 3]),
        ("outputs", "sum", "FP32", [-1, 3]), ("outputs", "prod", "FP32", [-1, 3])])
    _script(TwoIO(), folder / "1" / "model.pt")

    folder = root / "multi"
    _config(folder, "max_batch_size = 0\n", [
        ("inputs", "tag", "BYTES", [-1]), ("inputs", "signal", "INT64", [-1, 5]),
        ("inputs", "sensor", "INT64", [-1, 2, 2]),
        ("outputs", "tag_bytes", "BYTES", [-1]), ("outputs", "tag_upper", "BYTES", [-1]),
        ("outputs", "signal_sum", "INT64", [-1]), ("outputs", "sensor_mean", "FP32", [-1])])
    _script(Multi(), folder / "1" / "model.pt")

    folder = root / "words"
    _config(folder, "max_batch_size = 0\n", [("inputs", "text", "BYTES", [-1]),
                                            ("outputs", "length", "INT64", [-1])])
    _script(Words(), folder / "1" / "model.pt")

    folder = root / "iris"
    _config(folder, "max_batch_size = 8\n", [("inputs", "x", "FP32", [-1, 4]),
                                            ("outputs", "scores", "FP32", [-1, 3])])
    (folder / "labels.json").write_text(
        json.dumps({"0": "setosa", "1": "versicolor", "2": "virginica"}), encoding="utf-8")
    _script(Iris(), folder / "1" / "model.pt")

    folder = root / "objects"
    _config(folder, "max_batch_size = 0\n", [
        ("inputs", "image", "BYTES", [-1]), ("inputs", "caption", "BYTES", [-1]),
        ("outputs", "scores", "FP32", [-1, 2])])
    _script(Objects(), folder / "1" / "model.pt")

    folder = root / "house"
    _config(folder, "max_batch_size = 8\n", [
        ("inputs", "size", "FP32", [-1, 1]), ("inputs", "rooms", "FP32", [-1, 1]),
        ("outputs", "price", "FP32", [-1, 1])])
    _script(House(), folder / "1" / "model.pt")

    folder = root / "picture"
    _config(folder, 'max_batch_size = 4\nhandler = "image_classifier"\n\n'
                    "[image]\nresize = 4\ncrop = 4\n", [
        ("inputs", "input__0", "FP32", [-1, 3, 4, 4]),
        ("outputs", "output__0", "FP32", [-1, 2])])
    _script(Picture(), folder / "1" / "model.pt")

    folder = root / "broken"
    _config(folder, "max_batch_size = 0\n")
    (folder / "1").mkdir()
    (folder / "1" / "model.pt").write_bytes(b"this is not a TorchScript archive")

    (root / "no_version").mkdir()


@pytest.fixture(scope="session")
def tf_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tf_models")
    build_repository(root)
    return root


@pytest.fixture(scope="session")
def tf_server(tf_models: Path) -> Iterator[ServerProcess]:
    """ONE fastserve on the repository above, for every TF Serving test."""
    with ServerProcess(tf_models) as server:
        yield server


@pytest.fixture(scope="session")
def local(tf_models: Path) -> Callable[..., Any]:
    """local(name, version="1") -> that model file loaded with torch (cached)."""
    cache: dict[tuple[str, str], Any] = {}

    def get(name: str, version: str = "1") -> Any:
        key = (name, version)
        if key not in cache:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                cache[key] = torch.jit.load(str(tf_models / name / version / "model.pt")).eval()
        return cache[key]

    return get
