"""TorchServe 0.12's gRPC APIs through stubs generated from its protos: the same handlers
as /predictions, answers compared with local torch and with the HTTP API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import torch
from google.protobuf import empty_pb2

from fastserve.grpc.protos import inference_pb2 as ts
from fastserve.grpc.protos import inference_pb2_grpc as ts_grpc
from fastserve.grpc.protos import management_pb2 as tsm
from fastserve.grpc.protos import management_pb2_grpc as tsm_grpc

pytestmark = pytest.mark.slow

SAMPLES = Path(__file__).resolve().parents[2] / "examples" / "samples"


@pytest.fixture(scope="module")
def inference(grpc_server) -> Any:
    with grpc.insecure_channel(grpc_server.url) as channel:
        yield ts_grpc.InferenceAPIsServiceStub(channel)


@pytest.fixture(scope="module")
def management(grpc_server) -> Any:
    with grpc.insecure_channel(grpc_server.management_url) as channel:
        yield tsm_grpc.ManagementAPIsServiceStub(channel)


def digits_body(seed: int) -> tuple[np.ndarray, bytes]:
    x = np.random.default_rng(seed).random(64, dtype=np.float32)
    return x, json.dumps(x.tolist()).encode()


def expected_logits(local_model: Any, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return local_model("digits")(torch.from_numpy(x[None])).numpy()[0]


def test_ping(inference) -> None:
    assert json.loads(inference.Ping(empty_pb2.Empty()).health) == {"status": "Healthy"}


def test_predictions_match_local_torch(inference, local_model) -> None:
    x, body = digits_body(0)
    answer = inference.Predictions(ts.PredictionsRequest(model_name="digits",
                                                         input={"data": body}))
    np.testing.assert_allclose(json.loads(answer.prediction), expected_logits(local_model, x),
                               rtol=1e-5, atol=1e-5)


def test_image_handler_answers_as_http(inference, grpc_server) -> None:
    png = (SAMPLES / "digit_3.png").read_bytes()
    answer = inference.Predictions(ts.PredictionsRequest(model_name="digits_image",
                                                         input={"data": png}))
    status, _, http_answer = grpc_server.http.request("POST", "/predictions/digits_image", png)
    assert status == 200
    assert json.loads(answer.prediction) == json.loads(http_answer)


def test_stream_predictions_answers_once(inference, local_model) -> None:
    x, body = digits_body(1)
    answers = list(inference.StreamPredictions(ts.PredictionsRequest(
        model_name="digits", input={"body": body})))
    assert len(answers) == 1
    np.testing.assert_allclose(json.loads(answers[0].prediction),
                               expected_logits(local_model, x), rtol=1e-5, atol=1e-5)


def test_stream_predictions2_in_order_with_errors(inference, local_model) -> None:
    x, body = digits_body(2)
    requests = [
        ts.PredictionsRequest(model_name="digits", input={"data": body}, sequenceId="s1"),
        ts.PredictionsRequest(model_name="nope", input={"data": body}, sequenceId="s1"),
        ts.PredictionsRequest(model_name="digits", input={"data": b"[1, 2]"}, sequenceId="s1"),
        ts.PredictionsRequest(model_name="digits", input={"data": body}, sequenceId="s1"),
    ]
    answers = list(inference.StreamPredictions2(iter(requests)))
    assert [a.sequenceId for a in answers] == ["s1"] * 4
    assert [a.status.code for a in answers] == [0, grpc.StatusCode.NOT_FOUND.value[0],
                                                grpc.StatusCode.INVALID_ARGUMENT.value[0], 0]
    for answer in (answers[0], answers[3]):
        np.testing.assert_allclose(json.loads(answer.prediction),
                                   expected_logits(local_model, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("request_, code", [
    (ts.PredictionsRequest(model_name="nope", input={"data": b"[]"}), "NOT_FOUND"),
    (ts.PredictionsRequest(model_name="digits", model_version="9", input={"data": b"[]"}),
     "NOT_FOUND"),
    (ts.PredictionsRequest(model_name="digits"), "INVALID_ARGUMENT"),
    (ts.PredictionsRequest(model_name="digits", input={"a": b"1", "b": b"2"}),
     "INVALID_ARGUMENT"),
])
def test_prediction_errors(inference, request_, code) -> None:
    with pytest.raises(grpc.RpcError) as err:
        inference.Predictions(request_)
    assert err.value.code() == getattr(grpc.StatusCode, code)


def test_management_service(management, grpc_server) -> None:
    listed = json.loads(management.ListModels(tsm.ListModelsRequest(limit=2)).msg)
    assert len(listed["models"]) == 2 and listed["nextPageToken"] == "2"
    described = json.loads(management.DescribeModel(tsm.DescribeModelRequest(
        model_name="versioned", model_version="1")).msg)
    assert described[0]["modelVersion"] == "1"
    management.SetDefault(tsm.SetDefaultRequest(model_name="versioned", model_version="1"))
    try:
        assert grpc_server.http.json("GET", "/v2/models/versioned")[1]["versions"]
        x = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [0, 0, 0]}]}
        assert grpc_server.http.json("POST", "/v2/models/versioned/infer", x)[1][
            "outputs"][0]["data"] == [1, 1, 1]
    finally:
        management.SetDefault(tsm.SetDefaultRequest(model_name="versioned", model_version="2"))
    scaled = json.loads(management.ScaleWorker(tsm.ScaleWorkerRequest(
        model_name="digits_ts", min_worker=1, synchronous=True)).msg)
    assert "1" in scaled["status"]
    management.UnregisterModel(tsm.UnregisterModelRequest(model_name="digits_ts"))
    assert grpc_server.http.request("GET", "/v2/models/digits_ts/ready")[0] == 404
    registered = json.loads(management.RegisterModel(tsm.RegisterModelRequest(
        url="digits_ts", synchronous=True)).msg)
    assert "registered" in registered["status"]
    assert grpc_server.http.request("GET", "/v2/models/digits_ts/ready")[0] == 200
    with pytest.raises(grpc.RpcError) as err:
        management.DescribeModel(tsm.DescribeModelRequest(model_name="nope"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_management_is_not_on_the_inference_port(grpc_server) -> None:
    with grpc.insecure_channel(grpc_server.url) as channel:
        stub = tsm_grpc.ManagementAPIsServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.ListModels(tsm.ListModelsRequest())
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
