"""service_envelope: TorchServe's json, kserve and kservev2 envelopes around a handler."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("ts.torch_handler.request_envelope.kservev2")

from fastserve.backends.ts_envelope import wrap  # noqa: E402
from fastserve.errors import ConfigError  # noqa: E402


def doubler(data, context):
    """A handler: each input row doubled."""
    return [[2 * x for x in row] for row in data]


def test_no_envelope_leaves_the_handler_as_it_is() -> None:
    assert wrap(doubler, "") is doubler


def test_kserve_v1_envelope_reads_instances_and_writes_predictions() -> None:
    handle = wrap(doubler, "kserve")
    body = {"instances": [[1, 2], [3, 4]]}
    assert handle([{"body": body}], None) == [{"predictions": [[2, 4], [6, 8]]}]
    raw = json.dumps(body).encode()  # an undecoded body is parsed by the envelope
    assert handle([{"body": bytearray(raw)}], None) == [{"predictions": [[2, 4], [6, 8]]}]


class Context:
    """What the envelope reads of TorchServe's context."""

    manifest = {"model": {"modelName": "m", "modelVersion": "1.0"}}

    def get_request_id(self, idx: int) -> str:
        return f"req-{idx}"


def test_kserve_v2_envelope_reads_inputs_and_writes_a_v2_response() -> None:
    def handler(data, context):  # the envelope hands it the v2 inputs' data
        return [[2 * x for x in item["data"]] for item in data]

    handle = wrap(handler, "kservev2")
    request = {"id": "r1", "inputs": [{"name": "x", "shape": [3], "datatype": "INT64",
                                       "data": [1, 2, 3]}]}
    (answer,) = handle([{"body": request}], Context())
    assert (answer["id"], answer["model_name"], answer["model_version"]) == ("r1", "m", "1.0")
    (output,) = answer["outputs"]
    assert output["data"] == [2, 4, 6] and output["datatype"] == "INT64"
    assert list(output["shape"]) == [3] and output["name"] == "x"


def test_json_envelope() -> None:
    handle = wrap(doubler, "json")
    (answer,) = handle([{"body": {"instances": [[5]]}}], None)
    assert json.loads(answer) == {"predictions": [[10]]}  # TorchServe answers a JSON string


def test_unknown_envelope_fails_the_model() -> None:
    with pytest.raises(ConfigError, match="soap"):
        wrap(doubler, "soap")
