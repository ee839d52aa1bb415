"""Triton's LogSettings, TraceSetting and CudaSharedMemory* over gRPC (tritonclient.grpc),
and the same settings over HTTP (/v2/logging, /v2/trace/setting): one state, reads on
every port, changes only on the management ports."""

from __future__ import annotations

import re

import numpy as np
import pytest

grpcclient = pytest.importorskip("tritonclient.grpc")
import grpc  # noqa: E402
from tritonclient.grpc import service_pb2, service_pb2_grpc  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

pytestmark = pytest.mark.slow

TRITON_LOG_DEFAULTS = {"log_file": "", "log_info": True, "log_warning": True,
                       "log_error": True, "log_verbose_level": 0, "log_format": "default"}
TRITON_TRACE_DEFAULTS = {"trace_level": ["OFF"], "trace_rate": ["1000"], "trace_count": ["-1"],
                         "log_frequency": ["0"], "trace_file": [""], "trace_mode": ["triton"]}


def status_of(call, *args, **kwargs) -> tuple[str, str]:
    with pytest.raises(InferenceServerException) as err:
        call(*args, **kwargs)
    return err.value.status(), err.value.message()


def trace(client, model=None, **changes) -> dict:
    if changes:
        doc = client.update_trace_settings(model_name=model, settings=changes, as_json=True)
    else:
        doc = client.get_trace_settings(model_name=model, as_json=True)
    return {k: v.get("value", []) for k, v in doc["settings"].items()}


def logs(client, **changes) -> dict:
    doc = (client.update_log_settings(changes, as_json=True) if changes
           else client.get_log_settings(as_json=True))
    return {k: next(iter(v.values())) for k, v in doc["settings"].items()}


def test_log_settings_change_the_server_log(triton, triton_management, grpc_server) -> None:
    srv = grpc_server.http
    assert logs(triton) == TRITON_LOG_DEFAULTS
    assert srv.get("/v2/logging").json() == TRITON_LOG_DEFAULTS
    try:
        # Off: a model loaded now leaves no info line; the HTTP view says the same.
        assert logs(triton_management, log_info=False)["log_info"] is False
        assert srv.get("/v2/logging").json()["log_info"] is False
        triton_management.unload_model("half")
        triton_management.load_model("half")
        assert "model half: loading" not in srv.log().split("unload")[-1]
        # On again, with ISO 8601 times: the next load is logged, so stamped.
        status, doc = srv.json("POST", "/v2/logging",
                               {"log_info": True, "log_format": "ISO8601"},
                               port=srv.management_port)
        assert status == 200 and doc == {**TRITON_LOG_DEFAULTS, "log_format": "ISO8601"}
        triton_management.unload_model("half")
        triton_management.load_model("half")
        line = [x for x in srv.log().splitlines() if "model half: loading" in x][-1]
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ", line), line
        assert logs(triton_management, log_verbose_level=2)["log_verbose_level"] == 1
        assert logs(triton)["log_verbose_level"] == 1
    finally:
        logs(triton_management, log_verbose_level=0, log_format="default", log_info=True)
    assert logs(triton) == TRITON_LOG_DEFAULTS
    x = np.ones((1, 4), np.float16)
    tensor = grpcclient.InferInput("x", [1, 4], "FP16")
    tensor.set_data_from_numpy(x)
    np.testing.assert_array_equal(triton.infer("half", [tensor]).as_numpy("y"), x * 2)


