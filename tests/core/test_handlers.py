"""core/payloads.py and core/handlers.py, the scheduler's opaque items, DataPlane.predict and
explain, ExplainQueue."""

from __future__ import annotations

import asyncio
import base64
import io
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from fastserve.core.dataplane import DataPlane
from fastserve.core.explain import ExplainQueue
from fastserve.core.handlers import HandlerRunner, ImageClassifierHandler, TensorHandler, top_k
from fastserve.core.model_config import ImageConfig, ModelConfig
from fastserve.core.payloads import Payload, decode_body, kserve_payload, load_npy, parse_target
from fastserve.core.repository import ModelRepository
from fastserve.errors import (
    BackendError,
    InvalidInputError,
    QueueFullError,
    UnsupportedError,
)
from fastserve.frontends._ts_body import ExplainBody
from fastserve.types import DataType, TensorSpec

X3 = (TensorSpec("x", DataType.FP32, (-1, 3)),)


def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


# Body typing


@pytest.mark.parametrize("data,ctype,want", [
    (b"[1, 2]", "application/json", [1, 2]),
    (b'  {"a": 1}', "", {"a": 1}),
    (b"[1, 2]", "application/x-www-form-urlencoded", [1, 2]),
    (b'{"a": 1}', "application/vnd.thing+json", {"a": 1}),
    (b"\x89PNG....", "", b"\x89PNG...."),
    (b"[not json", "image/png", b"[not json"),
    (b"plain", "text/plain", b"plain"),
])
def test_handlers_decode_body_types(data: bytes, ctype: str, want: Any) -> None:
    assert decode_body(data, ctype) == want


def test_handlers_decode_body_npy_by_type_or_magic() -> None:
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    for ctype in ("application/x-npy", ""):
        got = decode_body(npy(arr), ctype)
        assert isinstance(got, np.ndarray) and np.array_equal(got, arr)


def test_handlers_decode_body_for_handler_py_keeps_torchserve_types() -> None:
    arr = np.arange(3, dtype=np.float32)
    assert decode_body(npy(arr), "", handler_py=True) == bytearray(npy(arr))
    assert decode_body(b"hi", "text/plain", handler_py=True) == "hi"
    assert isinstance(decode_body(b"\x00\x01", "", handler_py=True), bytearray)
    assert decode_body(b"[1]", "", handler_py=True) == [1]


@pytest.mark.parametrize("data,ctype", [(b"[1, 2,", "application/json"), (b"{oops", ""),
                                        (b"\x93NUMPYgarbage", ""),
                                        (b"x", "application/x-npy")])
def test_handlers_decode_body_bad_json_or_npy_is_400(data: bytes, ctype: str) -> None:
    with pytest.raises(InvalidInputError):
        decode_body(data, ctype)


def test_handlers_npy_fortran_order_and_length_checks() -> None:
    arr = np.asfortranarray(np.arange(12, dtype=np.int16).reshape(3, 4))
    assert np.array_equal(load_npy(npy(arr)), arr)
    with pytest.raises(InvalidInputError, match="bytes follow"):
        load_npy(npy(np.zeros((100, 100), np.float64))[:-8])
    with pytest.raises(InvalidInputError, match="objects"):
        load_npy(npy(np.array([{"a": 1}], dtype=object)))


# tensor handler


def config(**kw: Any) -> ModelConfig:
    return ModelConfig(name="m", **kw)


def test_handlers_tensor_forms_become_one_row() -> None:
    h = TensorHandler(config(max_batch_size=4), X3, ())
    want = np.array([[1, 2, 3]], np.float32)
    for value in ([1, 2, 3], {"data": [1, 2, 3]}, {"x": [1, 2, 3]},
                  np.array([1, 2, 3], np.float64), np.array([1, 2, 3], np.float32).tobytes()):
        got = h.preprocess(value)["x"]
        assert got.dtype == np.float32 and np.array_equal(got, want), value


def test_handlers_tensor_unbatched_takes_the_tensor_as_sent() -> None:
    h = TensorHandler(config(), X3, ())
    assert h.preprocess([[1, 2, 3], [4, 5, 6]])["x"].shape == (2, 3)


