"""--grpc-management-port with --workers 2: the parent serves it; changes reach both
workers (every fresh connection to the shared inference port sees them), other calls are
relayed to the workers, with the real clients (tritonclient.grpc, TorchServe's stubs).
Auth is on, with different inference and management tokens: the management port takes
only the management token, and relays with the inference one."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
import torch

from _server import ServerProcess, free_port

grpcclient = pytest.importorskip("tritonclient.grpc")
import grpc  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

from fastserve.grpc.protos import management_pb2, management_pb2_grpc  # noqa: E402

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"
FRESH = 12  # new connections per check: the kernel spreads them over both workers
I = {"authorization": "Bearer inference-token"}  # noqa: E741
M = {"authorization": "Bearer management-token"}


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    keys = tmp_path_factory.mktemp("keys") / "key_file.json"
    keys.write_bytes(orjson.dumps({"inference": {"key": "inference-token"},
                                   "management": {"key": "management-token"}}))
    with ServerProcess(EXAMPLES / "models", "--workers", "2", "--grpc-port", str(free_port()),
                       "--grpc-management-port", str(free_port()),
                       "--auth-token-file", str(keys)) as srv:
        streak = 0
        while streak < 20:  # every worker ready: 20 fresh connections in a row say so
            streak = streak + 1 if srv.request("GET", "/v2/health/ready")[0] == 200 else 0
        yield srv
        assert srv.stop() == 0, srv.log()


def every_worker(srv: ServerProcess, check) -> None:
    for _ in range(FRESH):
        with grpcclient.InferenceServerClient(f"127.0.0.1:{srv.grpc_port}") as client:
            check(client)


def digits_input() -> tuple[np.ndarray, np.ndarray]:
    body = orjson.loads((EXAMPLES / "samples" / "digits_v2.json").read_bytes())
    x = np.asarray(body["inputs"][0]["data"], dtype=np.float32).reshape(1, 64)
    program = torch.export.load(str(EXAMPLES / "models" / "digits" / "1" / "model.pt2"))
    with torch.inference_mode():
        return x, program.module()(torch.from_numpy(x)).numpy()


def test_relayed_calls(workers) -> None:
    x, want = digits_input()
    url = f"127.0.0.1:{workers.grpc_management_port}"
    with grpcclient.InferenceServerClient(url) as management:
        assert management.is_server_live() and management.is_server_ready()
        assert management.get_model_metadata("digits", headers=M).inputs[0].shape == [-1, 64]
        tensor = grpcclient.InferInput("input__0", [1, 64], "FP32")
        tensor.set_data_from_numpy(x)
        np.testing.assert_allclose(management.infer("digits", [tensor], headers=M).as_numpy(
            "output__0"),
                                   want, rtol=1e-5, atol=1e-5)
        with pytest.raises(InferenceServerException) as err:
            management.get_model_metadata("no_such_model", headers=M)
        assert err.value.status() == "StatusCode.NOT_FOUND"
        # The management port wants the management token, for relayed and own calls alike.
        for headers in (None, I):
            for call, args in ((management.get_model_metadata, ("digits",)),
                               (management.unload_model, ("digits",)),
                               (management.get_log_settings, ())):
                with pytest.raises(InferenceServerException) as err:
                    call(*args, headers=headers)
                assert err.value.status() == "StatusCode.UNAUTHENTICATED"
    with grpc.insecure_channel(url) as channel:
        check = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert check.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as raw:
            channel.unary_unary("/inference.GRPCInferenceService/ModelMetadata")(
                b"\xff\xff", metadata=tuple(M.items()))
        assert raw.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_relayed_stream(workers) -> None:
    x, want = digits_input()
    answers: queue.Queue = queue.Queue()
    url = f"127.0.0.1:{workers.grpc_management_port}"
    with grpcclient.InferenceServerClient(url) as management:
        management.start_stream(callback=lambda result, error: answers.put((result, error)),
                                headers=M)
        try:
            for i in range(3):
                tensor = grpcclient.InferInput("input__0", [1, 64], "FP32")
                tensor.set_data_from_numpy(x * i)
                management.async_stream_infer("digits", [tensor], request_id=str(i))
            bad = grpcclient.InferInput("input__0", [1, 3], "FP32")
            bad.set_data_from_numpy(np.zeros((1, 3), np.float32))
            management.async_stream_infer("digits", [bad], request_id="bad")
            got = [answers.get(timeout=30) for _ in range(4)]
        finally:
            management.stop_stream()
    errors = [e for _, e in got if e is not None]
    assert len(errors) == 1 and "shape" in errors[0].message()
    by_id = {r.get_response().id: r.as_numpy("output__0") for r, e in got if e is None}
    np.testing.assert_allclose(by_id["1"], want, rtol=1e-5, atol=1e-5)
    assert set(by_id) == {"0", "1", "2"}


def test_changes_reach_every_worker(workers) -> None:
    url = f"127.0.0.1:{workers.grpc_management_port}"
    with grpcclient.InferenceServerClient(url) as management:
        management.unload_model("digits_ts", headers=M)
        try:
            def gone(client) -> None:
                with pytest.raises(InferenceServerException) as err:
                    client.is_model_ready("digits_ts", headers=I)
                assert err.value.status() == "StatusCode.NOT_FOUND"

            every_worker(workers, gone)
            index = {m.name: m.state for m in management.get_model_repository_index(
                headers=M).models}
            assert index["digits"] == "READY" and index["digits_ts"] != "READY"
        finally:
            management.load_model("digits_ts", headers=M)
        every_worker(workers, lambda client: client.is_model_ready("digits_ts", headers=I)
                     or pytest.fail())
        settings = management.update_log_settings({"log_info": False}, headers=M,
                                                  as_json=True)
        try:
            assert settings["settings"]["log_info"]["bool_param"] is False
            every_worker(workers, lambda client: client.get_log_settings(
                headers=I, as_json=True)["settings"]["log_info"].get("bool_param")
                in (False, None) or pytest.fail("a worker still logs info"))
            management.update_trace_settings("digits", {"trace_count": "3"}, headers=M)
            every_worker(workers, lambda client: client.get_trace_settings(
                "digits", headers=I).settings["trace_count"].value == ["3"] or pytest.fail())
        finally:
            management.update_log_settings({"log_info": True}, headers=M)
            management.update_trace_settings("digits", {"trace_count": None}, headers=M)
        assert management.get_trace_settings(
            "digits", headers=M).settings["trace_count"].value == ["-1"]
    with grpcclient.InferenceServerClient(f"127.0.0.1:{workers.grpc_port}") as inference:
        with pytest.raises(InferenceServerException) as err:
            inference.update_log_settings({"log_info": False}, headers=I)
        assert err.value.status() == "StatusCode.PERMISSION_DENIED"


def test_torchserve_management(workers) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{workers.grpc_management_port}") as channel:
        stub = management_pb2_grpc.ManagementAPIsServiceStub(channel)
        metadata = tuple(M.items())
        listed = orjson.loads(stub.ListModels(management_pb2.ListModelsRequest(),
                                              metadata=metadata).msg)
        assert {m["modelName"] for m in listed["models"]} >= {"digits", "digits_ts"}
        with pytest.raises(grpc.RpcError) as err:
            stub.DescribeModel(management_pb2.DescribeModelRequest(model_name="no_such"),
                               metadata=metadata)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
