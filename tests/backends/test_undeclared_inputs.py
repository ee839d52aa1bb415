"""A model.pt without [[inputs]]: a request must give each of forward's arguments."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from fastserve.backends.torch import TorchBackend
from fastserve.core.model_config import parse_model_config
from fastserve.errors import InvalidInputError


class AddScaled(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor, scale: float = 2.0) -> torch.Tensor:
        return a + b * scale


@pytest.fixture(scope="module")
def add_scaled(module_folder: Any) -> TorchBackend:
    folder = module_folder("add_scaled").script(AddScaled())
    return TorchBackend(folder.version, parse_model_config(folder.folder), {})


def test_all_arguments_given(add_scaled: TorchBackend) -> None:
    a, b = np.arange(3, dtype=np.float32), np.ones(3, dtype=np.float32)
    out = add_scaled.infer({"a": a, "b": b}, 0)["output__0"]
    np.testing.assert_allclose(out, AddScaled()(torch.from_numpy(a), torch.from_numpy(b)))


def test_missing_argument_is_a_400_naming_it(add_scaled: TorchBackend) -> None:
    with pytest.raises(InvalidInputError,
                       match=r"missing input for argument 'b' of the model's forward\(a, b, "
                             r"scale\)"):
        add_scaled.infer({"a": np.zeros(3, np.float32)}, 0)


def test_too_many_inputs_is_a_400(add_scaled: TorchBackend) -> None:
    x = np.zeros(3, np.float32)
    with pytest.raises(InvalidInputError, match=r"4 inputs sent but the model's forward takes 3"):
        add_scaled.infer({"a": x, "b": x, "c": x, "d": x}, 0)
