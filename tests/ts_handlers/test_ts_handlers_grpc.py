"""TorchServe archives over TorchServe's gRPC API: a streaming handler's parts arrive as
separate StreamPredictions messages; unary Predictions gets the parts and the answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from mar_cases import server_env

from fastserve.grpc.protos import inference_pb2 as ts
from fastserve.grpc.protos import inference_pb2_grpc as ts_grpc

from _server import ServerProcess, free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stub(ts_store: Path) -> Iterator[object]:
    port = free_port()
    with ServerProcess("all", "--model-store", str(ts_store), "--grpc-port", str(port),
                       env=server_env()):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield ts_grpc.InferenceAPIsServiceStub(channel)


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