@pytest.mark.parametrize("value,needle", [
    (np.array([1, 2, 3], np.complex64), "cannot be converted"),
    (b"\x00" * 5, "does not fit"),
    ("text", "not text"),
    ({"y": [1]}, "name the model's inputs"),
])
def test_handlers_tensor_bad_values_are_400(value: Any, needle: str) -> None:
    h = TensorHandler(config(max_batch_size=4), X3, ())
    with pytest.raises(InvalidInputError, match=needle):
        h.preprocess(value)


def test_handlers_tensor_several_inputs_need_names() -> None:
    specs = (TensorSpec("a", DataType.FP32, (-1, 2)), TensorSpec("b", DataType.INT64, (-1, 2)))
    h = TensorHandler(config(max_batch_size=2), specs, ())
    got = h.preprocess({"a": [1.5, 2], "b": [3, 4]})
    assert got["b"].dtype == np.int64 and got["b"].shape == (1, 2)
    with pytest.raises(InvalidInputError, match="2 inputs"):
        h.preprocess([1, 2])
    with pytest.raises(InvalidInputError, match="missing input"):
        h.preprocess({"a": [1, 2]})


def test_handlers_tensor_answers() -> None:
    outputs = (TensorSpec("y", DataType.FP32, (-1, 2)), TensorSpec("h", DataType.BF16, (-1,)))
    h = TensorHandler(config(max_batch_size=2), X3, outputs)
    y = np.array([[1.5, 2.5]], np.float32)
    bits = (np.array([3.0], np.float32).view(np.uint32) >> 16).astype(np.uint16)
    answer = h.postprocess({"y": y, "h": bits})
    assert np.array_equal(answer["y"], [1.5, 2.5]) and answer["h"] == 3.0
    assert np.array_equal(h.postprocess({"y": y}), [1.5, 2.5])


# image_classifier handler


IMG = (TensorSpec("img", DataType.FP32, (-1, 1, 2, 2)),)
GREY = ImageConfig(resize=0, crop=0, mode="L", mean=(0.0,), std=(1.0,))


def test_handlers_image_bytes_base64_and_dict_forms() -> None:
    h = ImageClassifierHandler(config(max_batch_size=4, image=GREY), IMG, (), {})
    data = png(np.array([[0, 255], [51, 102]], np.uint8))
    want = np.array([[[[0, 1], [0.2, 0.4]]]], np.float32)
    b64 = base64.b64encode(data).decode()
    for value in (data, bytearray(data), b64, {"data": b64}, {"b64": b64},
                  [[[0, 1], [0.2, 0.4]]]):
        assert np.allclose(h.preprocess(value)["img"], want), type(value)
    with pytest.raises(InvalidInputError, match="base64"):
        h.preprocess("not base64!")


def test_handlers_image_top_k_is_torch_softmax_topk() -> None:
    logits = np.random.default_rng(3).normal(size=12).astype(np.float32)
    labels = {str(i): f"class{i}" for i in range(0, 12, 2)}  # odd ones unnamed
    got = top_k(logits, labels)
    probs = torch.softmax(torch.from_numpy(logits).double(), 0)
    values, indices = torch.topk(probs, 5)
    assert list(got) == [labels.get(str(int(i)), str(int(i))) for i in indices]
    assert np.allclose(list(got.values()), values.numpy())


def test_handlers_image_top_k_fewer_classes_and_ties() -> None:
    got = top_k(np.array([1.0, 1.0, 0.0], np.float32), {})
    assert list(got) == ["0", "1", "2"]
    assert np.isclose(sum(got.values()), 1.0)


def test_handlers_image_postprocess_uses_the_first_output() -> None:
    h = ImageClassifierHandler(config(max_batch_size=4, image=GREY), IMG, (),
                               {"1": "one"})
    answer = h.postprocess({"logits": np.array([[0.0, 5.0]], np.float32),
                            "other": np.zeros((1, 3), np.float32)})
    assert list(answer) == ["one", "0"]


def test_handlers_image_model_with_two_inputs_is_unsupported() -> None:
    with pytest.raises(UnsupportedError, match="one input"):
        ImageClassifierHandler(config(image=GREY), IMG + X3, (), {})


# KServe v1 instances and targets


