"""Decoded requests checked against the model's specs (core.validation)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fastserve.core.tensors import bytes_array, float_to_bf16
from fastserve.core.validation import validate_inputs
from fastserve.errors import InvalidInputError
from fastserve.types import DataType, TensorSpec

D = DataType


SPECS = (
    TensorSpec("a", D.FP32, (-1, 3)),
    TensorSpec("b", D.INT64, (-1, -1)),
)


def good(rows: int = 2) -> dict[str, Any]:
    return {"a": np.zeros((rows, 3), np.float32), "b": np.zeros((rows, 5), np.int64)}


def test_validate_inputs_counts_rows() -> None:
    assert validate_inputs(SPECS, good(4), batched=True) == 4
    assert validate_inputs(SPECS, good(4), batched=False) == 1
    # order of the request's inputs does not matter
    assert validate_inputs(SPECS, dict(reversed(list(good(3).items()))), batched=True) == 3


INVALID_INPUTS: list[tuple[str, dict[str, Any], str]] = [
    ("missing", {"a": np.zeros((2, 3), np.float32)}, r"^missing input 'b'$"),
    ("unknown", {**good(), "c": np.zeros((2,), np.float32)},
     r"^unknown input 'c'; the model's inputs are a, b$"),
    ("datatype", {**good(), "a": np.zeros((2, 3), np.float64)},
     r"^input 'a' has datatype FP64 but the model expects FP32$"),
    ("datatype-bytes", {**good(), "b": bytes_array([b"x"] * 10, (2, 5))},
     r"^input 'b' has datatype BYTES but the model expects INT64$"),
    ("shape-dim", {**good(), "a": np.zeros((2, 4), np.float32)},
     r"^input 'a' has shape \[2, 4\] but the model expects \[-1, 3\] \(-1: any size\)$"),
    ("shape-rank", {**good(), "a": np.zeros((2, 3, 1), np.float32)},
     r"^input 'a' has shape \[2, 3, 1\] but the model expects \[-1, 3\]"),
    ("rows", {**good(), "b": np.zeros((3, 5), np.int64)},
     r"^input 'b' has 3 rows but 'a' has 2; all inputs share the batch size$"),
    ("zero-rows", good(0), r"^a batch of 0 rows has nothing to run$"),
]


@pytest.mark.parametrize(("inputs", "message"), [c[1:] for c in INVALID_INPUTS],
                         ids=[c[0] for c in INVALID_INPUTS])
def test_validate_inputs_messages(inputs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        validate_inputs(SPECS, inputs, batched=True)


def test_validate_inputs_unbatched_rows_may_differ() -> None:
    inputs = {"a": np.zeros((2, 3), np.float32), "b": np.zeros((7, 1), np.int64)}
    assert validate_inputs(SPECS, inputs, batched=False) == 1


def test_validate_inputs_bf16_takes_uint16_bits() -> None:
    specs = (TensorSpec("h", D.BF16, (-1,)),)
    assert validate_inputs(specs, {"h": float_to_bf16([1.0, 2.0])}, batched=True) == 2
    with pytest.raises(InvalidInputError, match=r"has datatype FP32 but the model expects BF16"):
        validate_inputs(specs, {"h": np.zeros(2, np.float32)}, batched=True)


def test_validate_inputs_bytes_and_bool() -> None:
    specs = (TensorSpec("s", D.BYTES, (-1,)), TensorSpec("m", D.BOOL, (-1, 2)))
    inputs = {"s": bytes_array([b"a", b"b"], (2,)), "m": np.zeros((2, 2), np.bool_)}
    assert validate_inputs(specs, inputs, batched=True) == 2


def test_validate_inputs_not_strict() -> None:
    # A model that declares nothing: whatever was sent, with consistent rows when batched.
    loose = {"p": np.zeros((4, 2), np.float32), "q": np.zeros((4,), np.int8)}
    assert validate_inputs((), loose, batched=True, strict=False) == 4
    assert validate_inputs((), loose, batched=False, strict=False) == 1
    assert validate_inputs((), {"p": np.float32(1.0) * np.ones(())}, batched=False,
                           strict=False) == 1
    with pytest.raises(InvalidInputError, match=r"the request has no inputs"):
        validate_inputs((), {}, batched=True, strict=False)
    with pytest.raises(InvalidInputError, match=r"different row counts"):
        validate_inputs((), {"p": np.zeros((4, 2)), "q": np.zeros((3,))}, batched=True,
                        strict=False)
    with pytest.raises(InvalidInputError, match=r"input 'p' has no batch dimension"):
        validate_inputs((), {"p": np.zeros(())}, batched=True, strict=False)
    with pytest.raises(InvalidInputError, match=r"a batch of 0 rows"):
        validate_inputs((), {"p": np.zeros((0, 2))}, batched=True, strict=False)


def test_specs_by_name_made_once_per_tuple_and_never_stale(monkeypatch) -> None:
    from fastserve.core import validation

    monkeypatch.setattr(validation, "_BY_NAME", {})
    monkeypatch.setattr(validation, "BY_NAME_CACHE", 2)
    models = [tuple(TensorSpec(f"x{i}", D.FP32, (-1,)) for _ in range(1)) for i in range(3)]
    for _ in range(2):  # past the cache's bound: each model still checked against its own
        for i, specs in enumerate(models):
            assert validate_inputs(specs, {f"x{i}": np.zeros(2, np.float32)}, True) == 2
            with pytest.raises(InvalidInputError, match=f"unknown input 'y'; the model's "
                                                        f"inputs are x{i}$"):
                validate_inputs(specs, {"y": np.zeros(2, np.float32)}, True)
    assert len(validation._BY_NAME) <= 2
    listed = [TensorSpec("p", D.FP32, (-1,))]  # a list may change: read afresh each call
    assert validate_inputs(listed, {"p": np.zeros(1, np.float32)}, True) == 1
    listed.append(TensorSpec("q", D.FP32, (-1,)))
    with pytest.raises(InvalidInputError, match="missing input 'q'"):
        validate_inputs(listed, {"p": np.zeros(1, np.float32)}, True)


@pytest.mark.parametrize("shape", [(2,), (2, 4), (2, 3, 1), ()])
def test_shape_mismatch_message(shape: tuple[int, ...]) -> None:
    inputs = {**good(), "a": np.zeros(shape, np.float32)}
    with pytest.raises(InvalidInputError) as err:
        validate_inputs(SPECS, inputs, batched=False)
    assert str(err.value) == (f"input 'a' has shape {list(shape)} but the model expects "
                              "[-1, 3] (-1: any size)")
