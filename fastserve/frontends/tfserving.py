"""TF Serving REST API (and KServe v1, which shares its paths and predict format).

    GET  /v1/models/{m}[/versions/{v}|/labels/{l}]              status (+ KServe v1 name, ready)
    GET  /v1/models/{m}[/versions/{v}|/labels/{l}]/metadata     signature_def, as TF writes it
    POST /v1/models/{m}[/versions/{v}|/labels/{l}]:predict      row (instances) or columnar (inputs)
    POST /v1/models/{m}[/versions/{v}|/labels/{l}]:classify     examples (+ context) -> results
    POST /v1/models/{m}[/versions/{v}|/labels/{l}]:regress      examples (+ context) -> results
    GET  /, GET /v1/models                                      KServe v1 liveness, model list

The same under /model-serving/{m}... (Paperspace Gradient's path). Errors are
{"error": "<message>"}. JSON follows TF Serving's ``util/json_tensor.cc``; see _tfjson.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.dataplane import DataPlane
from ..core.info import FAILED, LOADING, READY, UNLOADING, ModelInfo, VersionInfo, WholeRequest
from ..core.tensors import bf16_to_float
from ..errors import (
    InvalidInputError,
    MethodNotAllowedError,
    ModelNotReadyError,
    VersionNotFoundError,
)
from ..http.messages import Request, Response
from ..http.router import Router
from ..types import DataType, TensorSpec
from . import _tf_examples, _tf_inputs, _tfjson
from ._base import error_body, json_response
from ._ts_archive import archive_answer

PREDICT_METHOD = "tensorflow/serving/predict"
LABELS = ("latest", "default")
VERBS = ("predict", "classify", "regress", "explain")

# DataType -> TF's DataType enum names (tensorflow/core/framework/types.proto).
TF_DTYPES = {
    DataType.BOOL: "DT_BOOL", DataType.UINT8: "DT_UINT8", DataType.UINT16: "DT_UINT16",
    DataType.UINT32: "DT_UINT32", DataType.UINT64: "DT_UINT64", DataType.INT8: "DT_INT8",
    DataType.INT16: "DT_INT16", DataType.INT32: "DT_INT32", DataType.INT64: "DT_INT64",
    DataType.FP16: "DT_HALF", DataType.BF16: "DT_BFLOAT16", DataType.FP32: "DT_FLOAT",
    DataType.FP64: "DT_DOUBLE", DataType.BYTES: "DT_STRING",
}
# State -> get_model_status.proto ModelVersionStatus.State.
TF_STATES = {LOADING: "LOADING", READY: "AVAILABLE", FAILED: "END", UNLOADING: "UNLOADING"}


class TFServingFrontend:
    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane

    def register(self, router: Router) -> None:
        add = router.add
        tag = ("TF Serving / KServe v1",)
        for prefix in ("/v1/models/{model}", "/model-serving/{model}"):
            for base in (prefix, prefix + "/versions/{version}", prefix + "/labels/{label}"):
                # NOTE: the bare template also matches 'm:predict' (a GET lands there: 405).
                add("POST", base + ":predict", self.predict,
                    "Predict, row (instances) or columnar (inputs) format", tag)
                add("POST", base + ":classify", self.classify, "Classify tf.Example-style "
                    "examples", tag)
                add("POST", base + ":regress", self.regress, "Regress tf.Example-style "
                    "examples", tag)
                add("GET", base + "/metadata", self.metadata, "Model metadata (signature_def)",
                    tag)
                add("GET", base, self.status, "Model version status", tag)
        tag = ("KServe v1",)
        add("GET", "/", self.server_live, "KServe v1 server liveness: {\"status\": \"alive\"}",
            tag)
        add("GET", "/v1/models", self.list_models, "KServe v1 model list: {\"models\": [...]}",
            tag)
        router.set_error_formatter("/v1", error_body)
        router.set_error_formatter("/model-serving", error_body)

    # KServe v1 server endpoints (the kserve SDK's is_server_live and list_models)

    def server_live(self, request: Request) -> Response:
        return json_response({"status": "alive"})

    def list_models(self, request: Request) -> Response:
        return json_response({"models": self.dataplane.models()})

    # Versions and labels

    def _target(self, request: Request) -> tuple[str, str | None]:
        """(model, version or None for the default) from a path with a version or a label."""
        p = request.params
        name = p["model"]
        last = next(v for v in (p.get("label"), p.get("version"), name) if v is not None)
        if request.method != "POST" and last.rpartition(":")[2] in VERBS:
            # A GET on ".../m:predict" lands on the status template ("m:predict" as the name).
            raise MethodNotAllowedError(f"{request.method} is not allowed on {request.path}; "
                                        "allowed: POST", allow="POST")
        label = p.get("label")
        if label is None:
            return name, p.get("version")
        versions = self.dataplane.versions(name)
        if label == "latest":
            found = versions[-1] if versions else None
        elif label == "default":
            found = next((v for v in versions if v.default), None)
        else:
            raise VersionNotFoundError(
                f"model '{name}' has no version label '{label}'; the labels are "
                f"{' and '.join(LABELS)}")
        if found is None:
            raise ModelNotReadyError(f"model '{name}' failed to load: "
                                     f"{self.dataplane.load_error(name)}")
        return name, found.version

    # Status and metadata

    def status(self, request: Request) -> Response:
        name, version = self._target(request)
        if version is None:
            versions = self.dataplane.versions(name)
            if not versions:
                raise ModelNotReadyError(f"model '{name}' failed to load: "
                                         f"{self.dataplane.load_error(name)}")
        else:
            versions = [self.dataplane.version(name, version)]
        return json_response({
            "name": name,
            "ready": self.dataplane.model_ready(name, version),
            "model_version_status": [_version_status(v) for v in versions],
        })

    def metadata(self, request: Request) -> Response:
        name, version = self._target(request)
        found = self.dataplane.version(name, version)
        inputs, outputs = self.dataplane.specs(name, found.version)
        signature = {
            "inputs": {s.name: _tensor_info(s) for s in inputs},
            "outputs": {s.name: _tensor_info(s) for s in outputs},
            "method_name": PREDICT_METHOD,
            "defaults": {},
        }
        return json_response({
            "model_spec": {"name": name, "signature_name": "", "version": found.version},
            # NOTE: doubled on purpose: TF wraps the SignatureDefMap in an Any.
            "metadata": {"signature_def": {"signature_def": {
                _tf_inputs.DEFAULT_SIGNATURE: signature}}},
        })

    # Predict

    async def predict(self, request: Request) -> Response:
        name, version = self._target(request)
        body = _tf_inputs.PredictBody(request.body)
        # One call through the door: it resolves the model and dispatches on its handler:
        # tensors decoded against its specs, instances through its handler, or the body
        # whole to an archive's handler under a service_envelope.
        answer = await self.dataplane.predict_instances(name, version, body)
        if isinstance(answer, WholeRequest):
            return await archive_answer(self.dataplane, request, name, answer.info.version)
        if isinstance(answer, list):  # the handler's answers, one per instance
            return Response(_tfjson.dumps({"predictions": answer}))
        assert body.info is not None
        out_specs = {s.name: s for s in body.info.outputs}
        if body.rows:
            return Response(_tfjson.dumps(
                {"predictions": _tfjson.encode_rows(answer.outputs, out_specs)}))
        return Response(_tfjson.dumps(
            {"outputs": _tfjson.encode_columns(answer.outputs, out_specs)}))

    # Classify and regress

    async def classify(self, request: Request) -> Response:
        info, outputs, rows, spec = await self._run_examples(request, "classify", "scores")
        arr = _as_float(outputs, spec)
        scores = arr.reshape(rows, -1) if arr.size else arr.reshape(rows, 0)
        if scores.shape[1] == 0:
            raise InvalidInputError("Cannot convert empty ClassificationResults to JSON")
        names = [info.labels.get(str(i), "") for i in range(scores.shape[1])]
        finite = bool(np.isfinite(scores).all())
        results = [[[label, score if finite else _tfjson.float_json(score)]
                    for label, score in zip(names, row, strict=True)] for row in scores]
        return Response(_tfjson.dumps({"results": results, "result": results}))

    async def regress(self, request: Request) -> Response:
        info, outputs, rows, spec = await self._run_examples(request, "regress", "outputs")
        arr = _as_float(outputs, spec)
        if arr.size != rows:
            raise InvalidInputError(
                f"regress needs one value per example, but model '{info.name}' output "
                f"'{spec.name}' has shape {list(arr.shape)} for {rows} examples")
        results = _tfjson.float_json(arr.reshape(rows))
        return Response(_tfjson.dumps({"results": results, "result": results}))

    async def _run_examples(self, request: Request, method: str, preferred: str
                            ) -> tuple[ModelInfo, np.ndarray, int, TensorSpec]:
        """Examples -> one batch through the model; the output the method reads, and rows."""
        name, version = self._target(request)
        body = _tf_examples.ExamplesBody(request.body, method, preferred)
        response = await self.dataplane.infer_tensors(name, version, body, f":{method}")
        outputs, rows, chosen = response.outputs, body.rows, body.chosen
        assert body.info is not None
        if chosen is None:  # undeclared outputs: the model's first
            key = next(iter(outputs))
            chosen = TensorSpec(key, DataType.FP32, (-1,))
        arr = outputs.get(chosen.name)
        if arr is None:
            raise InvalidInputError(f"model '{name}' returned no output '{chosen.name}'")
        if arr.ndim == 0 or arr.shape[0] != rows:
            raise InvalidInputError(
                f":{method} needs one row per example, but model '{name}' output "
                f"'{chosen.name}' has shape {list(arr.shape)} for {rows} examples")
        return body.info, arr, rows, chosen


# Status and metadata helpers


def _version_status(v: VersionInfo) -> dict[str, Any]:
    failed = v.state == FAILED
    return {
        "version": v.version,
        "state": TF_STATES[v.state],
        "status": {"error_code": "UNKNOWN" if failed else "OK",
                   "error_message": v.error if failed else ""},
    }


def _tensor_info(spec: TensorSpec) -> dict[str, Any]:
    return {
        "dtype": TF_DTYPES[spec.datatype],
        "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in spec.shape],
                         "unknown_rank": False},
        "name": spec.name,
    }


def _as_float(arr: np.ndarray, spec: TensorSpec) -> np.ndarray:
    if spec.datatype is DataType.BF16 and arr.dtype == np.uint16:
        return bf16_to_float(arr)
    if arr.dtype.kind == "f":
        return arr
    if arr.dtype == object:
        raise InvalidInputError(f"output '{spec.name}' is not numeric")
    return arr.astype(np.float64)