def test_handlers_kserve_payload_forms() -> None:
    raw = b"\x89PNG\r\n"
    b64 = base64.b64encode(raw).decode()
    p = kserve_payload({"b64": b64}, decode_data=False)
    assert (p.data, p.content_type, p.name) == (raw, "", "body")
    p = kserve_payload({"data": b64, "target": 2}, decode_data=True)
    assert (p.data, p.name, p.extra) == (raw, "data", {"target": 2})
    p = kserve_payload({"data": [1, 2]}, decode_data=True)
    assert (p.data, p.content_type) == ([1, 2], None)
    p = kserve_payload({"data": "text"}, decode_data=False)
    assert p.data == "text"
    p = kserve_payload({"a": [1], "b": [2]}, decode_data=True)
    assert p.data == {"a": [1], "b": [2]}
    with pytest.raises(InvalidInputError, match="base64"):
        kserve_payload({"b64": "***"}, decode_data=True)


@pytest.mark.parametrize("value,want", [(None, None), (3, 3), ("4", 4), ([1, 2], (1, 2)),
                                        ("[0, 1]", (0, 1))])
def test_handlers_parse_target(value: Any, want: Any) -> None:
    assert parse_target(value) == want


@pytest.mark.parametrize("value", ["x", 1.5, True, [], ["a"]])
def test_handlers_parse_target_refuses(value: Any) -> None:
    with pytest.raises(InvalidInputError):
        parse_target(value)


# HandlerRunner on a fake backend


def test_handlers_runner_batches_and_isolates_bad_requests(fake_backend: Any) -> None:
    backend = fake_backend()
    runner = HandlerRunner(TensorHandler(config(max_batch_size=8), backend.inputs,
                                         backend.outputs), backend, config(max_batch_size=8))
    payloads = [Payload(b"[1, 2, 3]", "application/json"), Payload(b"[1, 2", "application/json"),
                Payload([4, 5, 6]), Payload({"x": [[7, 8, 9]]})]
    results = runner.run_batch(payloads, 0)
    assert backend.batch_sizes == [2]  # the good rows ran together; the 3-D one was refused
    assert np.array_equal(results[0]["y"], [3, 5, 7]) and results[0]["s"] == 6
    assert np.array_equal(results[2]["y"], [9, 11, 13])
    assert isinstance(results[1], InvalidInputError)
    assert isinstance(results[3], InvalidInputError)


def test_handlers_runner_groups_shapes_of_an_unchecked_model(fake_backend: Any) -> None:
    backend = fake_backend()
    backend.declared = False
    cfg = config(max_batch_size=8)
    runner = HandlerRunner(TensorHandler(cfg, backend.inputs, backend.outputs, False),
                           backend, cfg)
    results = runner.run_batch([Payload([1, 2]), Payload([1, 2, 3]), Payload([3, 4])], 0)
    assert sorted(backend.batch_sizes) == [1, 2]
    assert results[1]["s"] == 6 and results[2]["s"] == 7


def test_handlers_runner_checks_rows_of_outputs(fake_backend: Any) -> None:
    backend = fake_backend()
    backend.infer = lambda inputs, instance: {"y": np.zeros((5, 3), np.float32)}
    cfg = config(max_batch_size=8)
    runner = HandlerRunner(TensorHandler(cfg, backend.inputs, backend.outputs), backend, cfg)
    with pytest.raises(BackendError, match="one row per input row"):
        runner.run_batch([Payload([1, 2, 3]), Payload([1, 2, 3])], 0)
    with pytest.raises(BackendError, match="for a batch of 1; batched models return one row"):
        runner.run_batch([Payload([1, 2, 3])], 0)  # a lone payload is checked alike


def test_handlers_runner_lone_payload(fake_backend: Any) -> None:
    backend = fake_backend()
    cfg = config(max_batch_size=8)
    runner = HandlerRunner(TensorHandler(cfg, backend.inputs, backend.outputs), backend, cfg)
    [answer] = runner.run_batch([Payload(b"[1, 2, 3]", "application/json")], 0)
    assert np.array_equal(answer["y"], [3, 5, 7]) and answer["s"] == 6
    [refused] = runner.run_batch([Payload(b"[1, 2", "application/json")], 0)
    assert isinstance(refused, InvalidInputError)
    assert backend.batch_sizes == [1]


# The scheduler's opaque items and DataPlane.predict


