"""The data plane dispatches on the model's handler (issue 14): a front-end makes one call
with a body object; the body is asked for tensors only once the model is known and takes
them, and only what ``tensors`` refuses counts as the model's failure."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from fastserve.core import ts_store
from fastserve.core.dataplane import DataPlane
from fastserve.core.info import HandlerCall, ModelInfo
from fastserve.core.payloads import Payload
from fastserve.core.repository import ModelRepository
from fastserve.errors import (
    InvalidInputError,
    ModelNotFoundError,
    UnsupportedError,
    VersionNotFoundError,
)
from fastserve.types import HandlerReply, InferRequest

TENSOR = "max_batch_size = 4\nbatch_delay_ms = 0\n"
IMAGE = 'handler = "image_classifier"\nmax_batch_size = 4\n[image]\nresize = 0\ncrop = 4\n'
CUSTOM = 'handler = "handler.py"\nmax_batch_size = 4\n'


class Body:
    """Records what the data plane asked of it; refuses in ``check`` or ``tensors``."""

    def __init__(self, refuse_check: bool = False, refuse_tensors: bool = False,
                 instances: Any = None) -> None:
        self.asked: list[str] = []
        self.refuse_check, self.refuse_tensors = refuse_check, refuse_tensors
        self._instances = instances

    def check(self, info: ModelInfo) -> None:
        self.asked.append("check")
        if self.refuse_check:
            raise InvalidInputError("bad JSON")

    def instances(self) -> Any:
        self.asked.append("instances")
        return self._instances

    def tensors(self, info: ModelInfo) -> InferRequest:
        self.asked.append(f"tensors:{info.name}")
        if self.refuse_tensors:
            raise InvalidInputError("bad tensors")
        x = np.arange(6, dtype=np.float32).reshape(2, 3)
        return InferRequest(info.name, info.version, {"x": x})


@pytest.fixture
def plane(tmp_path: Path, make_model: Any, fake_loader: Any) -> DataPlane:
    for name, config in (("t", TENSOR), ("img", IMAGE), ("custom", CUSTOM)):
        make_model(tmp_path, name, config)
    plane = DataPlane(ModelRepository(tmp_path, fake_loader()))
    plane.repository.scan()
    return plane


def _run(plane: DataPlane, run_async: Any, wait_until: Any, *calls: Any) -> list[Any]:
    """Each call's answer (or the error it raised), in order, once the scanned repository
    has loaded."""
    async def main() -> list[Any]:
        thread = plane.repository.start_loading(asyncio.get_running_loop())
        await wait_until(lambda: not plane.repository.loading)
        thread.join(5)
        answers: list[Any] = []
        try:
            for call in calls:
                try:
                    answers.append(await call())
                except Exception as exc:  # noqa: BLE001 - the test looks at it
                    answers.append(exc)
            return answers
        finally:
            plane.close()

    return run_async(main)


def _fails(plane: DataPlane, name: str) -> int:
    return plane.repository.models[name].versions["1"].stats.fail


def test_dispatch_tensor_model_decodes_once_the_model_is_known(
        plane: DataPlane, run_async: Any, wait_until: Any) -> None:
    body = Body()
    [answer] = _run(plane, run_async, wait_until, lambda: plane.infer_body("t", None, body))
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert np.allclose(answer.outputs["y"], x * 2 + 1)
    assert body.asked == ["tensors:t"]


def test_dispatch_unknown_model_is_404_whatever_the_body(
        plane: DataPlane, run_async: Any, wait_until: Any) -> None:
    body = Body(refuse_check=True, refuse_tensors=True)
    errors = _run(plane, run_async, wait_until,
                  lambda: plane.infer_body("nope", None, body),
                  lambda: plane.predict_instances("nope", None, body),
                  lambda: plane.infer_tensors("nope", None, body, ":classify"))
    assert all(isinstance(error, ModelNotFoundError) for error in errors)
    assert body.asked == []


def test_dispatch_refusals_count_only_from_tensors(
        plane: DataPlane, run_async: Any, wait_until: Any) -> None:
    fails: list[int] = []

    async def counted(call: Any) -> Any:
        try:
            return await call()
        finally:
            fails.append(_fails(plane, "t"))

    tensors, check = _run(
        plane, run_async, wait_until,
        lambda: counted(lambda: plane.infer_body("t", None, Body(refuse_tensors=True))),
        lambda: counted(lambda: plane.predict_instances("t", None, Body(refuse_check=True))))
    assert isinstance(tensors, InvalidInputError) and tensors.message == "bad tensors"
    assert isinstance(check, InvalidInputError) and check.message == "bad JSON"
    assert fails == [1, 1]  # a check's 400 is not the model's failure


def test_dispatch_handler_py_is_501_on_the_tensor_api(
        plane: DataPlane, run_async: Any, wait_until: Any) -> None:
    body = Body()
    [error] = _run(plane, run_async, wait_until,
                   lambda: plane.infer_body("custom", None, body))
    assert isinstance(error, UnsupportedError)
    assert "has a custom handler.py" in error.message and body.asked == []


def test_dispatch_instances_go_to_other_handlers(
        plane: DataPlane, run_async: Any, wait_until: Any) -> None:
    body = Body(instances=[])
    [error] = _run(plane, run_async, wait_until,
                   lambda: plane.predict_instances("img", None, body))
    assert isinstance(error, InvalidInputError)
    assert error.message.startswith("model 'img' uses the image_classifier handler: send a "
                                    "non-empty 'instances' list")
    assert body.asked == ["check", "instances"]  # never decoded as tensors


def test_dispatch_tensor_only_api_refuses_other_handlers(
        plane: DataPlane, run_async: Any, wait_until: Any) -> None:
    body = Body()
    error, answer = _run(plane, run_async, wait_until,
                         lambda: plane.infer_tensors("img", None, body, ":regress"),
                         lambda: plane.infer_tensors("t", None, Body(), ":regress"))
    assert isinstance(error, UnsupportedError)
    assert error.message == ("model 'img' uses the image_classifier handler; :regress needs "
                             "a tensor model")
    assert body.asked == []
    assert answer.outputs["y"].shape == (2, 3)


# TorchServe's API: /predictions, /explanations and KServe v1 :explain are one call each


class TsBody:
    """A TorchServe-style body that records what the data plane asked of it: its
    instances (rows of ``x``, JSON), or the whole request for an archive's handler."""

    def __init__(self, *rows: list[float], refuse: bool = False) -> None:
        self.rows, self.refuse = rows, refuse
        self.asked: list[str] = []

    def payloads(self, info: ModelInfo) -> list[Payload]:
        self.asked.append(f"payloads:{info.name}")
        if self.refuse:
            raise InvalidInputError("the request has no body")
        return [Payload(orjson.dumps(row), "application/json") for row in self.rows]

    def whole(self) -> Payload:
        self.asked.append("whole")
        if self.refuse:
            raise InvalidInputError("malformed multipart/form-data body")
        return Payload(bytearray(b"raw bytes"), "application/octet-stream")


