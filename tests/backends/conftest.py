"""Fixtures for the backend tests: model folders written at test time, no downloads."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch


def _save_torchscript(module: Any, path: Path) -> None:
    with warnings.catch_warnings():
        # torch.jit.* warns on every call in torch 2.13 (and tracing adds TracerWarnings)
        warnings.simplefilter("ignore")
        torch.jit.save(module, str(path))


def _script(module: torch.nn.Module) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.script(module)


def _trace(module: torch.nn.Module, example: tuple[Any, ...]) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.trace(module, example)


def _export(module: torch.nn.Module, example: tuple[Any, ...], path: Path,
            batch_dim: bool = True) -> None:
    dynamic = None
    if batch_dim:
        batch = torch.export.Dim("batch", min=1, max=1024)
        dynamic = tuple({0: batch} for _ in example)
    program = torch.export.export(module, example, dynamic_shapes=dynamic)
    torch.export.save(program, str(path))


class ModelFolder:
    """``root/<name>/config.toml`` and ``root/<name>/1/``: where a test writes its model."""

    def __init__(self, root: Path, config: str = "") -> None:
        self.folder = root
        self.version = root / "1"
        self.version.mkdir(parents=True, exist_ok=True)
        self.config(config)

    def config(self, text: str) -> ModelFolder:
        (self.folder / "config.toml").write_text(text, encoding="utf-8")
        return self

    def export(self, module: torch.nn.Module, example: tuple[Any, ...],
               batch_dim: bool = True) -> ModelFolder:
        _export(module.eval(), example, self.version / "model.pt2", batch_dim)
        return self

    def script(self, module: torch.nn.Module) -> ModelFolder:
        _save_torchscript(_script(module.eval()), self.version / "model.pt")
        return self

    def trace(self, module: torch.nn.Module, example: tuple[Any, ...]) -> ModelFolder:
        _save_torchscript(_trace(module.eval(), example), self.version / "model.pt")
        return self


@pytest.fixture
def model_folder(tmp_path: Path) -> Callable[..., ModelFolder]:
    """``model_folder(name, config="")``: a fresh model folder under tmp_path."""
    return lambda name="m", config="": ModelFolder(tmp_path / name, config)


@pytest.fixture(scope="module")
def module_folder(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., ModelFolder]:
    """The same, shared by one test module (export once, load in many tests)."""
    return lambda name, config="": ModelFolder(tmp_path_factory.mktemp(name) / name, config)
