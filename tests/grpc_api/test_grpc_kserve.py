"""KServe v2 / Triton GRPCInferenceService with the real tritonclient.grpc (sync, asyncio
and streaming): every call, outputs compared with the model run locally with torch."""

from __future__ import annotations

import asyncio
import queue
from typing import Any

import numpy as np
import pytest
import torch

from models_factory import ALLTYPES, ALLTYPES_SHAPE

grpcclient = pytest.importorskip("tritonclient.grpc")
grpc_aio = pytest.importorskip("tritonclient.grpc.aio")
ml_dtypes = pytest.importorskip("ml_dtypes")
from tritonclient.utils import InferenceServerException  # noqa: E402

pytestmark = pytest.mark.slow

NP = {"BOOL": np.bool_, "UINT8": np.uint8, "INT8": np.int8, "INT16": np.int16,
      "INT32": np.int32, "INT64": np.int64, "FP16": np.float16, "BF16": ml_dtypes.bfloat16,
      "FP32": np.float32, "FP64": np.float64}


def infer_input(name: str, arr: np.ndarray, datatype: str) -> Any:
    tensor = grpcclient.InferInput(name, list(arr.shape), datatype)
    tensor.set_data_from_numpy(arr)
    return tensor


def local(model: Any, *arrays: np.ndarray) -> list[np.ndarray]:
    with torch.inference_mode():
        out = model(*(torch.from_numpy(a) for a in arrays))
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o.numpy() for o in outs]


def test_health_and_metadata(triton) -> None:
    assert triton.is_server_live() and triton.is_server_ready()
    assert triton.is_model_ready("digits") and triton.is_model_ready("versioned", "2")
    meta = triton.get_server_metadata()
    assert meta.name == "fastserve"
    assert {"binary_tensor_data", "classification", "system_shared_memory",
            "model_configuration", "statistics"} <= set(meta.extensions)
    model = triton.get_model_metadata("two_io")
    assert model.name == "two_io" and list(model.versions) == ["1"]
    assert [(t.name, t.datatype, list(t.shape)) for t in model.inputs] == [
        ("a", "FP32", [-1, 4]), ("b", "INT64", [-1, 4])]
    config = triton.get_model_config("two_io", as_json=True)["config"]
    assert config["max_batch_size"] == 8
    assert [(i["name"], i["data_type"], i["dims"]) for i in config["input"]] == [
        ("a", "TYPE_FP32", ["4"]), ("b", "TYPE_INT64", ["4"])]


def test_unknown_model_and_version_are_not_found(triton) -> None:
    for call in (lambda: triton.get_model_metadata("nope"),
                 lambda: triton.is_model_ready("versioned", "9"),
                 lambda: triton.get_model_config("nope"),
                 lambda: triton.infer("nope", [infer_input("x", np.zeros((1, 3), np.float32),
                                                           "FP32")])):
        with pytest.raises(InferenceServerException) as err:
            call()
        assert err.value.status() == "StatusCode.NOT_FOUND"


def test_infer_matches_local_torch(triton, local_model) -> None:
    x = np.random.default_rng(0).random((3, 64), dtype=np.float32)
    result = triton.infer("digits", [infer_input("input__0", x, "FP32")], request_id="r-1")
    assert result.get_response().id == "r-1"
    np.testing.assert_allclose(result.as_numpy("output__0"),
                               local(local_model("digits"), x)[0], rtol=1e-5, atol=1e-5)


def test_requested_outputs_and_versions(triton, local_model) -> None:
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    b = np.arange(8, dtype=np.int64).reshape(2, 4)
    result = triton.infer("two_io", [infer_input("a", a, "FP32"), infer_input("b", b, "INT64")],
                          outputs=[grpcclient.InferRequestedOutput("twice")])
    assert [o.name for o in result.get_response().outputs] == ["twice"]
    np.testing.assert_array_equal(result.as_numpy("twice"), local(local_model("two_io"), a, b)[1])
    x = np.ones((1, 3), np.float32)
    for version in ("1", "2"):
        y = triton.infer("versioned", [infer_input("x", x, "FP32")], model_version=version)
        np.testing.assert_allclose(y.as_numpy("y"), local(local_model("versioned", version), x)[0])