def _archive_backend(fake_backend: type[Any]) -> Any:
    """A TorchServe archive's handler (``runs_requests``): answers each whole request
    with its body reversed, streaming one part first."""

    class ArchiveBackend(fake_backend):  # type: ignore[misc, valid-type]
        runs_requests = True

        def run_batch(self, payloads: list[Payload], instance: int) -> list[HandlerReply]:
            for payload in payloads:
                payload.stream.push(HandlerReply(b"part", 200, "text/plain", {}))
            return [HandlerReply(bytes(p.data)[::-1], 201, "text/plain", {})
                    for p in payloads]

    return ArchiveBackend()


@pytest.fixture
def ts_plane(tmp_path: Path, make_model: Any, fake_backend: type[Any]) -> DataPlane:
    """Model "t" (tensor handler; its explanations are 3x) and "arch" (an archive's)."""
    make_model(tmp_path, "t", TENSOR)
    make_model(tmp_path, "arch", TENSOR)

    def load(folder: Any, config: Any, labels: dict[str, str]) -> Any:
        backend = (_archive_backend(fake_backend) if config.name == "arch"
                   else fake_backend())
        backend.explain = lambda inputs, method, target=None: {"x": inputs["x"] * 3}
        return backend

    plane = DataPlane(ModelRepository(tmp_path, load))
    plane.repository.scan()
    entry = plane.repository.models["arch"]
    entry.config = replace(entry.config, handler=ts_store.HANDLER)  # as the store makes it
    return plane


