"""Which device a model version runs on, what to say when it does not fit there, and how
many CPU threads torch's operators use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError


def resolve_device(requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device = {requested!r} but CUDA is not available on this machine; "
                              "use \"auto\" or \"cpu\"")
        index = int(requested[5:] or 0) if ":" in requested else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device = {requested!r} but only {torch.cuda.device_count()} CUDA "
                              "device(s) exist")
    return requested


def too_large(path: Path | None, device: str, exc: BaseException) -> ConfigError:
    what = path.name if path is not None else "the model's warm-up batch"
    first = str(exc).split("\n", 1)[0]
    return ConfigError(f"{what} does not fit in {device}'s memory ({first}); free the device, "
                       "use fewer instances or a smaller max_batch_size, or serve it on cpu")


def to_device(module: Any, device: str, path: Path) -> Any:
    try:
        return module.to(device)
    except torch.OutOfMemoryError as exc:
        raise too_large(path, device, exc) from None


def set_threads(threads: int) -> None:
    """The process's intra-op threads, shared by every instance (set before the first load)."""
    torch.set_num_threads(threads)
