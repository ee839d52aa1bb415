"""TF Serving's JSON requests -> input arrays (its ``util/json_tensor.cc``).

Row format (``instances``: one item per row, objects for named inputs), columnar
(``inputs``: a tensor or an object of named tensors) and tf.Example-style ``examples``
(+ ``context``) become numpy arrays of the model's input datatypes. Binary values travel
as {"b64": ...} (see _tfjson).
"""

from __future__ import annotations

from typing import Any

from ..core.info import ModelInfo
from ..core.tensors import MAX_JSON_DEPTH, array_from_json, bytes_array
from ..errors import InvalidInputError
from ..types import DataType, InferRequest, TensorSpec
from ._tfjson import DATA, decode_b64, is_binary_object, loads

DEFAULT_SIGNATURE = "serving_default"


class PredictBody:
    """A :predict body, checked and decoded when the data plane asks
    (``DataPlane.predict_instances``); it keeps the model's info and the format asked."""

    __slots__ = ("raw", "doc", "rows", "info")

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.doc: dict[str, Any] = {}
        self.rows = False  # row format (instances), else columnar (inputs)
        self.info: ModelInfo | None = None

    def check(self, info: ModelInfo) -> None:
        doc = self.doc = load_object(self.raw)
        signature = signature_name(doc)
        if signature not in ("", DEFAULT_SIGNATURE):
            raise InvalidInputError(
                f"Serving signature name: \"{signature}\" not found in signature def; this "
                f"model has one signature, \"{DEFAULT_SIGNATURE}\" (or leave signature_name out)")
        has_rows, has_columns = "instances" in doc, "inputs" in doc
        if has_rows and has_columns:
            raise InvalidInputError("the request has both 'instances' and 'inputs'; send one: "
                                    "'instances' (row format) or 'inputs' (columnar format)")
        if not has_rows and not has_columns:
            raise InvalidInputError("Missing 'inputs' or 'instances' key")
        self.rows = has_rows

    def instances(self) -> Any:
        return self.doc.get("instances")

    def tensors(self, info: ModelInfo) -> InferRequest:
        self.info = info
        specs = InputSpecs(info.inputs, info.declared)
        if self.rows:
            inputs = decode_rows(self.doc["instances"], specs)
        else:
            inputs = decode_columns(self.doc["inputs"], specs)
        return InferRequest(info.name, info.version, inputs)


def load_object(body: Any) -> dict[str, Any]:
    doc = loads(body)
    if not isinstance(doc, dict):
        raise InvalidInputError("the request body must be a JSON object")
    return doc


def signature_name(doc: dict[str, Any]) -> str:
    signature = doc.get("signature_name")
    if signature is None:
        return ""
    if not isinstance(signature, str):
        raise InvalidInputError("'signature_name' key must be a string value")
    return signature


class InputSpecs:
    """The model's inputs by name; a model.pt without [[inputs]] takes any name as FP32."""

    __slots__ = ("specs", "by_name", "declared")

    def __init__(self, specs: tuple[TensorSpec, ...], declared: bool) -> None:
        self.specs = specs
        self.by_name = {s.name: s for s in specs}
        self.declared = declared

    def get(self, name: str) -> TensorSpec:
        spec = self.by_name.get(name)
        if spec is not None:
            return spec
        if not self.declared:
            return TensorSpec(name, DataType.FP32, (-1,))
        raise InvalidInputError(
            f"JSON object: does not have named input: {name}; the model's inputs are "
            f"{', '.join(self.by_name)}")

    @property
    def data_is_input(self) -> bool:
        return DATA in self.by_name


