"""Decoded requests checked against the model: names, datatypes, shapes, rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..types import DataType, TensorSpec
from .tensors import datatype_of

# The array dtype each datatype decodes to (BF16: its uint16 bit patterns, as its .numpy
# says): the common case is checked by one comparison, datatype_of only names a mismatch.
_DECODED = {dt: np.dtype(dt.numpy) for dt in DataType}


def validate_inputs(
    specs: Sequence[TensorSpec], inputs: dict[str, Any], batched: bool, strict: bool = True
) -> int:
    """Check names, datatypes and shapes against the model; return the batch's row count."""
    if not strict:  # the model declares nothing to check against
        first_arr = next(iter(inputs.values()), None)
        if first_arr is None:
            raise InvalidInputError("the request has no inputs")
        if not batched:
            return 1
        # The batcher merges and splits on the first dimension: every input needs one, alike.
        counts = {name: (arr.shape[0] if arr.ndim else None) for name, arr in inputs.items()}
        for name, count in counts.items():
            if count is None:
                raise InvalidInputError(f"input '{name}' has no batch dimension but the model "
                                        "batches (max_batch_size > 0)")
        if len(set(counts.values())) > 1:
            raise InvalidInputError(f"inputs have different row counts {counts}; all inputs "
                                    "share the batch size")
        rows = first_arr.shape[0]
        if rows == 0:
            raise InvalidInputError("a batch of 0 rows has nothing to run")
        return rows
    by_name = _by_name(specs)
    for name in inputs:
        if name not in by_name:
            raise InvalidInputError(
                f"unknown input '{name}'; the model's inputs are {', '.join(by_name)}")
    rows = 1
    first = None
    for spec in specs:
        arr = inputs.get(spec.name)
        if arr is None:
            raise InvalidInputError(f"missing input '{spec.name}'")
        if arr.dtype != _DECODED[spec.datatype]:
            got = datatype_of(arr, spec)
            if got is not spec.datatype:
                raise InvalidInputError(f"input '{spec.name}' has datatype {got.wire} but the "
                                        f"model expects {spec.datatype.wire}")
        shape = arr.shape
        if len(shape) != len(spec.shape):
            raise _shape_error(spec, shape)
        # a loop: cheaper than any() over a generator
        for want, have in zip(spec.shape, shape, strict=True):
            if want != -1 and want != have:
                raise _shape_error(spec, shape)
        if batched:
            if first is None:
                first, rows = spec.name, shape[0]
            elif shape[0] != rows:
                raise InvalidInputError(f"input '{spec.name}' has {shape[0]} rows but "
                                        f"'{first}' has {rows}; all inputs share the batch size")
    if batched and rows == 0:
        raise InvalidInputError("a batch of 0 rows has nothing to run")
    return rows


def _shape_error(spec: TensorSpec, shape: tuple[int, ...]) -> InvalidInputError:
    return InvalidInputError(f"input '{spec.name}' has shape {list(shape)} but the model "
                             f"expects {list(spec.shape)} (-1: any size)")


# A model's input specs (a tuple, fixed while it is loaded) by name, made once per tuple
# instead of once per request; holding the tuple keeps its id from being reused.
_BY_NAME: dict[int, tuple[Sequence[TensorSpec], dict[str, TensorSpec]]] = {}
BY_NAME_CACHE = 256


def _by_name(specs: Sequence[TensorSpec]) -> dict[str, TensorSpec]:
    if type(specs) is not tuple:  # a list may change after this call: no caching
        return {s.name: s for s in specs}
    hit = _BY_NAME.get(id(specs))
    if hit is not None and hit[0] is specs:
        return hit[1]
    by_name = {s.name: s for s in specs}
    if len(_BY_NAME) >= BY_NAME_CACHE:
        _BY_NAME.clear()
    _BY_NAME[id(specs)] = (specs, by_name)
    return by_name
