"""The usual v2 JSON answer, written with as little Python per request as it takes.

Every output a numeric array sent as JSON ``data`` (no binary, no shared memory, no
BYTES or BF16 output): ``KServeV2Frontend.encode`` writes anything else, and any answer
this declines, the general way, to the same bytes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from ..core.tensors import datatype_of, spec_named
from ..types import DataType, InferResponse, TensorSpec
from ._base import JSON_OPTIONS

_GENERAL = (DataType.BYTES, DataType.BF16)


def plain_json_answer(response: InferResponse, specs: tuple[TensorSpec, ...]) -> bytes | None:
    """The answer's JSON, or None where the general path must write it.

    NOTE: orjson writes a non-finite float as null, where the general path writes
    Triton's NaN/Infinity tokens; no null can come from the rest of this document (names
    and versions are strings, shapes ints), so a null anywhere sends the answer that way.
    """
    outputs = []
    for name, arr in response.outputs.items():
        if type(arr) is not np.ndarray or not arr.ndim:
            return None
        datatype = datatype_of(arr, spec_named(specs, name))
        if datatype in _GENERAL:
            return None
        # ravel: C order, a view when arr is contiguous (as ascontiguousarray(arr).ravel())
        outputs.append({"name": name, "datatype": datatype.wire, "shape": list(arr.shape),
                        "data": arr.ravel()})
    doc: dict[str, Any] = {"model_name": response.model, "model_version": response.version}
    if response.id is not None:
        doc["id"] = response.id
    doc["outputs"] = outputs
    header = orjson.dumps(doc, option=JSON_OPTIONS)
    return None if b"null" in header else header
