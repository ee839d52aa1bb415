"""OutputNames: a model's result named by the declared outputs, as numpy arrays; the
tuple short path gives what the general path (collect + to_numpy) gives; an answer on
another device is copied to the CPU on every path."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from fastserve.backends.torch import TorchBackend
from fastserve.backends.torch_outputs import OutputNames
from fastserve.backends.torch_values import to_numpy, value_to_array
from fastserve.core.model_config import parse_model_config
from fastserve.errors import BackendError
from fastserve.types import DataType, TensorSpec

SPECS = (TensorSpec("y", DataType.FP32, (-1, 3)), TensorSpec("n", DataType.INT64, (-1,)))


def general(names: OutputNames, result: Any) -> dict[str, Any]:
    """What arrays() gave before its short path: collect, then each value converted."""
    return {n: (to_numpy(t) if isinstance(t, torch.Tensor) else value_to_array(t))
            for n, t in names.collect(result).items()}


def assert_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert list(got) == list(want)
    for name in want:
        assert got[name].dtype == want[name].dtype and got[name].shape == want[name].shape
        np.testing.assert_array_equal(got[name], want[name])


@pytest.mark.parametrize("kind", [tuple, list])
def test_plain_tensors_by_position_without_copies(kind: type) -> None:
    names = OutputNames(SPECS, SPECS, "pytorch_export")
    y, n = torch.randn(2, 3), torch.arange(2)
    got = names.arrays(kind([y, n]))
    assert_same(got, general(names, kind([y, n])))
    assert np.shares_memory(got["y"], y.numpy()) and np.shares_memory(got["n"], n.numpy())


@pytest.mark.parametrize("odd", [
    torch.randn(2, 3, dtype=torch.bfloat16),       # handed back as its uint16 bits
    torch.randn(2, 3, requires_grad=True),         # detached first
    [1.0, 2.0],                                    # not a tensor
    "text",                                        # not a tensor
])
def test_any_odd_value_takes_the_general_path(odd: Any) -> None:
    names = OutputNames(SPECS, SPECS, "pytorch_torchscript")
    result = (torch.arange(2), odd) if isinstance(odd, str) else (odd, torch.arange(2))
    assert_same(names.arrays(result), general(names, result))


def test_a_wrong_count_is_still_refused() -> None:
    names = OutputNames(SPECS, SPECS, "pytorch_export")
    with pytest.raises(BackendError, match=r"returned 3 outputs but 2 are declared \(y, n\)"):
        names.arrays((torch.zeros(1), torch.zeros(1), torch.zeros(1)))


def test_unconfigured_torchscript_outputs_named_by_count() -> None:
    one = (TensorSpec("output__0", DataType.FP32, (-1,)),)
    names = OutputNames(one, None, "pytorch_torchscript")
    a, b = torch.randn(2), torch.randn(3)
    got = names.arrays((a, b))
    assert_same(got, {"output__0": a.numpy(), "output__1": b.numpy()})


def test_dict_results_keep_their_names() -> None:
    names = OutputNames(SPECS, SPECS, "pytorch_torchscript")
    result = {"n": torch.arange(2), "y": torch.randn(2, 3)}
    assert_same(names.arrays(result), {k: v.numpy() for k, v in result.items()})


class OnAnotherDevice:
    """Makes chosen CPU tensors look to fastserve as a CUDA tensor does (no GPU here):
    ``is_cpu`` False, ``device`` cuda:0, ``.numpy()`` refused as torch refuses it, and
    ``.cpu()`` a plain copy, recorded in ``copies``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.marked: dict[int, torch.Tensor] = {}  # by id (kept alive: ids not reused)
        self.copies: list[torch.Tensor] = []
        base = torch.Tensor
        is_cpu, device = base.is_cpu, base.device  # the C attributes, on the base class
        detach, cpu, numpy = base.detach, base.cpu, base.numpy
        marked = self.marked

        def fake_detach(t: torch.Tensor) -> torch.Tensor:
            return self.mark(detach(t)) if id(t) in marked else detach(t)

        def fake_cpu(t: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            if id(t) in marked:
                self.copies.append(t)
                return cpu(t).clone()
            return cpu(t, *args, **kwargs)

        def fake_numpy(t: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if id(t) in marked:
                raise TypeError("can't convert cuda:0 device type tensor to numpy. "
                                "Use Tensor.cpu() to copy the tensor to host memory first.")
            return numpy(t, *args, **kwargs)

        monkeypatch.setattr(base, "is_cpu", property(
            lambda t: id(t) not in marked and is_cpu.__get__(t)))
        monkeypatch.setattr(base, "device", property(
            lambda t: torch.device("cuda", 0) if id(t) in marked else device.__get__(t)))
        monkeypatch.setattr(base, "detach", fake_detach)
        monkeypatch.setattr(base, "cpu", fake_cpu)
        monkeypatch.setattr(base, "numpy", fake_numpy)

    def mark(self, t: torch.Tensor) -> torch.Tensor:
        self.marked[id(t)] = t
        return t


class Doubles(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


@pytest.mark.parametrize("outputs", [1, 2])
def test_an_answer_on_another_device_is_copied_to_the_cpu(
        outputs: int, model_folder: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
        ) -> None:
    """A scripted model may move its answer to a GPU itself while served as a CPU model:
    TorchBackend.infer's short paths (one output, and OutputNames.arrays' tuple) copy it
    to the CPU (to_numpy) instead of calling .numpy() on it."""
    names = ["y", "z"][:outputs]
    io = '[[inputs]]\nname = "x"\nshape = [-1, 3]\n' + "".join(
        f'[[outputs]]\nname = "{n}"\nshape = [-1, 3]\n' for n in names)
    folder = model_folder("m", "max_batch_size = 4\n" + io).script(Doubles())
    backend = TorchBackend(folder.version, parse_model_config(folder.folder), {})
    assert backend._plain_inputs == ("x",)  # the short path
    device = OnAnotherDevice(monkeypatch)
    forward = backend._forward

    def on_gpu(*args: Any) -> Any:
        y = forward(*args)
        return device.mark(y) if outputs == 1 else (device.mark(y), device.mark(y + 1))

    backend._forward = on_gpu
    x = np.random.default_rng(5).standard_normal((2, 3)).astype(np.float32)
    got = backend.infer({"x": x}, 0)
    want = Doubles()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got["y"], want)
    if outputs == 2:
        np.testing.assert_allclose(got["z"], want + 1)
    assert len(device.copies) == outputs  # each answer went through .cpu()
