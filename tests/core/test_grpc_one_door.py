"""gRPC's ModelInfer (and ModelStreamInfer, which runs the same ``infer``) makes one call
into the data plane per request, as HTTP's v2 infer does (issue 14): ``infer_body`` with
the ModelInferRequest as its body, decoded once the model is known, never a look-up, a
handler check, an archive look-up, a refusal count and a run of its own."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fastserve.core import ts_store
from fastserve.core.control import ModelControl
from fastserve.core.dataplane import DataPlane
from fastserve.core.repository import ModelRepository
from fastserve.errors import InvalidInputError, ModelNotFoundError, UnsupportedError

pytest.importorskip("tritonclient.grpc")
grpc = pytest.importorskip("grpc")
from tritonclient.grpc import service_pb2 as pb  # noqa: E402

from fastserve.frontends._triton_settings import TritonSettings  # noqa: E402
from fastserve.grpc.kserve import InferenceService  # noqa: E402
from fastserve.grpc.management import Management  # noqa: E402
from fastserve.grpc.status import CallPolicy, code_of  # noqa: E402

TENSOR = "max_batch_size = 4\nbatch_delay_ms = 0\n"
# What a front-end may call on the data plane for one request (a look-up, or a tensor door).
DOORS = ("info", "infer_body", "infer_tensors", "predict_instances")


class RecordingPlane(DataPlane):
    """A DataPlane that records each call a front-end makes into it (not its own)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[str] = []
        for name in DOORS:
            setattr(self, name, self._recorded(name, getattr(self, name)))

    def _recorded(self, name: str, method: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return method(*args, **kwargs)
        return call


@pytest.fixture
def plane(tmp_path: Path, make_model: Any, fake_loader: Any) -> RecordingPlane:
    make_model(tmp_path, "t", TENSOR)
    make_model(tmp_path, "arch", TENSOR)
    plane = RecordingPlane(ModelRepository(tmp_path, fake_loader()))
    plane.repository.scan()
    entry = plane.repository.models["arch"]
    entry.config = replace(entry.config, handler=ts_store.HANDLER)  # as the store makes it
    return plane


def _request(model: str, x: np.ndarray, datatype: str = "FP32") -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model, id="r1")
    tensor = request.inputs.add(name="x", datatype=datatype, shape=list(x.shape))
    tensor.contents.fp32_contents.extend(x.ravel().tolist())
    return request


def _infer_each(plane: RecordingPlane, run_async: Any, wait_until: Any,
                *requests: pb.ModelInferRequest) -> list[tuple[Any, list[str]]]:
    """Each request's answer (or error) through the gRPC service, with the calls it made
    into the data plane."""
    service = InferenceService(plane, ModelControl(plane.repository), CallPolicy(),
                               Management(None, None), False,
                               TritonSettings(lambda name: None))

    async def main() -> list[tuple[Any, list[str]]]:
        thread = plane.repository.start_loading(asyncio.get_running_loop())
        await wait_until(lambda: not plane.repository.loading)
        thread.join(5)
        answers = []
        try:
            for request in requests:
                plane.calls.clear()
                try:
                    answer: Any = await service.infer(request)
                except Exception as exc:  # noqa: BLE001 - the test looks at it
                    answer = exc
                answers.append((answer, list(plane.calls)))
            return answers
        finally:
            plane.close()

    return run_async(main)


def test_grpc_model_infer_is_one_call_into_the_data_plane(
        plane: RecordingPlane, run_async: Any, wait_until: Any) -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    [(answer, calls)] = _infer_each(plane, run_async, wait_until, _request("t", x))
    assert calls == ["infer_body"]
    response = pb.ModelInferResponse.FromString(answer)
    assert (response.model_name, response.model_version, response.id) == ("t", "1", "r1")
    outputs = {o.name: i for i, o in enumerate(response.outputs)}
    y = np.frombuffer(response.raw_output_contents[outputs["y"]], np.float32).reshape(2, 3)
    assert np.allclose(y, x * 2 + 1)


def test_grpc_model_infer_errors_keep_their_codes_through_one_call(
        plane: RecordingPlane, run_async: Any, wait_until: Any) -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    answers = _infer_each(plane, run_async, wait_until,
                          _request("nope", x, "NOPE"),  # unknown model first, whatever body
                          _request("t", x, "NOPE"),  # a decode error: the model's failure
                          _request("arch", x))  # an archive's handler takes whole requests
    (missing, calls1), (bad, calls2), (archive, calls3) = answers
    assert calls1 == calls2 == calls3 == ["infer_body"]
    assert isinstance(missing, ModelNotFoundError)
    assert code_of(missing)[0] is grpc.StatusCode.NOT_FOUND
    assert isinstance(bad, InvalidInputError) and "input 'x'" in bad.message
    assert code_of(bad)[0] is grpc.StatusCode.INVALID_ARGUMENT
    assert plane.repository.models["t"].versions["1"].stats.fail == 1
    assert isinstance(archive, UnsupportedError)
    assert code_of(archive)[0] is grpc.StatusCode.UNIMPLEMENTED
    assert archive.message.startswith("model 'arch' is a TorchServe archive: its handler "
                                      "takes whole requests; call TorchServe's Predictions")
    assert plane.repository.models["arch"].versions["1"].stats.fail == 0
