"""The data plane dispatches on the model's handler (issue 14): a front-end makes one call
with a body object; the body is asked for tensors only once the model is known and takes
them, and only what ``tensors`` refuses counts as the model's failure."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fastserve.core.dataplane import DataPlane
from fastserve.core.info import ModelInfo
from fastserve.core.repository import ModelRepository
from fastserve.errors import InvalidInputError, ModelNotFoundError, UnsupportedError
from fastserve.types import InferRequest

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
    return DataPlane(ModelRepository(tmp_path, fake_loader()))


def _run(plane: DataPlane, run_async: Any, wait_until: Any, *calls: Any) -> list[Any]:
    """Each call's answer (or the error it raised), in order, on one loaded repository."""
    async def main() -> list[Any]:
        plane.repository.scan()
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
