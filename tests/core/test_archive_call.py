"""A request the data plane hands back whole (WholeRequest: v2 and TF Serving requests
for a TorchServe archive) starts on the archive's handler through
``DataPlane.archive_call``, which resolves the READY version first: an unknown or
unloaded model is a 404, one that failed to load a 503, raised before any handler call
starts (it was raised inside the started call before: the same answers)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from fastserve.core.dataplane import DataPlane
from fastserve.core.repository import ModelRepository
from fastserve.errors import FastServeError
from fastserve.frontends._ts_archive import archive_answer
from fastserve.http.error_map import status_for
from fastserve.http.messages import Request

CFG = 'max_batch_size = 4\n[[inputs]]\nname = "x"\nshape = [-1, 3]\n'


def test_archive_answer_for_an_unknown_unloaded_or_failed_model(
        tmp_path: Path, make_model: Any, fake_loader: Any, load_all: Any,
        run_async: Any) -> None:
    for name in ("gone", "broken"):
        make_model(tmp_path, name, CFG)
    loader = fake_loader(errors={("broken", "1"): RuntimeError("weights are corrupt")})
    plane = DataPlane(ModelRepository(tmp_path, loader))
    request = Request("POST", "/v2/models/m/infer", "", {}, b'{"inputs": []}')

    async def main() -> dict[str, FastServeError]:
        await load_all(plane.repository)
        await plane.repository.unload_model("gone")
        running = asyncio.all_tasks()
        errors = {}
        for model in ("nope", "gone", "broken"):
            with pytest.raises(FastServeError) as caught:
                await archive_answer(plane, request, model, None)
            errors[model] = caught.value
        assert asyncio.all_tasks() == running  # no handler call was started
        return errors

    try:
        errors = run_async(main)
    finally:
        plane.close()
    answers = {model: (status_for(exc), str(exc)) for model, exc in errors.items()}
    assert answers == {
        "nope": (404, "model 'nope' not found"),
        "gone": (404, "model 'gone' not found"),
        "broken": (503, "model 'broken' version 1 failed to load: "
                        "RuntimeError: weights are corrupt"),
    }
