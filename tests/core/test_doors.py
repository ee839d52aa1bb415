"""The two doors: DataPlane hands out plain values and runs v2 image requests' preprocessing
on the instance thread; ModelControl serves management and metrics (core/control.py)."""

from __future__ import annotations

import asyncio
import io
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from fastserve.core import image_stage
from fastserve.core.control import ModelControl
from fastserve.core.dataplane import DataPlane
from fastserve.core.image import preprocess_image
from fastserve.core.info import ModelInfo, VersionInfo
from fastserve.core.model_config import ImageConfig
from fastserve.core.repository import ModelRepository
from fastserve.errors import InvalidInputError, ModelNotFoundError, VersionNotFoundError
from fastserve.types import DataType, InferRequest, TensorSpec

from decoded_body import infer

CONFIG = """
max_batch_size = 4
batch_delay_ms = 5
[[inputs]]
name = "x"
shape = [-1, 3]
[[outputs]]
name = "y"
shape = [-1, 3]
"""
IMAGE_CONFIG = """
handler = "image_classifier"
max_batch_size = 8
batch_delay_ms = 20
[image]
resize = 0
crop = 4
"""
IMAGE_SPEC = TensorSpec("x", DataType.FP32, (-1, 3, 4, 4))


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def test_doors_dataplane_hands_out_plain_values(tmp_path: Path, make_model: Any,
                                                fake_loader: Any, run_async: Any,
                                                load_all: Any) -> None:
    make_model(tmp_path, "good", CONFIG, versions=("1", "2"))
    make_model(tmp_path, "failing")
    repo = ModelRepository(tmp_path, fake_loader(errors={("failing", "1"): RuntimeError("x")}))
    plane = DataPlane(repo)

    async def main() -> None:
        await load_all(repo)
        try:
            info = plane.info("good", None)
            assert isinstance(info, ModelInfo) and info.ready
            assert (info.name, info.version, info.handler, info.declared) == \
                ("good", "2", "tensor", True)
            assert info.versions == ("1", "2") and info.batched
            assert [s.name for s in info.inputs] == ["x"]
            assert not hasattr(info, "backend") and not hasattr(info, "batcher")
            assert plane.info("good", None) is info  # made once per loaded version
            assert plane.info("good", "1").version == "1"
            failed = plane.info("failing")
            assert failed.state == "FAILED" and "x" in failed.error and not failed.ready
            assert plane.versions("good") == [
                VersionInfo("good", "1", "READY", "", False, repo.version("good", "1").loaded_at),
                VersionInfo("good", "2", "READY", "", True, repo.version("good", "2").loaded_at)]
            with pytest.raises(VersionNotFoundError):
                plane.version("good", "9")
            with pytest.raises(ModelNotFoundError):
                plane.info("nope", None)
        finally:
            plane.close()

    run_async(main)


def test_doors_v2_images_are_preprocessed_on_the_instance_thread(
        tmp_path: Path, make_model: Any, fake_backend: Any, run_async: Any,
        load_all: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    make_model(tmp_path, "img", IMAGE_CONFIG)
    backends: list[Any] = []

    def loader(folder: Any, config: Any, labels: Any) -> Any:
        backends.append(fake_backend(inputs=(IMAGE_SPEC,)))
        return backends[-1]

    threads: list[str] = []
    real = image_stage.preprocess_images

    def recorded(items: Any, config: Any) -> Any:
        threads.append(threading.current_thread().name)
        return real(items, config)

    monkeypatch.setattr(image_stage, "preprocess_images", recorded)
    repo = ModelRepository(tmp_path, loader)
    plane = DataPlane(repo)
    images = [_png(i) for i in range(3)]

    def request(*items: bytes) -> InferRequest:
        arr = np.empty(len(items), dtype=object)
        arr[:] = list(items)
        return InferRequest("img", None, {"x": arr})

    async def main() -> list[Any]:
        await load_all(repo)
        try:
            return await asyncio.gather(infer(plane, request(images[0], images[1])),
                                        infer(plane, request(b"not an image")),
                                        infer(plane, request(images[2])),
                                        return_exceptions=True)
        finally:
            plane.close()

    two, bad, one = run_async(main)
    cfg = ImageConfig(resize=0, crop=4)
    want = np.stack([preprocess_image(b, cfg) for b in images]) * 2 + 1
    assert np.allclose(two.outputs["y"], want[:2]) and np.allclose(one.outputs["y"], want[2:])
    assert isinstance(bad, InvalidInputError) and "image 0" in bad.message
    assert threads and all(name.startswith("fastserve-img-") for name in threads)
    assert sum(backends[0].batch_sizes) == 3  # the good ones ran, the bad one alone failed


def test_doors_model_control_reads_and_changes(tmp_path: Path, make_model: Any,
                                               fake_loader: Any, run_async: Any,
                                               load_all: Any) -> None:
    make_model(tmp_path, "good", CONFIG, versions=("1", "2"))
    make_model(tmp_path, "later", CONFIG)
    repo = ModelRepository(tmp_path, fake_loader())
    control = ModelControl(repo)
    changes: list[tuple[str, str, str, bool]] = []
    control.on_change(lambda c: changes.append((c.name, c.version, c.state, c.registered)))

    async def main() -> None:
        await load_all(repo)
        try:
            assert control.names() == ["good", "later"]
            assert control.folder_name("good") == "good"
            [detail] = control.describe("good")
            assert (detail.version, detail.state, detail.default, detail.max_batch_size,
                    detail.queue_depth, detail.versions) == ("2", "READY", True, 4, 0, ("1", "2"))
            assert [d.version for d in control.describe("good", "all")] == ["1", "2"]
            assert control.known("good", None) == ("good", "2")
            assert control.known("good", "7") == ("good", "") and control.known("x", None) == \
                ("", "")
            assert ("good", "1", "READY", 0) in control.queue_depths()
            assert control.set_default("good", "1").default
            await control.unload("later")
            assert control.names() == ["good"]
            assert ("later", "1", "UNLOADING", True) in changes
            assert changes[-1][:2] == ("later", "1") and not changes[-1][3]
            loaded = await control.load(await control.find_folder("later"))
            assert (loaded.name, loaded.ready, loaded.failed) == ("later", ("1",), ())
            stats = control.statistics("good", "1")
            assert [(s.name, s.version, s.stats.success) for s in stats] == [("good", "1", 0)]
            with pytest.raises(ModelNotFoundError):
                control.describe("nope")
        finally:
            for version in repo.all_versions():
                if version.batcher is not None:
                    version.batcher.close()

    run_async(main)