def test_log_settings_refused(triton, triton_management, grpc_server) -> None:
    code, message = status_of(triton.update_log_settings, {"log_info": False})
    assert code == "StatusCode.PERMISSION_DENIED" and grpc_server.management_url in message
    code, message = status_of(triton_management.update_log_settings, {"log_file": "/tmp/x"})
    assert code == "StatusCode.UNIMPLEMENTED" and "log file" in message
    code, message = status_of(triton_management.update_log_settings, {"log_format": "xml"})
    assert code == "StatusCode.INVALID_ARGUMENT" and "log_format" in message
    # A flag sent in another type's field (tritonclient cannot): nothing changes.
    request = service_pb2.LogSettingsRequest()
    request.settings["log_verbose_level"].uint32_param = 1
    request.settings["log_info"].string_param = "yes"
    with grpc.insecure_channel(grpc_server.management_url) as channel:
        with pytest.raises(grpc.RpcError) as err:
            service_pb2_grpc.GRPCInferenceServiceStub(channel).LogSettings(request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "log_info" in err.value.details()
    assert logs(triton) == TRITON_LOG_DEFAULTS
    srv = grpc_server.http
    assert srv.post("/v2/logging", {"log_info": False}).status == 403
    status, doc = srv.json("POST", "/v2/logging", {"log_verbose_level": "1"},
                           port=srv.management_port)
    assert status == 400 and "log_verbose_level" in doc["error"]
    status, doc = srv.json("POST", "/v2/logging", [1], port=srv.management_port)
    assert status == 400
    assert srv.get("/v2/logging").json() == TRITON_LOG_DEFAULTS


def test_trace_settings_server_and_model(triton, triton_management, grpc_server) -> None:
    srv = grpc_server.http
    assert trace(triton) == TRITON_TRACE_DEFAULTS
    assert trace(triton, "versioned") == TRITON_TRACE_DEFAULTS
    try:
        assert trace(triton_management, trace_rate="10")["trace_rate"] == ["10"]
        # A model's own setting overrides the server's; clearing it falls back.
        model = trace(triton_management, "versioned", trace_count="5", trace_level=["OFF"])
        assert model == {**TRITON_TRACE_DEFAULTS, "trace_rate": ["10"], "trace_count": ["5"]}
        assert srv.get("/v2/models/versioned/trace/setting").json()["trace_count"] == "5"
        assert srv.get("/v2/trace/setting").json() == {
            "trace_level": ["OFF"], "trace_rate": "10", "trace_count": "-1",
            "log_frequency": "0", "trace_file": "", "trace_mode": "triton"}
        assert trace(triton_management, "versioned", trace_count=None)["trace_count"] == ["-1"]
    finally:
        trace(triton_management, trace_rate=None)
    assert trace(triton) == TRITON_TRACE_DEFAULTS
    status, doc = srv.json("POST", "/v2/trace/setting", {"trace_rate": "7"},
                           port=srv.management_port)
    assert status == 200 and doc["trace_rate"] == "7" and trace(triton)["trace_rate"] == ["7"]
    srv.json("POST", "/v2/trace/setting", {"trace_rate": None}, port=srv.management_port)
    assert trace(triton) == TRITON_TRACE_DEFAULTS


def test_trace_settings_refused(triton, triton_management, grpc_server) -> None:
    code, message = status_of(trace, triton, trace_rate="1")
    assert code == "StatusCode.PERMISSION_DENIED" and grpc_server.management_url in message
    code, message = status_of(trace, triton_management, trace_level=["TIMESTAMPS"])
    assert code == "StatusCode.UNIMPLEMENTED" and "does not record traces" in message
    for bad in ({"trace_level": ["LOUD"]}, {"trace_rate": "fast"}, {"trace_count": "-2"},
                {"trace_rate": ["1", "2"]}, {"trace_colour": "red"}):
        code, message = status_of(trace, triton_management, **bad)
        assert code == "StatusCode.INVALID_ARGUMENT", (bad, message)
    code, message = status_of(trace, triton, "no_such_model")
    assert code == "StatusCode.NOT_FOUND"
    srv = grpc_server.http
    assert srv.get("/v2/models/no_such_model/trace/setting").status == 404
    assert srv.post("/v2/trace/setting", {"trace_rate": "1"}).status == 403
    assert trace(triton) == TRITON_TRACE_DEFAULTS


def test_cuda_shared_memory_answers_as_triton_without_gpus(triton, triton_management) -> None:
    for client in (triton, triton_management):
        code, message = status_of(client.register_cuda_shared_memory, "gpu0", b"\0" * 64, 0, 16)
        assert code == "StatusCode.INVALID_ARGUMENT"
        assert message == "failed to register CUDA shared memory region: 'gpu0', GPUs not supported"
        assert client.get_cuda_shared_memory_status(as_json=True) == {}
        code, message = status_of(client.get_cuda_shared_memory_status, "gpu0")
        assert code == "StatusCode.NOT_FOUND"
        assert message == "Unable to find cuda shared memory region: 'gpu0'"
        client.unregister_cuda_shared_memory("gpu0")
        client.unregister_cuda_shared_memory()


def test_settings_with_tritonclient_http(triton, grpc_server) -> None:
    httpclient = pytest.importorskip("tritonclient.http")
    srv = grpc_server.http
    inference = httpclient.InferenceServerClient(f"127.0.0.1:{srv.port}")
    management = httpclient.InferenceServerClient(f"127.0.0.1:{srv.management_port}")
    try:
        assert inference.get_log_settings() == TRITON_LOG_DEFAULTS
        assert inference.get_trace_settings(model_name="versioned")["trace_level"] == ["OFF"]
        with pytest.raises(InferenceServerException) as err:
            inference.update_trace_settings(settings={"trace_rate": "5"})
        assert "management port" in err.value.message()
        try:
            changed = management.update_trace_settings(model_name="versioned",
                                                       settings={"trace_rate": "5"})
            assert changed["trace_rate"] == "5"
            assert trace(triton, "versioned")["trace_rate"] == ["5"]  # one state for both
            assert management.update_log_settings({"log_format": "ISO8601"})[
                "log_format"] == "ISO8601"
            assert logs(triton)["log_format"] == "ISO8601"
        finally:
            management.update_trace_settings(model_name="versioned",
                                             settings={"trace_rate": None})
            management.update_log_settings({"log_format": "default"})
        assert trace(triton, "versioned") == TRITON_TRACE_DEFAULTS
        assert logs(triton) == TRITON_LOG_DEFAULTS
    finally:
        inference.close()
        management.close()
