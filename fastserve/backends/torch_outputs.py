"""A model's result (a tensor, a tuple or list, or a dict) named by the declared outputs
and turned into numpy arrays, as the request path hands them back."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import BackendError
from ..types import TensorSpec
from .torch_values import to_numpy, value_to_array

Tensor, BF16 = torch.Tensor, torch.bfloat16


class OutputNames:
    """The output names of one model version, read once at load."""

    def __init__(self, outputs: tuple[TensorSpec, ...], configured: Any, platform: str) -> None:
        self.names = [s.name for s in outputs]
        # Outputs not configured (TorchScript keeps no signature): output__0, output__1, ...
        self.by_count = configured is None and platform == "pytorch_torchscript"

    def collect(self, result: Any) -> dict[str, Any]:
        names = self.names
        if isinstance(result, dict):
            if set(result) == set(names) or not names:
                return dict(result)
            values = list(result.values())
        elif isinstance(result, (tuple, list)) and not (result and isinstance(result[0], str)):
            values = list(result)
        else:
            values = [result]
        if len(values) != len(names):
            if self.by_count:
                names = [f"output__{i}" for i in range(len(values))]
            else:
                raise BackendError(f"the model returned {len(values)} outputs but "
                                   f"{len(names)} are declared ({', '.join(names)})")
        return dict(zip(names, values, strict=True))

    def arrays(self, result: Any) -> dict[str, Any]:
        # A tuple or list of plain CPU tensors, one per declared output (a multi-output
        # model's usual answer): each tensor's own array, as to_numpy would give it,
        # without collect's general checks (~5 us less for two outputs).
        names = self.names
        if type(result) in (tuple, list) and len(result) == len(names) and names:
            plain = {}
            for name, t in zip(names, result, strict=True):
                if type(t) is not Tensor or t.dtype is BF16 or t.requires_grad or not t.is_cpu:
                    break
                plain[name] = t.numpy()
            else:
                return plain
        return {n: (to_numpy(t) if isinstance(t, torch.Tensor) else value_to_array(t))
                for n, t in self.collect(result).items()}