def test_handlers_opaque_items_batch_and_resolve_in_order(
        fake_backend: Any, run_async: Callable[..., Any], new_batcher: Callable[..., Any]) -> None:
    seen: list[list[Any]] = []

    def runner(payloads: list[Any], instance: int) -> list[Any]:
        seen.append(list(payloads))
        return [p * 10 if p != 3 else ValueError("three") for p in payloads]

    async def main() -> Any:
        batcher = new_batcher(fake_backend(), max_batch_size=4, batch_delay_ms=50)
        futures = [batcher.submit_opaque(i, runner) for i in range(6)]
        return await asyncio.gather(*futures, return_exceptions=True)

    results = run_async(main)
    assert seen == [[0, 1, 2, 3], [4, 5]]
    assert results[:3] == [0, 10, 20] and results[4:] == [40, 50]
    assert isinstance(results[3], ValueError)


def test_handlers_opaque_wrong_answer_count_fails_the_whole_batch(
        fake_backend: Any, run_async: Callable[..., Any], new_batcher: Callable[..., Any]) -> None:
    calls: list[int] = []

    def runner(payloads: list[Any], instance: int) -> list[Any]:
        calls.append(len(payloads))
        return payloads[:1]

    async def main() -> Any:
        batcher = new_batcher(fake_backend(), max_batch_size=4, batch_delay_ms=50)
        futures = [batcher.submit_opaque(i, runner) for i in range(3)]
        return await asyncio.gather(*futures, return_exceptions=True)

    results = run_async(main)
    assert calls == [3]  # not retried one at a time
    assert all(isinstance(r, BackendError) and "1 answers for a batch of 3" in str(r)
               for r in results)


def _plane(root: Path, make_model: Any, fake_loader: Any, cfg: str) -> tuple[DataPlane, Any]:
    make_model(root, "m", cfg)
    loader = fake_loader()
    return DataPlane(ModelRepository(root, loader)), loader


CFG = 'max_batch_size = 4\nbatch_delay_ms = 20\n[[inputs]]\nname = "x"\nshape = [-1, 3]\n'


def test_handlers_dataplane_predict_batches_requests(tmp_path: Path, make_model: Any,
                                                     fake_loader: Any, load_all: Any,
                                                     run_async: Callable[..., Any]) -> None:
    plane, loader = _plane(tmp_path, make_model, fake_loader, CFG)

    async def main() -> Any:
        await load_all(plane.repository)
        try:
            calls = [plane.predict("m", None, [Payload(f"[{i}, 0, 0]".encode(), "")])
                     for i in range(4)]
            return await asyncio.gather(*calls)
        finally:
            plane.close()

    answers = run_async(main)
    assert [a[0]["s"] for a in answers] == [0, 1, 2, 3]
    assert loader.backends[("m", "1")].batch_sizes == [4]


def test_handlers_dataplane_predict_one_bad_payload_fails_the_call(
        tmp_path: Path, make_model: Any, fake_loader: Any, load_all: Any,
        run_async: Callable[..., Any]) -> None:
    plane, _ = _plane(tmp_path, make_model, fake_loader, CFG)

    async def main() -> Any:
        await load_all(plane.repository)
        try:
            good = await plane.predict_handler("m", None, [[1, 2, 3], {"data": [4, 5, 6]}])
            with pytest.raises(InvalidInputError):
                await plane.predict("m", None, [Payload([1, 2, 3]), Payload(b"{", "")])
            return good
        finally:
            plane.close()

    good = run_async(main)
    assert [g["s"] for g in good] == [6, 15]


