"""Bad input, deadlines, cancellation, auth and health over gRPC: the right status code,
and the server, its other clients and HTTP unaffected (CONTRACT §8)."""

from __future__ import annotations

import threading
import time
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from _server import ServerProcess, free_port
from models_factory import build_repository

pytestmark = pytest.mark.slow

SLOW_N = 12000  # matmuls of the slow model: about 3 s on one thread here (quiet box)


@pytest.fixture(scope="module")
def channel(grpc_server) -> Any:
    with grpc.insecure_channel(grpc_server.url, options=[
            ("grpc.max_send_message_length", -1)]) as ch:
        yield ch


@pytest.fixture(scope="module")
def stub(channel) -> Any:
    return pb_grpc.GRPCInferenceServiceStub(channel)


def digits_request(x: np.ndarray, model: str = "digits", version: str = "") -> Any:
    request = pb.ModelInferRequest(model_name=model, model_version=version)
    request.inputs.add(name="input__0", datatype="FP32", shape=x.shape)
    request.raw_input_contents.append(x.astype(np.float32).tobytes())
    return request


def code_of(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code(), err.value.details()


def http_still_serves(grpc_server) -> None:
    status, _, _ = grpc_server.http.request("GET", "/v2/health/ready")
    assert status == 200
    status, doc = grpc_server.http.json("POST", "/v2/models/digits/infer", {"inputs": [
        {"name": "input__0", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}]})
    assert status == 200 and doc["outputs"][0]["shape"] == [1, 10]


def test_typed_contents(stub) -> None:
    request = pb.ModelInferRequest(model_name="two_io")
    a = request.inputs.add(name="a", datatype="FP32", shape=[1, 4])
    a.contents.fp32_contents.extend([1.0, 2.0, 3.0, 4.0])
    b = request.inputs.add(name="b", datatype="INT64", shape=[1, 4])
    b.contents.int64_contents.extend([10, 20, 30, 40])
    answer = stub.ModelInfer(request)
    by_name = dict(zip((o.name for o in answer.outputs), answer.raw_output_contents,
                       strict=True))
    np.testing.assert_allclose(np.frombuffer(by_name["sum"], np.float32), [12, 24, 36, 48])
    np.testing.assert_array_equal(np.frombuffer(by_name["twice"], np.int64), [20, 40, 60, 80])


@pytest.mark.parametrize("mutate, fragment", [
    (lambda r: r.raw_input_contents.__setitem__(0, b"\0" * 12),
     "raw_input_contents entry is 12 bytes"),
    (lambda r: r.inputs[0].ClearField("shape") or r.inputs[0].shape.extend([1, 3]), "shape"),
    (lambda r: setattr(r.inputs[0], "datatype", "FP64") or r.raw_input_contents.__setitem__(
        0, b"\0" * 512), "FP64"),
    (lambda r: setattr(r.inputs[0], "datatype", "FLOAT"), "datatype"),
    (lambda r: r.raw_input_contents.append(b"extra"), "raw_input_contents"),
    (lambda r: r.inputs[0].contents.fp32_contents.extend([1.0] * 64), "contents"),
    (lambda r: r.ClearField("raw_input_contents"), "raw_input_contents"),
    (lambda r: r.outputs.add(name="nope"), "unknown output"),
])
def test_bad_requests_are_invalid_argument(stub, grpc_server, mutate, fragment) -> None:
    request = digits_request(np.zeros((1, 64)))
    mutate(request)
    code, details = code_of(lambda: stub.ModelInfer(request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in details
    assert stub.ModelInfer(digits_request(np.zeros((1, 64)))).outputs[0].shape == [1, 10]


def test_malformed_protobuf_is_invalid_argument(channel, stub, grpc_server) -> None:
    raw = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
    code, details = code_of(lambda: raw(b"\x0a\xff\xff\xff\xff\x0f"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "ModelInferRequest" in details
    http_still_serves(grpc_server)


def test_unknown_version_and_failing_model(stub) -> None:
    code, _ = code_of(lambda: stub.ModelInfer(digits_request(np.zeros((1, 64)), version="7")))
    assert code == grpc.StatusCode.NOT_FOUND
    request = pb.ModelInferRequest(model_name="fragile")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 2])
    request.raw_input_contents.append(np.array([[-1, 1]], np.float32).tobytes())
    code, details = code_of(lambda: stub.ModelInfer(request))
    assert code == grpc.StatusCode.INTERNAL and "negative" in details


def test_oversize_message_is_resource_exhausted(stub, grpc_server) -> None:
    x = np.zeros((grpc_server.max_request // 256 + 1, 64), np.float32)
    code, _ = code_of(lambda: stub.ModelInfer(digits_request(x)))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    http_still_serves(grpc_server)


def test_unimplemented(channel) -> None:
    # Every GRPCInferenceService RPC is served now (CUDA shared memory answers as Triton
    # without GPUs: test_grpc_triton_settings.py); a method no service has is UNIMPLEMENTED.
    call = channel.unary_unary("/inference.GRPCInferenceService/NoSuchRpc")
    code, _ = code_of(lambda: call(b""))
    assert code == grpc.StatusCode.UNIMPLEMENTED


def test_client_leaving_mid_stream(grpc_server, stub) -> None:
    with grpc.insecure_channel(grpc_server.url) as ch:
        stream = pb_grpc.GRPCInferenceServiceStub(ch).ModelStreamInfer(
            iter([digits_request(np.zeros((1, 64)))] * 50))
        next(stream)
        stream.cancel()  # and the channel closes with 49 answers unread
    assert stub.ModelInfer(digits_request(np.ones((1, 64)))).outputs[0].shape == [1, 10]
    http_still_serves(grpc_server)


def test_health_service(channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    serving = health_pb2.HealthCheckResponse.SERVING
    assert health.Check(health_pb2.HealthCheckRequest()).status == serving
    assert health.Check(health_pb2.HealthCheckRequest(
        service="inference.GRPCInferenceService")).status == serving
    assert health.Check(health_pb2.HealthCheckRequest(service="digits")).status == serving
    code, _ = code_of(lambda: health.Check(health_pb2.HealthCheckRequest(service="nope")))
    assert code == grpc.StatusCode.NOT_FOUND


def _metric(server: Any, prefix: str, *labels: str) -> float:
    _, _, body = server.http.request("GET", "/metrics")
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(prefix + "{") and all(label in line for label in labels):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_count_grpc_answers(stub, grpc_server) -> None:
    ok = 'fastserve_requests_total', 'api="grpc"', 'model="digits"', 'code="200"'
    bad = 'fastserve_requests_total', 'api="grpc"', 'model="digits"', 'code="400"'
    before_ok, before_bad = _metric(grpc_server, *ok), _metric(grpc_server, *bad)
    stub.ModelInfer(digits_request(np.zeros((2, 64))))
    code_of(lambda: stub.ModelInfer(digits_request(np.zeros((2, 3)))))
    assert _metric(grpc_server, *ok) == before_ok + 1
    assert _metric(grpc_server, *bad) == before_bad + 1


def slow_request(n: int) -> Any:
    request = pb.ModelInferRequest(model_name="slow")
    request.inputs.add(name="x", datatype="FP32", shape=[2])
    request.inputs.add(name="n", datatype="INT64", shape=[1])
    request.raw_input_contents.extend([np.ones(2, np.float32).tobytes(),
                                       np.array([n], np.int64).tobytes()])
    return request


def test_deadline_and_cancel_of_queued_calls(stub, grpc_server) -> None:
    """While one call runs, a queued call past its deadline and a cancelled one never run.

    No sleeps: each step waits for what the server reports (/metrics): the slow call
    taken off the queue by the model's one instance, then the other two queued behind
    it. A loaded box only makes the steps slower, and the slow call longer."""
    def executions() -> int:
        _, doc = grpc_server.http.json("GET", "/v2/models/slow/stats")
        return doc["model_stats"][0]["execution_count"]

    def slow(name: str, *labels: str) -> float:
        return _metric(grpc_server, name, 'model="slow"', *labels)

    def wait_for(what: str, condition: Any) -> None:
        give_up = time.monotonic() + 60
        while not condition():
            assert time.monotonic() < give_up, f"gave up waiting for {what}"
            time.sleep(0.01)

    cancelled = ("fastserve_requests_cancelled_total",)
    dequeued = ("fastserve_request_duration_seconds_count", 'stage="queue"')
    assert slow("fastserve_queue_depth") == 0
    before, before_cancelled, before_dequeued = executions(), slow(*cancelled), slow(*dequeued)
    done: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: done.update(
        answer=stub.ModelInfer(slow_request(SLOW_N), timeout=60)))
    runner.start()
    # The first call must be running (off the queue, on the model's only instance) when
    # the next ones come: they then wait in the queue behind it.
    wait_for("the slow call to start", lambda: slow(*dequeued) == before_dequeued + 1)
    # A deadline long enough to be queued on a busy box, well inside the slow call.
    expiring = stub.ModelInfer.future(slow_request(1), timeout=1.0)
    leaving = stub.ModelInfer.future(slow_request(1))
    wait_for("two calls queued", lambda: slow("fastserve_queue_depth") == 2)
    leaving.cancel()
    code, _ = code_of(expiring.result)
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert leaving.cancelled()
    # What the test is about needs the slow call still running here (SLOW_N sized for it).
    assert runner.is_alive() and not done, "the slow call ended before the queued ones did"
    runner.join(60)
    assert np.frombuffer(done["answer"].raw_output_contents[0], np.float32).tolist() == [2, 2]
    assert executions() == before + 1
    assert slow(*cancelled) == before_cancelled + 2
    assert slow("fastserve_queue_depth") == 0


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("grpc-auth")
    build_repository(root / "repo", ["digits"])
    (root / "token").write_text("s3cret\n")
    port = free_port()
    with ServerProcess(root / "repo", "--grpc-port", str(port), "--auth-token-file",
                       str(root / "token")):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            yield ch


def test_auth_from_metadata(auth_server) -> None:
    stub = pb_grpc.GRPCInferenceServiceStub(auth_server)
    request = digits_request(np.zeros((1, 64)))
    assert stub.ServerLive(pb.ServerLiveRequest()).live  # probes need no token
    health = health_pb2_grpc.HealthStub(auth_server)
    assert health.Check(health_pb2.HealthCheckRequest()).status == \
        health_pb2.HealthCheckResponse.SERVING
    for metadata in ((), (("authorization", "Bearer wrong"),)):
        code, _ = code_of(lambda m=metadata: stub.ModelInfer(request, metadata=m))
        assert code == grpc.StatusCode.UNAUTHENTICATED
    answer = stub.ModelInfer(request, metadata=(("authorization", "Bearer s3cret"),))
    assert list(answer.outputs[0].shape) == [1, 10]
