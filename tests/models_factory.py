"""Write model repositories for the server tests, built with torch at test time.

``build_repository(root)`` writes every model below into ``root`` and returns the
names it wrote; ``build_repository(root, names)`` writes only those. The models
are tiny and deterministic so a test can compute the expected answer locally with
the same file (``load_model``), never from constants.

| name           | format      | batch | what                                                     |
|----------------|-------------|-------|----------------------------------------------------------|
| digits         | copy of examples/models/digits (.pt2, max_batch_size 32)         |
| digits_ts      | copy of examples/models/digits_ts (TorchScript, max_batch_size 0) |
| digits_image   | copy of examples/models/digits_image (.pt2, image_classifier)    |
| two_io         | .pt2        | 8     | a FP32 [-1,4], b INT64 [-1,4] -> sum FP32, twice INT64   |
| strlen         | TorchScript | 0     | text BYTES [-1] (List[str]) -> length INT64, upper BYTES |
| versioned      | .pt2        | 4     | x FP32 [-1,3]: version 1 -> x + 1, version 2 -> x + 2    |
| fragile        | TorchScript | 8     | x FP32 [-1,2] -> x * 3; raises for a negative input      |
| half           | .pt2        | 4     | x FP16 [-1,4] -> x * 2 (FP16)                            |
| alltypes       | .pt2        | 0     | one input per datatype, static [2,3]; one output each    |
| slow           | TorchScript | 0     | x FP32 [-1], n INT64 [1] -> x * 2 after n 256x256 matmuls |
| broken_config  | config.toml is not TOML: FAILED                                  |
| no_version     | a model folder with no version folder: FAILED                    |
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "models"

# alltypes: input/output order and datatypes (the metadata lists them in this order)
ALLTYPES = ("BOOL", "UINT8", "INT8", "INT16", "INT32", "INT64", "FP16", "BF16", "FP32", "FP64")
ALLTYPES_SHAPE = (2, 3)
TORCH_DTYPES = {
    "BOOL": torch.bool, "UINT8": torch.uint8, "INT8": torch.int8, "INT16": torch.int16,
    "INT32": torch.int32, "INT64": torch.int64, "FP16": torch.float16,
    "BF16": torch.bfloat16, "FP32": torch.float32, "FP64": torch.float64,
}
FAILED_MODELS = ("broken_config", "no_version")


def _tensor_table(section: str, name: str, datatype: str, shape: Iterable[int]) -> str:
    return (f'[[{section}]]\nname = "{name}"\ndatatype = "{datatype}"\n'
            f"shape = {list(shape)}\n")


def _config(folder: Path, head: str, tensors: Iterable[tuple[str, str, str, Iterable[int]]]
            ) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    body = "\n".join([head] + [_tensor_table(*t) for t in tensors])
    (folder / "config.toml").write_text(body, encoding="utf-8")


def _export(module: nn.Module, args: tuple[Any, ...], path: Path, batched: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    dynamic = None
    if batched:
        batch = torch.export.Dim("batch", min=1, max=1024)
        dynamic = tuple({0: batch} for _ in args)
    program = torch.export.export(module, args, dynamic_shapes=dynamic)
    torch.export.save(program, str(path))


def _script(module: nn.Module, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # torch 2.13 deprecates torch.jit; it still works
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(module), str(path))


# The modules


class TwoIO(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return a * 2.0 + b.to(torch.float32), b * 2


class StrLen(nn.Module):
    def forward(self, text: list[str]) -> tuple[torch.Tensor, list[str]]:
        lengths = torch.tensor([len(s) for s in text], dtype=torch.int64)
        return lengths, [s.upper() for s in text]


class AddConst(nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.value


class Fragile(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x < 0).any()):
            raise ValueError("fragile: negative input")
        return x * 3.0


class Half(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


class AllTypes(nn.Module):
    def forward(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(alltypes_expected(x) for x in xs)


def alltypes_expected(x: torch.Tensor) -> torch.Tensor:
    """What alltypes does to each input: NOT for BOOL, + 1 for integers, * 2 for floats."""
    if x.dtype == torch.bool:
        return torch.logical_not(x)
    if x.is_floating_point():
        return x * 2
    return x + 1


class Slow(nn.Module):
    """y = x * 2 after n dummy 256x256 matmuls: the answer does not depend on n."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.eye(256) * 0.5, requires_grad=False)

    def forward(self, x: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        acc = torch.ones(256, 256)
        for _ in range(int(n[0])):
            acc = torch.relu(acc @ self.weight + 1.0)
        return x * 2.0 + (acc.sum() * 0.0)


# The model folders


def _copy_example(root: Path, name: str) -> None:
    shutil.copytree(EXAMPLES / name, root / name)


def _two_io(root: Path) -> None:
    folder = root / "two_io"
    _config(folder, "max_batch_size = 8\nbatch_delay_ms = 2.0\n", [
        ("inputs", "a", "FP32", [-1, 4]), ("inputs", "b", "INT64", [-1, 4]),
        ("outputs", "sum", "FP32", [-1, 4]), ("outputs", "twice", "INT64", [-1, 4])])
    _export(TwoIO(), (torch.zeros(2, 4), torch.zeros(2, 4, dtype=torch.int64)),
            folder / "1" / "model.pt2", batched=True)


def _strlen(root: Path) -> None:
    folder = root / "strlen"
    _config(folder, "max_batch_size = 0\n", [
        ("inputs", "text", "BYTES", [-1]), ("outputs", "length", "INT64", [-1]),
        ("outputs", "upper", "BYTES", [-1])])
    _script(StrLen(), folder / "1" / "model.pt")


def _versioned(root: Path) -> None:
    folder = root / "versioned"
    _config(folder, "max_batch_size = 4\n", [
        ("inputs", "x", "FP32", [-1, 3]), ("outputs", "y", "FP32", [-1, 3])])
    for version in (1, 2):
        _export(AddConst(float(version)), (torch.zeros(2, 3),),
                folder / str(version) / "model.pt2", batched=True)


def _fragile(root: Path) -> None:
    folder = root / "fragile"
    # A long batch delay lets concurrent requests share a batch (failure isolation).
    _config(folder, "max_batch_size = 8\nbatch_delay_ms = 20.0\n", [
        ("inputs", "x", "FP32", [-1, 2]), ("outputs", "y", "FP32", [-1, 2])])
    _script(Fragile(), folder / "1" / "model.pt")


def _half(root: Path) -> None:
    folder = root / "half"
    _config(folder, "max_batch_size = 4\n", [
        ("inputs", "x", "FP16", [-1, 4]), ("outputs", "y", "FP16", [-1, 4])])
    _export(Half(), (torch.zeros(2, 4, dtype=torch.float16),), folder / "1" / "model.pt2",
            batched=True)


def _alltypes(root: Path) -> None:
    folder = root / "alltypes"
    folder.mkdir(parents=True)
    (folder / "config.toml").write_text("max_batch_size = 0\n", encoding="utf-8")
    args = tuple(torch.zeros(ALLTYPES_SHAPE, dtype=TORCH_DTYPES[t]) for t in ALLTYPES)
    _export(AllTypes(), args, folder / "1" / "model.pt2", batched=False)


def _slow(root: Path) -> None:
    folder = root / "slow"
    _config(folder, "max_batch_size = 0\nwarmup = false\n", [
        ("inputs", "x", "FP32", [-1]), ("inputs", "n", "INT64", [1]),
        ("outputs", "y", "FP32", [-1])])
    _script(Slow(), folder / "1" / "model.pt")


def _broken_config(root: Path) -> None:
    folder = root / "broken_config"
    (folder / "1").mkdir(parents=True)
    (folder / "config.toml").write_text("max_batch_size = [unclosed\n", encoding="utf-8")
    shutil.copy(EXAMPLES / "digits" / "1" / "model.pt2", folder / "1" / "model.pt2")


def _no_version(root: Path) -> None:
    folder = root / "no_version"
    folder.mkdir(parents=True)
    (folder / "config.toml").write_text("max_batch_size = 0\n", encoding="utf-8")


BUILDERS = {
    "digits": lambda root: _copy_example(root, "digits"),
    "digits_ts": lambda root: _copy_example(root, "digits_ts"),
    "digits_image": lambda root: _copy_example(root, "digits_image"),
    "two_io": _two_io,
    "strlen": _strlen,
    "versioned": _versioned,
    "fragile": _fragile,
    "half": _half,
    "alltypes": _alltypes,
    "slow": _slow,
    "broken_config": _broken_config,
    "no_version": _no_version,
}


def build_repository(root: Path, names: Iterable[str] | None = None) -> list[str]:
    """Write the named models (default: all) into ``root``; return their names."""
    root.mkdir(parents=True, exist_ok=True)
    chosen = list(BUILDERS) if names is None else list(names)
    for name in chosen:
        BUILDERS[name](root)
    return chosen


def model_file(root: Path, name: str, version: str = "1") -> Path:
    folder = root / name / version
    for filename in ("model.pt2", "model.pt"):
        if (folder / filename).exists():
            return folder / filename
    raise FileNotFoundError(f"no model file in {folder}")


def load_model(path: Path) -> Any:
    """The model file as a callable, loaded the way the server loads it."""
    if path.suffix == ".pt2":
        return torch.export.load(str(path)).module()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = torch.jit.load(str(path))
    model.eval()
    return model