def _shape_of(value: Any) -> tuple[int, ...]:
    """A nested list's shape, read down the first elements (raggedness is caught later)."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if len(shape) > MAX_JSON_DEPTH or not value:
            break
        value = value[0]
    return tuple(shape)


def _tensor(value: Any, spec: TensorSpec, data_is_input: bool) -> Any:
    """A JSON value (scalar or nested list) as an array of the input's datatype."""
    shape = _shape_of(value)
    if spec.datatype is not DataType.BYTES:
        return array_from_json(spec.name, value, spec.datatype, shape)
    if len(shape) > MAX_JSON_DEPTH:
        raise InvalidInputError(f"input '{spec.name}': data is nested deeper than "
                                f"{MAX_JSON_DEPTH}")
    items: list[bytes] = []
    _bytes_leaves(spec.name, value, shape, 0, items, data_is_input)
    return bytes_array(items, shape)


def _bytes_leaves(name: str, value: Any, shape: tuple[int, ...], level: int,
                  out: list[bytes], data_is_input: bool) -> None:
    if level < len(shape):
        if not isinstance(value, list) or len(value) != shape[level]:
            raise InvalidInputError(
                f"input '{name}': the data is ragged: expected a list of {shape[level]} at "
                f"depth {level}, got {describe(value)}")
        for item in value:
            _bytes_leaves(name, item, shape, level + 1, out, data_is_input)
        return
    out.append(bytes_leaf(name, value, data_is_input))


def bytes_leaf(name: str, value: Any, data_is_input: bool = False) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if is_binary_object(value, data_is_input):
        return decode_b64(name, value)
    raise InvalidInputError(f"input '{name}' is BYTES: its values must be strings or "
                            f"{{\"b64\": \"<base64>\"}} objects, got {describe(value)}")


def describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def decode_rows(instances: Any, specs: InputSpecs) -> dict[str, Any]:
    """Row format: one item per row; the rows of each input are stacked on a new axis 0."""
    if not isinstance(instances, list):
        raise InvalidInputError("Expecting 'instances' to be a list/array, one item per row")
    if not instances:
        raise InvalidInputError("No values in 'instances' array")
    data_is_input = specs.data_is_input

    def named(item: Any) -> bool:
        return isinstance(item, dict) and not is_binary_object(item, data_is_input)

    if not named(instances[0]):
        if len(specs.specs) != 1:
            raise InvalidInputError(
                "instances is a plain list, but expecting list of objects as the model has "
                f"{len(specs.specs)} inputs ({', '.join(specs.by_name)})")
        for i, item in enumerate(instances):
            if named(item):
                raise InvalidInputError(
                    f"Expecting value/list but got object at item {i} of 'instances'")
        spec = specs.specs[0]
        return {spec.name: _tensor(instances, spec, data_is_input)}
    keys = list(instances[0])
    wanted = set(keys) if not specs.declared else set(specs.by_name)
    columns: dict[str, list[Any]] = {k: [] for k in (keys if not specs.declared
                                                     else specs.by_name)}
    for i, item in enumerate(instances):
        if not named(item):
            raise InvalidInputError(f"Expecting object but got {describe(item)} at item {i} "
                                    "of 'instances'")
        if set(item) != wanted:
            raise InvalidInputError(
                f"Failed to process element: {i} of 'instances' list: its keys "
                f"({', '.join(item)}) must be equal to: {', '.join(sorted(wanted))}")
        for key, value in item.items():
            columns[key].append(value)
    return {key: _tensor(values, specs.get(key), data_is_input)
            for key, values in columns.items()}


def decode_columns(value: Any, specs: InputSpecs) -> dict[str, Any]:
    """Columnar format: one tensor, or an object of named tensors (any 0-th dimensions)."""
    data_is_input = specs.data_is_input
    if not isinstance(value, dict) or is_binary_object(value, data_is_input):
        if len(specs.specs) != 1:
            raise InvalidInputError(
                "inputs is a plain value/list, but expecting an object as the model has "
                f"{len(specs.specs)} inputs ({', '.join(specs.by_name)})")
        spec = specs.specs[0]
        return {spec.name: _tensor(value, spec, data_is_input)}
    if specs.declared:
        for name in specs.by_name:
            if name not in value:
                raise InvalidInputError(f"Missing named input: {name} in 'inputs' object.")
    return {key: _tensor(item, specs.get(key), data_is_input) for key, item in value.items()}