def test_ts_unknown_model_is_404_whatever_the_body(
        ts_plane: DataPlane, run_async: Any, wait_until: Any) -> None:
    plane = ts_plane
    body = TsBody(refuse=True)
    errors = _run(plane, run_async, wait_until,
                     lambda: plane.predictions("nope", None, body),
                     lambda: plane.explanations("nope", None, body),
                     lambda: plane.predictions("t", "7", body))
    assert [type(e) for e in errors] == [ModelNotFoundError, ModelNotFoundError,
                                         VersionNotFoundError]
    assert body.asked == []


def test_ts_predictions_run_each_instance_once_the_model_is_known(
        ts_plane: DataPlane, run_async: Any, wait_until: Any) -> None:
    plane = ts_plane
    body = TsBody([1, 2, 3], [4, 5, 6])
    [answers] = _run(plane, run_async, wait_until,
                        lambda: plane.predictions("t", None, body))
    assert body.asked == ["payloads:t"]
    for row, answer in zip(body.rows, answers, strict=True):
        x = np.array(row, dtype=np.float32)
        assert np.allclose(answer["y"], x * 2 + 1) and np.allclose(answer["s"], x.sum())


def test_ts_body_refusals_are_not_the_models_failures(
        ts_plane: DataPlane, run_async: Any, wait_until: Any) -> None:
    plane = ts_plane
    errors = _run(plane, run_async, wait_until,
                     lambda: plane.predictions("t", None, TsBody(refuse=True)),
                     lambda: plane.predictions("arch", None, TsBody(refuse=True)),
                     lambda: plane.explanations("t", None, TsBody(refuse=True)))
    assert [str(e) for e in errors] == ["the request has no body",
                                        "malformed multipart/form-data body",
                                        "the request has no body"]
    assert _fails(plane, "t") == 0 and _fails(plane, "arch") == 0


def test_ts_archive_takes_the_request_whole_and_streams(
        ts_plane: DataPlane, run_async: Any, wait_until: Any) -> None:
    plane = ts_plane
    body = TsBody([1, 2, 3])

    async def call() -> tuple[Any, Any, list[Any]]:
        started = await plane.predictions("arch", "1", body)
        assert isinstance(started, HandlerCall)
        first = await started.stream.first
        return started, first, await started.answer

    [(started, first, answer)] = _run(plane, run_async, wait_until, call)
    assert body.asked == ["whole"]  # never split into instances
    assert started.model == "arch" and started.timeout_ms == plane.config("arch").timeout_ms
    assert first.body == b"part"
    assert [(a.body, a.status) for a in answer] == [(b"setyb war", 201)]


def test_ts_explanations_of_every_instance_in_one_call(
        ts_plane: DataPlane, run_async: Any, wait_until: Any) -> None:
    plane = ts_plane
    body = TsBody([1, 2, 3], [0, 0, 2])
    [answers] = _run(plane, run_async, wait_until,
                        lambda: plane.explanations("t", "1", body))
    assert body.asked == ["payloads:t"]
    for row, answer in zip(body.rows, answers, strict=True):
        assert np.allclose(answer, np.array(row, dtype=np.float32) * 3)