def test_every_datatype_raw(triton, local_model) -> None:
    rng = np.random.default_rng(1)
    arrays = []
    for datatype in ALLTYPES:
        if datatype == "BOOL":
            arr = rng.integers(0, 2, ALLTYPES_SHAPE).astype(bool)
        elif datatype in ("FP16", "BF16", "FP32", "FP64"):
            arr = rng.random(ALLTYPES_SHAPE).astype(NP[datatype])
        else:
            arr = rng.integers(0, 100, ALLTYPES_SHAPE).astype(NP[datatype])
        arrays.append(arr)
    inputs = [infer_input(f"input__{i}", a, t)
              for i, (a, t) in enumerate(zip(arrays, ALLTYPES, strict=True))]
    result = triton.infer("alltypes", inputs)
    model = local_model("alltypes")
    with torch.inference_mode():
        expected = model(*(torch.from_numpy(a.astype(np.float32)).to(torch.bfloat16)
                           if t == "BF16" else torch.from_numpy(a)
                           for a, t in zip(arrays, ALLTYPES, strict=True)))
    for i, (datatype, want) in enumerate(zip(ALLTYPES, expected, strict=True)):
        got = result.as_numpy(f"output__{i}")
        if datatype == "BF16":
            got, want = got.astype(np.float32), want.float()
        np.testing.assert_allclose(got, want.numpy(), err_msg=datatype)


def test_bytes_tensor(triton, local_model) -> None:
    text = np.array([b"grpc", b"", "\u00e9t\u00e9".encode()], dtype=np.object_)
    result = triton.infer("strlen", [infer_input("text", text, "BYTES")])
    lengths, upper = local_model("strlen")([t.decode() for t in text])
    np.testing.assert_array_equal(result.as_numpy("length"), lengths.numpy())
    assert list(result.as_numpy("upper")) == [s.encode() for s in upper]


def test_classification(triton, local_model) -> None:
    x = np.random.default_rng(2).random((2, 64), dtype=np.float32)
    out = grpcclient.InferRequestedOutput("output__0", class_count=3)
    result = triton.infer("digits", [infer_input("input__0", x, "FP32")], outputs=[out])
    top = result.as_numpy("output__0")
    logits = local(local_model("digits"), x)[0]
    assert top.shape == (2, 3)
    for row, answers in zip(logits, top, strict=True):
        assert [int(a.split(b":")[1]) for a in answers] == list(np.argsort(-row)[:3])


def test_statistics_and_index(triton) -> None:
    x = np.zeros((1, 3), np.float32)
    before = triton.get_inference_statistics("versioned", "1", as_json=True)
    triton.infer("versioned", [infer_input("x", x, "FP32")], model_version="1")
    after = triton.get_inference_statistics("versioned", "1", as_json=True)
    count = lambda doc: int(doc["model_stats"][0]["inference_stats"]["success"].get("count", 0))  # noqa: E731
    assert count(after) == count(before) + 1
    every = triton.get_inference_statistics(as_json=True)["model_stats"]
    assert {"digits", "versioned"} <= {s["name"] for s in every}
    index = triton.get_model_repository_index(as_json=True)["models"]
    assert {"name": "digits", "version": "1", "state": "READY"} in index


def test_load_unload_only_on_management_port(triton, triton_management, grpc_server) -> None:
    with pytest.raises(InferenceServerException) as err:
        triton.unload_model("versioned")
    assert err.value.status() == "StatusCode.PERMISSION_DENIED"
    assert grpc_server.management_url in err.value.message()
    with pytest.raises(InferenceServerException) as err:
        triton.load_model("versioned")
    assert err.value.status() == "StatusCode.PERMISSION_DENIED"
    assert triton.is_model_ready("versioned")
    triton_management.unload_model("half")
    with pytest.raises(InferenceServerException) as err:
        triton.is_model_ready("half")
    assert err.value.status() == "StatusCode.NOT_FOUND"
    triton_management.load_model("half")
    assert triton.is_model_ready("half")
    x = np.ones((1, 4), np.float16)
    np.testing.assert_array_equal(
        triton.infer("half", [infer_input("x", x, "FP16")]).as_numpy("y"), x * 2)


