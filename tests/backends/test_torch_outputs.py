"""OutputNames: a model's result named by the declared outputs, as numpy arrays; the
tuple short path gives what the general path (collect + to_numpy) gives."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from fastserve.backends.torch_outputs import OutputNames
from fastserve.backends.torch_values import to_numpy, value_to_array
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
