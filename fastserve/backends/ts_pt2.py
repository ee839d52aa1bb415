"""``.pt2`` serialized files (torch.export) behind TorchServe's BaseHandler."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


class Pt2AsTorchScript:
    """Lets TorchServe's BaseHandler load a ``.pt2`` serialized file (torch.export), which
    it does not know: its TorchScript branch is taken and handed the exported program."""

    def __init__(self, handler: Any, folder: Path, model: dict[str, Any]) -> None:
        self.active = bool(handler is not None and not model.get("modelFile")
                           and str(model.get("serializedFile", "")).endswith(".pt2")
                           and hasattr(handler, "_load_torchscript_model"))
        self.handler = handler
        self.model = model
        self.path = folder / str(model.get("serializedFile", ""))

    def __enter__(self) -> None:
        if not self.active:
            return
        path = self.path

        def load_exported(_: str) -> Any:
            return _Exported(torch.export.load(str(path)).module())

        self.handler._load_torchscript_model = load_exported
        self.model["serializedFile"] += ".pt"

    def __exit__(self, *exc: Any) -> None:
        if not self.active:
            return
        self.model["serializedFile"] = self.model["serializedFile"][:-3]
        del self.handler._load_torchscript_model
        if hasattr(self.handler, "model_pt_path"):
            self.handler.model_pt_path = str(self.path)


class _Exported(torch.nn.Module):
    """An exported program's module that tolerates .eval()/.to() as BaseHandler calls them."""

    def __init__(self, module: Any) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    def train(self, mode: bool = True) -> _Exported:
        return self

