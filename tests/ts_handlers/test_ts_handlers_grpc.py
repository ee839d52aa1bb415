"""TorchServe archives over TorchServe's gRPC API: a streaming handler's parts arrive as
separate StreamPredictions messages; unary Predictions gets the parts and the answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from mar_cases import server_env
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from fastserve.grpc.protos import inference_pb2 as ts
from fastserve.grpc.protos import inference_pb2_grpc as ts_grpc

from _server import ServerProcess, free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def channel(ts_store: Path) -> Iterator[grpc.Channel]:
    port = free_port()
    with ServerProcess("all", "--model-store", str(ts_store), "--grpc-port", str(port),
                       env=server_env()):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> object:
    return ts_grpc.InferenceAPIsServiceStub(channel)


def request() -> ts.PredictionsRequest:
    # gRPC carries no content type: the handler gets the bytes (as from TorchServe's gRPC),
    # which stream_handler.py does not parse, so it sends its default 3 parts.
    return ts.PredictionsRequest(model_name="stream",
                                 input={"data": json.dumps({"parts": 2}).encode()})


def test_stream_predictions_sends_each_part(stub) -> None:
    replies = [r.prediction for r in stub.StreamPredictions(request())]
    # Parts that arrive together may share a message; the bytes and their order hold.
    assert b"".join(replies) == b"part 0;part 1;part 2;done"
    assert len(replies) >= 2 and replies[0].startswith(b"part 0;") and replies[-1] == b"done"


def test_unary_predictions_of_a_streaming_handler(stub) -> None:
    assert stub.Predictions(request()).prediction == b"part 0;part 1;part 2;done"


def test_stream_predictions_unknown_model(stub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        list(stub.StreamPredictions(ts.PredictionsRequest(model_name="nope",
                                                          input={"data": b"{}"})))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_model_infer_on_an_archive_points_to_predictions(channel) -> None:
    request = pb.ModelInferRequest(model_name="stream")
    request.inputs.add(name="x", datatype="FP32", shape=[1]).contents.fp32_contents.append(1)
    with pytest.raises(grpc.RpcError) as err:
        pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "Predictions" in err.value.details()