def test_handlers_dataplane_explain_runs_outside_the_batcher(
        tmp_path: Path, make_model: Any, fake_loader: Any, load_all: Any,
        run_async: Callable[..., Any]) -> None:
    plane, loader = _plane(tmp_path, make_model, fake_loader, CFG)
    asked: list[Any] = []

    def explain(inputs: dict[str, Any], method: str, target: Any) -> dict[str, Any]:
        asked.append((inputs["x"].tolist(), method, target, threading.current_thread().name))
        return {"x": inputs["x"] * 0.5}

    async def main() -> Any:
        await load_all(plane.repository)
        loader.backends[("m", "1")].explain = explain
        try:
            [one] = await plane.explanations("m", None, _Body(
                Payload(b'{"data": [2, 4, 6], "target": 1}', "application/json")))
            many = await plane.explanations("m", "1", ExplainBody(
                b'{"instances": [[2, 2, 2], {"data": [0, 0, 2]}]}'))
            return one, many
        finally:
            plane.close()

    one, many = run_async(main)
    assert np.array_equal(one, [1, 2, 3])
    assert [m.tolist() for m in many] == [[1, 1, 1], [0, 0, 1]]
    assert asked[0][:3] == ([[2, 4, 6]], "integrated_gradients", 1)
    assert all(a[3].startswith("fastserve-explain") for a in asked)
    assert loader.backends[("m", "1")].batch_sizes == []


class _Body:
    """A request body of given payloads (what a front-end's body object hands the plane)."""

    def __init__(self, *payloads: Payload) -> None:
        self._payloads = list(payloads)

    def payloads(self, info: Any) -> list[Payload]:
        return self._payloads


# ExplainQueue


def test_handlers_explain_queue_limits_concurrency(run_async: Callable[..., Any]) -> None:
    queue = ExplainQueue(concurrency=2, max_waiting=10)
    active, peak = [0], [0]
    lock = threading.Lock()

    def work(i: int) -> int:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.02)
        with lock:
            active[0] -= 1
        return i * i

    async def main() -> Any:
        try:
            return await asyncio.gather(*(queue.run(work, i) for i in range(8)))
        finally:
            queue.close()

    assert run_async(main) == [i * i for i in range(8)]
    assert peak[0] == 2


def test_handlers_explain_queue_full_and_errors(run_async: Callable[..., Any]) -> None:
    queue = ExplainQueue(concurrency=1, max_waiting=1)
    gate = threading.Event()

    def blocked() -> str:
        assert gate.wait(10)
        return "done"

    def broken() -> None:
        raise RuntimeError("boom")

    async def main() -> Any:
        try:
            first = asyncio.ensure_future(queue.run(blocked))
            second = asyncio.ensure_future(queue.run(blocked))
            await asyncio.sleep(0)
            with pytest.raises(QueueFullError):
                await queue.run(blocked)
            gate.set()
            assert await first == "done" and await second == "done"
            with pytest.raises(BackendError, match="RuntimeError: boom"):
                await queue.run(broken)
        finally:
            queue.close()

    run_async(main)


def test_handlers_opaque_batch_size_1_queue_goes_in_one_hop_one_request_a_call(
        fake_backend: Any, run_async: Callable[..., Any], new_batcher: Callable[..., Any]) -> None:
    # TorchServe's batchSize 1: each handler call gets a list of one, but the requests
    # queued behind a running one travel to the idle instance together (one job, one hop).
    gate = threading.Event()
    calls: list[tuple[list[Any], Any]] = []  # (payloads, the job carrying them)
    batcher: Any = None

    def runner(payloads: list[Any], instance: int) -> list[Any]:
        [job] = batcher._running.values()  # one instance: the job it runs now
        calls.append((list(payloads), job))  # kept: no id reuse
        if payloads == [0]:
            gate.wait(10)
        if payloads == [2]:
            raise RuntimeError("two")
        return [p * 10 if p != 3 else ValueError("three") for p in payloads]

    async def main() -> Any:
        nonlocal batcher
        batcher = new_batcher(fake_backend(), max_batch_size=1, batch_delay_ms=50)
        first = batcher.submit_opaque(0, runner)
        while not calls:
            await asyncio.sleep(0.001)
        rest = [batcher.submit_opaque(i, runner) for i in range(1, 6)]
        await asyncio.sleep(0.01)  # dispatched? no: the only instance is busy
        assert batcher.queue_depth == 5
        gate.set()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    results = run_async(main)
    assert [payloads for payloads, _ in calls] == [[0], [1], [2], [3], [4], [5]]
    assert len({id(job) for _, job in calls[1:]}) == 1  # the five queued: one job
    assert results[0] == 0 and results[1] == 10 and results[4:] == [40, 50]
    assert isinstance(results[2], BackendError) and "two" in str(results[2])
    assert isinstance(results[3], ValueError)
    assert batcher.stats.success == 4 and batcher.stats.fail == 2
