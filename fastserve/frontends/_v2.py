"""What the two KServe v2 front-ends (HTTP: kserve_v2, gRPC: fastserve/grpc) share."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import codec
from ..core.tensors import bf16_to_float, bytes_array
from ..errors import InvalidInputError
from ..types import DataType
from . import _tfjson

MAX_CLASSIFICATION = 1_000_000


def classify(arr: np.ndarray, k: int, labels: dict[str, str], batched: bool) -> np.ndarray:
    """Triton's classification extension: top-k as BYTES "score:index[:label]".

    Shape [batch, k] for batching models, else [k]; scores printed as C's "%f".
    """
    values = bf16_to_float(arr) if arr.dtype == np.uint16 else arr
    rows = values.reshape(values.shape[0], -1) if batched and values.ndim else values.reshape(1, -1)
    k = min(k, rows.shape[1])
    order = np.argsort(-rows.astype(np.float64), axis=1, kind="stable")[:, :k]
    items = []
    for row, indices in zip(rows, order, strict=True):
        for i in indices:
            label = labels.get(str(int(i)))
            text = f"{float(row[i]):f}:{int(i)}" + (f":{label}" if label is not None else "")
            items.append(text.encode("utf-8"))
    return bytes_array(items, (rows.shape[0], k) if batched else (k,))


def decode_outputs(raw: Any) -> tuple[list[str] | None, dict[str, bool], dict[str, int],
                                      dict[str, dict[str, Any]]]:
    """The request's "outputs": names (None: all), binary flags, classification k's and
    shared-memory parameters, by name."""
    if raw is None or raw == []:  # none named: every output (as Triton)
        return None, {}, {}, {}
    if not isinstance(raw, list):
        raise InvalidInputError("'outputs' must be a list of {\"name\": ...} objects")
    names, binary, classification, shm = [], {}, {}, {}
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidInputError("each requested output needs a 'name' string")
        if item["name"] in names:  # as Triton: a name requested twice is refused
            raise InvalidInputError(f"output '{item['name']}' is requested more than once")
        names.append(item["name"])
        params = item.get("parameters") or {}
        if not isinstance(params, dict):
            raise InvalidInputError(f"output '{item['name']}': 'parameters' must be an "
                                    "object")
        if "binary_data" in params:
            binary[item["name"]] = flag(params["binary_data"],
                                        f"output '{item['name']}': binary_data")
        if "classification" in params:
            k = params["classification"]
            if not isinstance(k, int) or isinstance(k, bool) or not 0 < k <= MAX_CLASSIFICATION:
                raise InvalidInputError(
                    f"output '{item['name']}': classification must be a positive integer "
                    f"(the top-k count), got {k!r}")
            classification[item["name"]] = k
        if "shared_memory_region" in params:
            shm[item["name"]] = params
    return names, binary, classification, shm


def raw_bytes(arr: np.ndarray, datatype: DataType) -> Any:
    if datatype is DataType.BYTES:
        return codec.encode_bytes_tensor(arr.ravel())
    return memoryview(np.ascontiguousarray(arr)).cast("B")


def flag(value: Any, what: str) -> bool:
    """A boolean parameter: "false" (a string) must not read as true, so only JSON booleans."""
    if not isinstance(value, bool):
        raise InvalidInputError(f"{what} must be true or false, got {value!r}")
    return value


def json_data(arr: np.ndarray, datatype: DataType) -> Any:
    """An output as a flat JSON list (orjson writes numpy arrays natively)."""
    if datatype is DataType.BYTES:
        return [b.decode("utf-8", "replace") if isinstance(b, bytes) else str(b)
                for b in arr.ravel()]
    if datatype is DataType.BF16:
        arr = bf16_to_float(arr)
    flat = np.ascontiguousarray(arr).ravel()
    if flat.dtype.kind == "f":  # NaN and +-Infinity as tokens, as Triton writes them
        return _tfjson.float_json(flat)
    return flat
