"""backends/captum.py through TorchBackend.explain, checked against closed forms and Captum.

For a linear model f(x) = W x + b, with baseline 0: integrated gradients = x * W[t]
(exactly, whatever the steps), saliency = |W[t]|, input x gradient = x * W[t].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients
from torch import nn

from fastserve.backends import torch as torch_backend
from fastserve.backends.captum import attribute
from fastserve.core.model_config import parse_model_config
from fastserve.errors import InvalidInputError, UnsupportedError

IO = ('[[inputs]]\nname = "x"\ndatatype = "FP32"\nshape = [-1, 4]\n'
      '[[outputs]]\nname = "y"\ndatatype = "FP32"\nshape = [-1, 3]\n')


class Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.net(x)
        return y, y.sum(1)  # two outputs: the first is attributed


def load(folder: Any) -> torch_backend.TorchBackend:
    config = parse_model_config(folder.folder)
    return torch_backend.load(folder.version, config, {})


@pytest.fixture(scope="module")
def linear(module_folder: Callable[..., Any]) -> tuple[torch_backend.TorchBackend, nn.Module]:
    module = Linear().eval()
    folder = module_folder("linear", "max_batch_size = 4\n" + IO)
    folder.export(module, (torch.zeros(2, 4),))
    return load(folder), module


X = np.array([[0.5, -1.0, 2.0, 0.25]], np.float32)


@pytest.mark.parametrize("method", ["integrated_gradients", "saliency", "input_x_gradient"])
def test_captum_linear_closed_forms(linear: Any, method: str) -> None:
    backend, module = linear
    w = module.fc.weight.detach().numpy()
    target = int((X @ w.T + module.fc.bias.detach().numpy()).argmax())
    got = backend.explain({"x": X}, method)["x"]
    want = {"integrated_gradients": X * w[target], "saliency": np.abs(w[target])[None],
            "input_x_gradient": X * w[target]}[method]
    assert got.shape == (1, 4)
    assert np.allclose(got, want, atol=1e-5)


def test_captum_explicit_target(linear: Any) -> None:
    backend, module = linear
    w = module.fc.weight.detach().numpy()
    for target in range(3):
        got = backend.explain({"x": X}, "input_x_gradient", target)["x"]
        assert np.allclose(got, X * w[target], atol=1e-6)


@pytest.mark.parametrize("target", [3, -1, (0, 1)])
def test_captum_target_outside_the_output_is_400(linear: Any, target: Any) -> None:
    with pytest.raises(InvalidInputError, match="outside"):
        linear[0].explain({"x": X}, "saliency", target)


def test_captum_nonlinear_matches_captum_and_completeness(model_folder: Any) -> None:
    module = Mlp().eval()
    folder = model_folder("mlp", "max_batch_size = 8\n")
    folder.export(module, (torch.zeros(2, 4),))
    backend = load(folder)
    got = backend.explain({"input__0": X}, "integrated_gradients")["input__0"]
    x = torch.from_numpy(X).requires_grad_()
    with torch.no_grad():
        out = module(x)[0]
    target = int(out.argmax())
    want = IntegratedGradients(lambda t: module(t)[0]).attribute(
        x, baselines=torch.zeros_like(x), target=target, n_steps=50).detach().numpy()
    assert np.allclose(got, want, atol=1e-5)
    with torch.no_grad():
        delta = float(out[0, target] - module(torch.zeros(1, 4))[0][0, target])
    assert abs(got.sum() - delta) < 1e-3


def test_captum_torchscript_unbatched_static_first_dimension(model_folder: Any) -> None:
    module = Linear().eval()
    folder = model_folder("static", '[[inputs]]\nname = "x"\nshape = [1, 4]\n')
    folder.trace(module, (torch.zeros(1, 4),))
    backend = load(folder)
    got = backend.explain({"x": X}, "integrated_gradients")["x"]
    w = module.fc.weight.detach().numpy()
    target = int(module(torch.from_numpy(X)).argmax())
    assert np.allclose(got, X * w[target], atol=1e-5)


def test_captum_read_only_request_buffers_are_copied(linear: Any) -> None:
    frozen = np.frombuffer(X.tobytes(), np.float32).reshape(1, 4)
    assert not frozen.flags.writeable
    got = linear[0].explain({"x": frozen}, "saliency")["x"]
    assert got.shape == (1, 4)


def test_captum_refuses_integer_inputs_and_unknown_methods() -> None:
    model = nn.Identity()
    with pytest.raises(UnsupportedError, match="floating-point"):
        attribute(model, (torch.zeros(1, 3, dtype=torch.int64),), "saliency")
    with pytest.raises(UnsupportedError, match="unknown explainer"):
        attribute(model, (torch.zeros(1, 3),), "lime")


def test_captum_multi_dimensional_output_target_is_an_index_tuple() -> None:
    class Grid(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.reshape(-1, 2, 2) * torch.tensor([[1.0, 2.0], [3.0, 4.0]])

    x = torch.tensor([[1.0, 1.0, 1.0, 0.5]])
    (attr,) = attribute(Grid(), (x,), "input_x_gradient")  # predicted: (1, 0) -> 3 * x[2]
    assert np.allclose(attr.numpy(), [[0, 0, 3.0, 0]])
    (attr,) = attribute(Grid(), (x,), "input_x_gradient", (0, 1))
    assert np.allclose(attr.numpy(), [[0, 2.0, 0, 0]])
