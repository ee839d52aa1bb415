"""v2 image requests as rows (core.image_stage.ImagePolicy): a request of N images is N
rows in the batches and the statistics, split into chunks past max_batch_size."""

from __future__ import annotations

import asyncio
import io
import os
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from fastserve.core import background, image_stage
from fastserve.core.dataplane import DataPlane
from fastserve.core.image import preprocess_image
from fastserve.core.model_config import ImageConfig
from fastserve.core.repository import ModelRepository
from fastserve.errors import InvalidInputError
from fastserve.types import DataType, InferRequest, TensorSpec

from decoded_body import infer

IMAGE_CONFIG = """
handler = "image_classifier"
max_batch_size = 4
batch_delay_ms = 20
[image]
resize = 0
crop = 4
"""
IMAGE_SPEC = TensorSpec("x", DataType.FP32, (-1, 3, 4, 4))
CROP = ImageConfig(resize=0, crop=4)


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def _request(items: list[bytes]) -> InferRequest:
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    return InferRequest("img", None, {"x": arr})


def _serve(tmp_path: Path, make_model: Any, fake_backend: Any, run_async: Any,
           wait_until: Any, requests: list[InferRequest]) -> tuple[list[Any], Any, Any]:
    make_model(tmp_path, "img", IMAGE_CONFIG)
    backends: list[Any] = []

    def loader(folder: Any, config: Any, labels: Any) -> Any:
        backends.append(fake_backend(inputs=(IMAGE_SPEC,)))
        return backends[-1]

    repo = ModelRepository(tmp_path, loader)
    plane = DataPlane(repo)

    async def main() -> list[Any]:
        repo.scan()
        thread = repo.start_loading(asyncio.get_running_loop())
        await wait_until(lambda: not repo.loading)
        thread.join(5)
        try:
            return await asyncio.gather(*(infer(plane, r) for r in requests),
                                        return_exceptions=True)
        finally:
            plane.close()

    answers = run_async(main)
    [version] = repo.all_versions()
    return answers, backends[0], version.stats


def test_image_rows_count_images_in_batches_and_statistics(
        tmp_path: Path, make_model: Any, fake_backend: Any, run_async: Any,
        wait_until: Any) -> None:
    images = [_png(i) for i in range(3)]
    answers, backend, stats = _serve(tmp_path, make_model, fake_backend, run_async,
                                     wait_until, [_request(images[:2]), _request(images[2:])])
    want = np.stack([preprocess_image(b, CROP) for b in images]) * 2 + 1
    assert np.allclose(answers[0].outputs["y"], want[:2])
    assert np.allclose(answers[1].outputs["y"], want[2:])
    assert sum(backend.batch_sizes) == 3
    assert stats.inference_count == 3  # images, not requests (as Triton counts rows)
    assert sum(size * b.count for size, b in stats.batches.items()) == 3
    assert stats.success == 2


def test_image_request_past_max_batch_size_runs_in_chunks(
        tmp_path: Path, make_model: Any, fake_backend: Any, run_async: Any,
        wait_until: Any) -> None:
    images = [_png(i) for i in range(10)]
    bad = images[:6] + [b"not an image"] + images[7:]
    answers, backend, stats = _serve(tmp_path, make_model, fake_backend, run_async,
                                     wait_until, [_request(images), _request(bad)])
    want = np.stack([preprocess_image(b, CROP) for b in images]) * 2 + 1
    assert np.allclose(answers[0].outputs["y"], want)
    assert answers[0].outputs["y"].shape == (10, 3, 4, 4)
    assert max(backend.batch_sizes) <= 4  # max_batch_size images per model run
    error = answers[1]
    assert isinstance(error, InvalidInputError)
    # named by its place in the whole request, not in its chunk
    assert error.message.startswith("image 6: the body is not a JPEG or PNG image")
    assert stats.inference_count >= 10


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread priority is Linux's")
def test_image_work_lowers_only_its_own_threads_priority() -> None:
    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    seen: list[int] = []

    def image_thread() -> None:
        seen.append(niceness())
        image_stage.lower_priority()
        image_stage.lower_priority()  # once per thread, not once per job
        seen.append(niceness())

    main = niceness()
    thread = threading.Thread(target=image_thread)
    thread.start()
    thread.join()
    assert seen == [main, min(main + image_stage.IMAGE_NICENESS, 19)]
    assert niceness() == main  # the event loop's thread keeps its priority


def test_images_decode_on_the_background_thread_and_the_model_runs_on_the_instance_thread(
        tmp_path: Path, make_model: Any, fake_backend: Any, run_async: Any,
        wait_until: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    decoded_on: list[str] = []
    real = image_stage.preprocess_images

    def preprocess_images(items: Any, config: Any) -> np.ndarray:
        decoded_on.append(threading.current_thread().name)
        return real(items, config)

    monkeypatch.setattr(image_stage, "preprocess_images", preprocess_images)
    monkeypatch.setattr(background, "GRACE", 60.0)  # no take-over on a box busy elsewhere
    images = [_png(i) for i in range(3)]
    answers, backend, _ = _serve(tmp_path, make_model, fake_backend, run_async, wait_until,
                                 [_request(images[:2]), _request(images[2:])])
    want = np.stack([preprocess_image(b, CROP) for b in images]) * 2 + 1
    assert np.allclose(np.concatenate([a.outputs["y"] for a in answers]), want)
    assert decoded_on and all(n.endswith("-background") for n in decoded_on)
    assert backend.threads and not any(n.endswith("-background") for n in backend.threads)
    # The data plane closed (as at shutdown, which joins every thread): they end too.
    for thread in threading.enumerate():
        if thread.name in decoded_on:
            thread.join(30)
            assert not thread.is_alive()
