"""TF Serving's :classify and :regress: tf.Example-style ``examples`` (+ ``context``) as
one input per feature with one row per example, and the output each method reads."""

from __future__ import annotations

import math
from typing import Any

from ..core.info import ModelInfo
from ..core.tensors import array_from_json, bytes_array
from ..errors import InvalidInputError
from ..types import DataType, InferRequest, TensorSpec
from ._tf_inputs import InputSpecs, bytes_leaf, describe, load_object, signature_name
from ._tfjson import is_binary_object


class ExamplesBody:
    """A :classify or :regress body, checked and decoded when the data plane asks
    (``DataPlane.infer_tensors``). None of its refusals count as the model's failures
    (TF Serving's rule), so everything is checked in ``check``."""

    __slots__ = ("raw", "method", "preferred", "info", "chosen", "request", "rows")

    def __init__(self, raw: Any, method: str, preferred: str) -> None:
        self.raw = raw
        self.method = method
        self.preferred = preferred  # the output the method reads, by TF's name for it
        self.info: ModelInfo | None = None
        self.chosen: TensorSpec | None = None
        self.request: InferRequest | None = None
        self.rows = 0

    def check(self, info: ModelInfo) -> None:
        self.info = info
        doc = load_object(self.raw)
        signature_name(doc)  # NOTE: any name: a fastserve model has one signature
        self.chosen = pick_output(info.name, self.method, self.preferred, info.outputs)
        inputs, self.rows = decode_examples(doc, self.method,
                                            InputSpecs(info.inputs, info.declared))
        self.request = InferRequest(info.name, info.version, inputs)

    def tensors(self, info: ModelInfo) -> InferRequest:
        assert self.request is not None
        return self.request


def decode_examples(doc: dict[str, Any], method: str, specs: InputSpecs
                     ) -> tuple[dict[str, Any], int]:
    """tf.Example-style features -> one input per feature, with one row per example.

    As in a tf.Example, a feature is a flat list (a single value is a list of one);
    each example's list is reshaped to the input's shape without its first dimension.
    """
    examples = doc.get("examples")
    if examples is None:
        raise InvalidInputError(f"When method is {method}, key 'examples' is expected and "
                                "was not found")
    if not isinstance(examples, list):
        raise InvalidInputError("Expecting 'examples' value to be a list/array")
    if not examples:
        raise InvalidInputError("'examples' value is an empty array")
    context = doc.get("context") or {}
    if not isinstance(context, dict):
        raise InvalidInputError("'context' must be a JSON object of features")
    for i, example in enumerate(examples):
        if not isinstance(example, dict):
            raise InvalidInputError(f"Example must be JSON object but got {describe(example)} "
                                    f"(example {i})")
        both = sorted(set(example) & set(context))
        if both:
            raise InvalidInputError(f"feature(s) {', '.join(both)} appear in both 'context' "
                                    f"and example {i}; a context feature must not appear in "
                                    "examples")
    if specs.declared:
        names = list(specs.by_name)
    else:
        names = list(dict.fromkeys([*context, *examples[0]]))
    inputs = {}
    for name in names:
        spec = specs.get(name)
        features = []
        for i, example in enumerate(examples):
            value = example.get(name, context.get(name))
            if value is None:
                raise InvalidInputError(
                    f"example {i} has no feature '{name}' (in it or in 'context'); the model's "
                    f"features are {', '.join(names)}")
            features.append(_feature(name, value, spec))
        inputs[name] = _stack_features(name, features, spec, specs.declared)
    return inputs, len(examples)


def _feature(name: str, value: Any, spec: TensorSpec) -> list[Any]:
    items = value if isinstance(value, list) else [value]
    binary = spec.datatype is DataType.BYTES
    out = []
    for item in items:
        if isinstance(item, (list, dict)) and not is_binary_object(item):
            raise InvalidInputError(f"Feature: {name} has element with unexpected JSON type: "
                                    f"{describe(item)} (a feature is a value or a flat list)")
        if binary:
            out.append(bytes_leaf(name, item))
        elif isinstance(item, (str, dict)) or item is None:
            raise InvalidInputError(f"Feature: {name} is {spec.datatype.wire}: expecting "
                                    f"numbers, got {describe(item)}")
        else:
            out.append(item)
    return out


def _stack_features(name: str, features: list[list[Any]], spec: TensorSpec,
                    declared: bool) -> Any:
    count = len(features[0])
    for i, feature in enumerate(features):
        if len(feature) != count:
            raise InvalidInputError(f"feature '{name}' has {count} values in example 0 but "
                                    f"{len(feature)} in example {i}")
    row = list(spec.shape[1:])
    if not declared:  # nothing to reshape to: a value per example, or a list of them
        row = [] if count == 1 else [count]
    elif row.count(-1) == 1:
        known = math.prod(d for d in row if d != -1)
        if known == 0 or count % known:
            raise InvalidInputError(f"feature '{name}' has {count} values, which do not fit "
                                    f"input shape {list(spec.shape)}")
        row[row.index(-1)] = count // known
    elif row.count(-1) > 1 or math.prod(row) != count:
        raise InvalidInputError(f"feature '{name}' has {count} values per example but input "
                                f"'{name}' has shape {list(spec.shape)}")
    shape = (len(features), *row)
    flat = [v for feature in features for v in feature]
    if spec.datatype is DataType.BYTES:
        return bytes_array(flat, shape)
    return array_from_json(name, flat, spec.datatype, shape)


def pick_output(name: str, method: str, preferred: str, specs: tuple[TensorSpec, ...]
                 ) -> TensorSpec | None:
    """The output a classify/regress reads: the one named like TF's, else the only one."""
    by_name = {s.name: s for s in specs}
    if preferred in by_name:
        chosen = by_name[preferred]
    elif len(specs) == 1:
        chosen = specs[0]
    elif not specs:
        return None
    else:
        raise InvalidInputError(
            f"model '{name}' has {len(specs)} outputs ({', '.join(by_name)}): :{method} needs "
            f"a model with one output, or an output named '{preferred}'")
    if chosen.datatype is DataType.BYTES:
        raise InvalidInputError(f":{method} needs a numeric output, but model '{name}' output "
                                f"'{chosen.name}' is BYTES")
    return chosen