def test_system_shared_memory(triton, local_model) -> None:
    shm = pytest.importorskip("tritonclient.utils.shared_memory")
    x = np.random.default_rng(3).random((2, 64), dtype=np.float32)
    in_handle = shm.create_shared_memory_region("g_in", "/fastserve_grpc_in", x.nbytes)
    out_handle = shm.create_shared_memory_region("g_out", "/fastserve_grpc_out", 2 * 10 * 4)
    try:
        shm.set_shared_memory_region(in_handle, [x])
        triton.register_system_shared_memory("g_in", "/fastserve_grpc_in", x.nbytes)
        triton.register_system_shared_memory("g_out", "/fastserve_grpc_out", 80)
        status = triton.get_system_shared_memory_status(as_json=True)["regions"]
        assert status["g_in"]["byte_size"] == str(x.nbytes)
        tensor = grpcclient.InferInput("input__0", [2, 64], "FP32")
        tensor.set_shared_memory("g_in", x.nbytes)
        out = grpcclient.InferRequestedOutput("output__0")
        out.set_shared_memory("g_out", 80)
        triton.infer("digits", [tensor], outputs=[out])
        got = shm.get_contents_as_numpy(out_handle, np.float32, [2, 10])
        np.testing.assert_allclose(got, local(local_model("digits"), x)[0], rtol=1e-5,
                                   atol=1e-5)
    finally:
        triton.unregister_system_shared_memory()
        shm.destroy_shared_memory_region(in_handle)
        shm.destroy_shared_memory_region(out_handle)
    assert triton.get_system_shared_memory_status(as_json=True).get("regions", {}) == {}


def test_streaming_answers_each_request_and_survives_errors(triton, local_model) -> None:
    answers: queue.Queue[Any] = queue.Queue()
    triton.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        xs = [np.full((1, 64), i / 10, np.float32) for i in range(4)]
        for i, x in enumerate(xs):
            triton.async_stream_infer("digits", [infer_input("input__0", x, "FP32")],
                                      request_id=str(i))
        bad = infer_input("input__0", np.zeros((1, 3), np.float32), "FP32")
        triton.async_stream_infer("digits", [bad], request_id="bad")
        triton.async_stream_infer("digits", [infer_input("input__0", xs[0], "FP32")],
                                  request_id="after")
        got = [answers.get(timeout=30) for _ in range(6)]
    finally:
        triton.stop_stream()
    errors = [e for _, e in got if e is not None]
    assert len(errors) == 1 and "shape" in errors[0].message()
    by_id = {r.get_response().id: r for r, e in got if e is None}
    assert set(by_id) == {"0", "1", "2", "3", "after"}
    model = local_model("digits")
    for i, x in enumerate(xs):
        np.testing.assert_allclose(by_id[str(i)].as_numpy("output__0"), local(model, x)[0],
                                   rtol=1e-5, atol=1e-5)


def test_asyncio_client(grpc_server, local_model) -> None:
    async def main() -> tuple[bool, list[np.ndarray]]:
        client = grpc_aio.InferenceServerClient(grpc_server.url)
        try:
            ready = await client.is_model_ready("digits")
            xs = [np.full((1, 64), i / 7, np.float32) for i in range(8)]
            results = await asyncio.gather(*(
                client.infer("digits", [infer_input("input__0", x, "FP32")]) for x in xs))
            return ready, [r.as_numpy("output__0") for r in results], xs
        finally:
            await client.close()

    ready, outputs, xs = asyncio.run(main())
    assert ready
    model = local_model("digits")
    for got, x in zip(outputs, xs, strict=True):
        np.testing.assert_allclose(got, local(model, x)[0], rtol=1e-5, atol=1e-5)


def test_large_raw_inputs_unary_and_stream(triton, local_model) -> None:
    # Past 64 KB the request's tensors are views of the received bytes (raw_inputs.py):
    # a large input beside a small one, each in its own raw_input_contents entry.
    x = np.random.default_rng(11).random(50_000, dtype=np.float32)  # 200 KB
    n = np.array([1], np.int64)
    want = local(local_model("slow"), x, n)[0]
    inputs = [infer_input("x", x, "FP32"), infer_input("n", n, "INT64")]
    np.testing.assert_allclose(triton.infer("slow", inputs).as_numpy("y"), want, rtol=1e-6)
    answers: queue.Queue[Any] = queue.Queue()
    triton.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        triton.async_stream_infer("slow", inputs, request_id="big")
        result, error = answers.get(timeout=30)
    finally:
        triton.stop_stream()
    assert error is None
    np.testing.assert_allclose(result.as_numpy("y"), want, rtol=1e-6)
    wrong = [infer_input("x", x, "FP32"), infer_input("n", np.array([1, 2], np.int64), "INT64")]
    with pytest.raises(InferenceServerException) as err:
        triton.infer("slow", wrong)
    assert err.value.status() == "StatusCode.INVALID_ARGUMENT"
