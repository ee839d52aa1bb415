"""Which backend loads a model version: the torch backend, a TorchServe archive's handler, or
a folder's own handler.py. torch is imported on first use (off the loop)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from .backends import ts_envelope
from .core.archive import DEFAULT_MAX_SIZE, install_requirements, read_archive
from .core.archive_extract import prepare
from .core.model_config import ModelConfig


class TorchLoader:
    """Loads versions with the torch backend, importing torch on first use (off the loop)."""

    def __init__(self, device: str, threads: int, max_archive_size: int = 0) -> None:
        self.device = device
        self.threads = threads
        self.max_archive_size = max_archive_size
        self._backend: Any = None

    def __call__(self, folder: Path, config: ModelConfig, labels: dict[str, str]) -> Any:
        if self._backend is None:
            from .backends import devices

            devices.set_threads(self.threads)
            from .backends import torch as torch_backend

            self._backend = torch_backend
        if config.device == "auto" and self.device != "auto":
            config = dataclasses.replace(config, device=self.device)
        if config.handler == "torchserve":  # a TorchServe archive (core/archive.py)
            from .backends import ts_handler

            folder = prepare(folder, self.max_archive_size or DEFAULT_MAX_SIZE)
            if ts_envelope.settings.install_py_dep_per_model:
                install_requirements(folder, read_archive(folder).manifest)
            return ts_handler.load(folder, config, labels)
        if config.handler == "handler.py":
            from .backends import custom

            return custom.load(folder, config, labels)
        return self._backend.load(folder, config, labels)
