"""The models the operations tests serve, written with torch at test time.

Kept here rather than in models_factory so these tests do not move when its models do.

| name      | format      | batch | what                                                  |
|-----------|-------------|-------|-------------------------------------------------------|
| digits    | copy of examples/models/digits (.pt2, max_batch_size 32)      |
| versioned | TorchScript | 4     | x FP32 [-1,3]: version N answers x + N (1 and 2)      |
| slow      | TorchScript | 0     | n INT64 [1] -> y FP32 [1] after n 256x256 matmuls     |
| fragile   | TorchScript | 8     | x FP32 [-1,2] -> x * 3; raises for a negative input   |
| twin      | torch.export| 4     | as versioned (x + N, versions 1 and 2), as model.pt2  |
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import torch
from torch import nn

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "models"


class AddConst(nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.value


class Slow(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.eye(256) * 0.5, requires_grad=False)

    def forward(self, n: torch.Tensor) -> torch.Tensor:
        acc = torch.ones(256, 256)
        for _ in range(int(n[0])):
            acc = torch.relu(acc @ self.weight + 1.0)
        return acc.sum().reshape(1)


class Fragile(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x < 0).any()):
            raise ValueError("fragile: negative input")
        return x * 3.0


def _config(folder: Path, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.toml").write_text(text, encoding="utf-8")


def _script(module: nn.Module, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # torch 2.13 deprecates torch.jit; it still works
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(module), str(path))


def write_versioned(value: float, folder: Path) -> Path:
    """``versioned``'s model for one version (x + value) in ``folder``; returns the file.

    TorchScript rather than torch.export: the first export in a process costs seconds.
    """
    path = folder / "model.pt"
    _script(AddConst(value), path)
    return path


def write_exported(value: float, folder: Path) -> Path:
    """``twin``'s model for one version (x + value) as a torch.export program in ``folder``."""
    path = folder / "model.pt2"
    path.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(AddConst(value), (torch.zeros(2, 3),),
                                  dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))
    return path


VERSIONED_CONFIG = """max_batch_size = 4
[[inputs]]
name = "x"
datatype = "FP32"
shape = [-1, 3]
[[outputs]]
name = "y"
datatype = "FP32"
shape = [-1, 3]
"""


def build(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(EXAMPLES / "digits", root / "digits")
    _config(root / "versioned", VERSIONED_CONFIG)
    for version in (1, 2):
        write_versioned(float(version), root / "versioned" / str(version))
    _config(root / "twin", VERSIONED_CONFIG)
    for version in (1, 2):
        write_exported(float(version), root / "twin" / str(version))
    _config(root / "slow", 'max_batch_size = 0\nwarmup = false\n[[inputs]]\nname = "n"\n'
            'datatype = "INT64"\nshape = [1]\n[[outputs]]\nname = "y"\ndatatype = "FP32"\n'
            "shape = [1]\n")
    _script(Slow(), root / "slow" / "1" / "model.pt")
    _config(root / "fragile", 'max_batch_size = 8\n[[inputs]]\nname = "x"\ndatatype = "FP32"\n'
            'shape = [-1, 2]\n[[outputs]]\nname = "y"\ndatatype = "FP32"\nshape = [-1, 2]\n')
    _script(Fragile(), root / "fragile" / "1" / "model.pt")
