"""Reading model files: torch.export programs and TorchScript, safely from any thread.

torch.export.load keeps its deserializer in a module global (``_CURRENT_DESERIALIZER``):
two loads at once fail with "_CURRENT_DESERIALIZER is already set". Versions load in
parallel (the management API, the v2 repository extension, the poller, several versions
of one model), so every torch.export load in fastserve goes through ``load_exported``.
"""

from __future__ import annotations

import threading
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError

_EXPORT_LOAD = threading.Lock()

HOW_TO_EXPORT = (
    "export it instead: torch.export.save(torch.export.export(model, example_inputs), "
    "'model.pt2') (preferred), or torch.jit.save(torch.jit.script(model), 'model.pt') "
    "for TorchScript; a state dict needs its model class: load it into the model first")


def torch_save_pickle(path: Path) -> bool:
    """True when ``path`` was written by torch.save (a pickle, not a servable program).

    torch.save writes a zip holding ``data.pkl`` without TorchScript's ``constants.pkl``
    (or, with the legacy format, a bare pickle starting with the PROTO opcode).
    """
    try:
        with path.open("rb") as f:
            head = f.read(2)
        if head[:1] == b"\x80":
            return True
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as archive:
            leaves = {name.split("/", 1)[-1] for name in archive.namelist()}
    except OSError:
        return False
    return "data.pkl" in leaves and "constants.pkl" not in leaves and \
        "archive_format" not in leaves


def _pickle_error(path: Path) -> ConfigError:
    return ConfigError(f"{path.name} is a torch.save pickle (a state dict or a whole module), "
                       f"which cannot be served without its Python code; {HOW_TO_EXPORT}")


def load_exported(path: Path) -> Any:
    """torch.export.load, one at a time in the process (see the module docstring)."""
    if torch_save_pickle(path):
        raise _pickle_error(path)
    try:
        with _EXPORT_LOAD:
            return torch.export.load(str(path))
    except Exception as exc:
        raise ConfigError(f"cannot load {path.name} with torch.export.load: {exc}") from None


def load_torchscript(path: Path, device: str) -> Any:
    """torch.jit.load onto ``device``, with the pickle case explained."""
    if torch_save_pickle(path):
        raise _pickle_error(path)
    try:
        with warnings.catch_warnings():  # torch 2.13 deprecates torch.jit; it still works
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            return torch.jit.load(str(path), map_location=device)
    except torch.OutOfMemoryError:
        raise  # the caller says how to make it fit
    except Exception as exc:
        raise ConfigError(f"cannot load {path.name} with torch.jit.load: {exc}") from None
