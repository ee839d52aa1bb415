"""KServe v2 / Open Inference Protocol over HTTP, with Triton's binary data extension
(request bodies are decoded in _v2_request).

Response body, binary extension: the JSON header (its length in the
Inference-Header-Content-Length header), then each binary output's raw bytes in order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from ..core.dataplane import DataPlane
from ..core.info import WholeRequest
from ..core.tensors import datatype_of, spec_named
from ..errors import InvalidInputError
from ..http.messages import OCTET_STREAM, Request, Response
from ..http.router import Router
from ..types import DataType, InferResponse, TensorSpec
from ._base import JSON_OPTIONS, error_body, json_response, load_json
from ._ts_archive import archive_answer
from ._v2 import classify, json_data, raw_bytes
from ._v2_answer import plain_json_answer
from ._v2_request import INFERENCE_HEADER_CONTENT_LENGTH, OutputOptions, V2Body

EXTENSIONS = ["binary_tensor_data", "classification", "system_shared_memory"]
JOIN_BELOW = 16 * 1024  # binary outputs up to this size travel joined to the JSON header

_READY = orjson.dumps({"ready": True})
_NOT_READY = orjson.dumps({"ready": False})
_LIVE = orjson.dumps({"live": True})


class KServeV2Frontend:
    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane

    def register(self, router: Router) -> None:
        add = router.add
        tag = ("KServe v2",)
        router.add_probe("/v2/health/live", self.live, "Server liveness", tag)
        router.add_probe("/v2/health/ready", self.ready, "Server readiness", tag)
        add("GET", "/v2", self.server_metadata, "Server metadata and extensions", tag)
        for base in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
            add("GET", base, self.model_metadata, "Model metadata", tag)
            add("GET", base + "/ready", self.model_ready, "Model readiness", tag)
            add("POST", base + "/infer", self.infer, "Run inference (JSON or binary tensors)",
                tag)
        shm = "/v2/systemsharedmemory"
        tag = ("Triton extensions",)
        add("GET", shm + "/status", self.shm_status, "Shared-memory regions", tag)
        add("GET", shm + "/region/{region}/status", self.shm_status, "One region", tag)
        add("POST", shm + "/region/{region}/register", self.shm_register,
            "Register a system shared-memory region", tag)
        add("POST", shm + "/unregister", self.shm_unregister, "Unregister every region", tag)
        add("POST", shm + "/region/{region}/unregister", self.shm_unregister,
            "Unregister a region", tag)
        router.set_error_formatter("/v2", error_body)

    # Health and metadata

    def live(self, request: Request) -> Response:
        return Response(_LIVE)

    def ready(self, request: Request) -> Response:
        if self.dataplane.ready():
            return Response(_READY)
        return Response(_NOT_READY, 503)

    def server_metadata(self, request: Request) -> Response:
        return json_response(self.dataplane.server_metadata())

    def model_metadata(self, request: Request) -> Response:
        p = request.params
        return json_response(self.dataplane.model_metadata(p["model"], p.get("version")))

    def model_ready(self, request: Request) -> Response:
        p = request.params
        ready = self.dataplane.model_ready(p["model"], p.get("version"))
        body: dict[str, Any] = {"name": p["model"], "ready": ready}
        error = self.dataplane.load_error(p["model"], p.get("version"))
        if error:
            body["error"] = error  # a FAILED model says why, in every status API
        return json_response(body, 200 if ready else 503)

    # System shared memory (Triton's extension)

    def shm_status(self, request: Request) -> Response:
        return json_response(self.dataplane.shared_memory.status(request.params.get("region")))

    def shm_register(self, request: Request) -> Response:
        doc = load_json(request.body)
        if not isinstance(doc, dict):
            raise InvalidInputError("register takes {\"key\", \"offset\", \"byte_size\"}")
        self.dataplane.shared_memory.register(request.params["region"], doc.get("key"),
                                              doc.get("offset", 0), doc.get("byte_size"))
        return Response(b"")

    def shm_unregister(self, request: Request) -> Response:
        self.dataplane.shared_memory.unregister(request.params.get("region"))
        return Response(b"")

    # Inference

    async def infer(self, request: Request) -> Response:
        p = request.params
        body = V2Body(request, self.dataplane.shared_memory)
        # One call through the door: it resolves the model, then decodes ``body``
        # against it (or routes an archive's request whole), validates and runs.
        answer = await self.dataplane.infer_body(p["model"], p.get("version"), body)
        if isinstance(answer, WholeRequest):
            # As TorchServe routes it: the body goes to the archive's handler whole (its
            # kservev2 service_envelope, when configured, unwraps it there).
            info = answer.info
            return await archive_answer(self.dataplane, request, info.name, info.version)
        info, options = body.info, body.options
        assert info is not None
        if options.classification:
            for name, k in options.classification.items():
                if name in answer.outputs:
                    answer.outputs[name] = classify(answer.outputs[name], k, info.labels,
                                                    info.batched)
        return self.encode(answer, options, info.outputs)

    def _write_shared(self, name: str, arr: np.ndarray, datatype: DataType,
                      params: dict[str, Any]) -> None:
        """Write an output into the client's region (the JSON then carries no data)."""
        view = self.dataplane.shared_memory.view(f"output '{name}'", params)
        raw = raw_bytes(arr, datatype)
        n = len(raw)
        if n > view.nbytes:
            raise InvalidInputError(f"output '{name}' needs {n} bytes but shared memory "
                                    f"region '{params['shared_memory_region']}' offers "
                                    f"{view.nbytes}")
        view[:n] = raw

    def encode(self, response: InferResponse, options: OutputOptions,
               specs: tuple[TensorSpec, ...]) -> Response:
        if not (options.binary_default or options.binary or options.shared_memory):
            header = plain_json_answer(response, specs)
            if header is not None:
                return Response(header)
        outputs = []
        buffers: list[Any] = []
        for name, arr in response.outputs.items():
            spec = spec_named(specs, name)
            datatype = datatype_of(arr, spec)
            entry: dict[str, Any] = {"name": name, "datatype": datatype.wire,
                                     "shape": list(arr.shape)}
            shm = options.shared_memory.get(name)
            if shm is not None:
                # As Triton: no data and no parameters (its C++ client reads binary_data_size
                # from any "parameters" object it finds on an output).
                self._write_shared(name, arr, datatype, shm)
            elif options.binary.get(name, options.binary_default):
                buf = raw_bytes(arr, datatype)
                entry["parameters"] = {"binary_data_size": len(buf)}
                buffers.append(buf)
            else:
                entry["data"] = json_data(arr, datatype)
            outputs.append(entry)
        doc: dict[str, Any] = {"model_name": response.model, "model_version": response.version}
        if response.id is not None:
            doc["id"] = response.id
        doc["outputs"] = outputs
        header = orjson.dumps(doc, option=JSON_OPTIONS)
        if not buffers:
            return Response(header)
        length = [(INFERENCE_HEADER_CONTENT_LENGTH, str(len(header)).encode())]
        if sum(memoryview(b).nbytes for b in buffers) <= JOIN_BELOW:
            # Small tensors: one write of one body; a second write costs more than the copy.
            return Response(b"".join([header, *buffers]), content_type=OCTET_STREAM,
                            headers=length)
        return Response(header, content_type=OCTET_STREAM, buffers=buffers, headers=length)
