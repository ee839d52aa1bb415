"""DataPlane: CONTRACT §3's health table, metadata and inference, without any protocol."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fastserve.core.dataplane import DataPlane
from fastserve.core.repository import ModelRepository, State
from fastserve.errors import (
    InvalidInputError,
    ModelNotFoundError,
    ModelNotReadyError,
    VersionNotFoundError,
)
from fastserve.types import InferRequest

from decoded_body import infer

CONFIG = """
max_batch_size = 4
batch_delay_ms = 0.5
[[inputs]]
name = "x"
shape = [-1, 3]
[[outputs]]
name = "y"
shape = [-1, 3]
"""


def x(rows: int = 2, value: float = 1.5) -> np.ndarray:
    return np.full((rows, 3), value, np.float32)


def req(model: str = "good", version: str | None = None, **kwargs: Any) -> InferRequest:
    inputs = kwargs.pop("inputs", {"x": x()})
    return InferRequest(model, version, inputs, **kwargs)


async def start(plane: DataPlane, wait_until: Any) -> None:
    repo = plane.repository
    repo.scan()
    thread = repo.start_loading(asyncio.get_running_loop())
    await wait_until(lambda: not repo.loading)
    thread.join(5)


@pytest.fixture
def repo_dir(tmp_path: Path, make_model: Any) -> Path:
    make_model(tmp_path, "good", CONFIG, versions=("1", "2"))
    make_model(tmp_path, "broken", "max_batch_size = -1")
    make_model(tmp_path, "failing")  # the loader raises for it
    return tmp_path


def loader_for(fake_loader: Any, **kwargs: Any) -> Any:
    return fake_loader(errors={("failing", "1"): RuntimeError("weights are corrupt")}, **kwargs)


# Health table


def test_loading(repo_dir: Path, fake_loader: Any, run_async: Any, wait_until: Any) -> None:
    gate = threading.Event()
    plane = DataPlane(ModelRepository(repo_dir, loader_for(fake_loader, gate=gate)))

    async def main() -> None:
        repo = plane.repository
        repo.scan()
        thread = repo.start_loading(asyncio.get_running_loop())
        try:
            assert plane.live()
            assert not plane.ready()
            assert not plane.model_ready("good") and not plane.model_ready("good", "1")
            with pytest.raises(ModelNotReadyError, match=r"model 'good' version 2 is loading"):
                await infer(plane, req())
            # unknown names are still 404 while loading
            with pytest.raises(ModelNotFoundError):
                plane.model_ready("nope")
            with pytest.raises(VersionNotFoundError):
                plane.model_ready("good", "3")
        finally:
            gate.set()
        await wait_until(lambda: not repo.loading)
        thread.join(5)
        assert plane.ready()
        plane.close()

    run_async(main)


def test_loaded_with_failed_models(repo_dir: Path, fake_loader: Any, run_async: Any,
                                   wait_until: Any) -> None:
    plane = DataPlane(ModelRepository(repo_dir, loader_for(fake_loader)))

    async def main() -> None:
        await start(plane, wait_until)
        try:
            assert plane.live() and plane.ready()  # FAILED models do not make it unready
            assert plane.model_ready("good") and plane.model_ready("good", "1")
            assert not plane.model_ready("broken") and not plane.model_ready("broken", "1")
            assert not plane.model_ready("failing")
            with pytest.raises(ModelNotReadyError, match=r"failed to load: config.toml: "
                                                          r"'max_batch_size' must be >= 0"):
                await infer(plane, req("broken", inputs={"x": x()}))
            with pytest.raises(ModelNotReadyError,
                               match=r"version 1 failed to load: RuntimeError: weights are"):
                await infer(plane, req("failing", "1"))
            out = await infer(plane, req("good"))
            assert out.version == "2"
        finally:
            plane.close()

    run_async(main)


def test_empty_repository(tmp_path: Path, fake_loader: Any, run_async: Any,
                          wait_until: Any) -> None:
    plane = DataPlane(ModelRepository(tmp_path, fake_loader()))

    async def main() -> None:
        await start(plane, wait_until)
        assert plane.ready()
        with pytest.raises(ModelNotFoundError):
            plane.model_ready("anything")
        with pytest.raises(ModelNotFoundError):
            await infer(plane, req("anything"))

    run_async(main)


def test_draining(repo_dir: Path, fake_loader: Any, run_async: Any, wait_until: Any) -> None:
    plane = DataPlane(ModelRepository(repo_dir, loader_for(fake_loader)))

    async def main() -> None:
        await start(plane, wait_until)
        try:
            in_flight = asyncio.ensure_future(infer(plane, req()))
            await asyncio.sleep(0)  # submitted before the drain starts
            plane.start_draining()
            assert plane.live() and not plane.ready() and not plane.model_ready("good")
            with pytest.raises(ModelNotReadyError, match=r"shutting down"):
                await infer(plane, req())
            await plane.drain()
            out = await in_flight  # in-flight requests finish
            np.testing.assert_array_equal(out.outputs["y"], x() * 2 + 1)
        finally:
            plane.close()

    run_async(main)


def test_unknown_model_and_version(repo_dir: Path, fake_loader: Any, run_async: Any,
                                   wait_until: Any) -> None:
    plane = DataPlane(ModelRepository(repo_dir, loader_for(fake_loader)))

    async def main() -> None:
        await start(plane, wait_until)
        try:
            for call in (lambda: plane.model_ready("nope"),
                         lambda: plane.model_metadata("nope"),
                         lambda: plane.model_ready("nope", "1")):
                with pytest.raises(ModelNotFoundError, match=r"model 'nope' not found"):
                    call()
            for call in (lambda: plane.model_ready("good", "7"),
                         lambda: plane.model_metadata("good", "7"),
                         lambda: plane.model_ready("good", "x")):
                with pytest.raises(VersionNotFoundError):
                    call()
            with pytest.raises(ModelNotFoundError):
                await infer(plane, req("nope"))
            with pytest.raises(VersionNotFoundError, match=r"has no version '7'"):
                await infer(plane, req("good", "7"))
        finally:
            plane.close()

    run_async(main)


def test_model_ready_of_a_failed_version_next_to_a_ready_one(
        tmp_path: Path, make_model: Any, fake_loader: Any, run_async: Any,
        wait_until: Any) -> None:
    make_model(tmp_path, "m", CONFIG, versions=("1", "2"))
    loader = fake_loader(errors={("m", "2"): RuntimeError("no")})
    plane = DataPlane(ModelRepository(tmp_path, loader))

    async def main() -> None:
        await start(plane, wait_until)
        try:
            assert plane.model_ready("m", "1")
            assert not plane.model_ready("m", "2")
            assert plane.model_ready("m")  # the default falls back to the ready version
            assert (await infer(plane, req("m"))).version == "1"
            with pytest.raises(ModelNotReadyError, match=r"version 2 failed to load"):
                await infer(plane, req("m", "2"))
        finally:
            plane.close()

    run_async(main)


# Metadata


def test_model_metadata(repo_dir: Path, fake_loader: Any, run_async: Any,
                        wait_until: Any) -> None:
    plane = DataPlane(ModelRepository(repo_dir, loader_for(fake_loader)))

    async def main() -> None:
        await start(plane, wait_until)
        try:
            meta = plane.model_metadata("good")
            assert meta["name"] == "good" and meta["versions"] == ["1", "2"]
            assert meta["platform"] == "fake"  # read off the loaded backend
            assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]
            assert [o["name"] for o in meta["outputs"]] == ["y", "s"]
            assert plane.model_metadata("good", "1")["versions"] == ["1", "2"]
            # a model that failed to load: what its files say
            failing = plane.model_metadata("failing")
            assert failing["inputs"] == [] and failing["platform"] == "pytorch_export"
            broken = plane.model_metadata("broken")
            assert broken["versions"] == ["1"] and broken["inputs"] == []
            server = plane.server_metadata()
            assert server["name"] == "fastserve" and isinstance(server["version"], str)
            assert plane.labels("good") == {}
            assert plane.config("good").max_batch_size == 4
        finally:
            plane.close()

    run_async(main)


# Inference


def test_infer(repo_dir: Path, fake_loader: Any, run_async: Any, wait_until: Any) -> None:
    plane = DataPlane(ModelRepository(repo_dir, loader_for(fake_loader)))

    async def main() -> None:
        await start(plane, wait_until)
        try:
            sent = [x(rows, rows / 3) for rows in (1, 2, 3, 6)]
            answers = await asyncio.gather(*(
                infer(plane, req(inputs={"x": a}, id=f"r{i}")) for i, a in enumerate(sent)))
            for i, (a, out) in enumerate(zip(sent, answers, strict=True)):
                assert (out.model, out.version, out.id) == ("good", "2", f"r{i}")
                np.testing.assert_array_equal(out.outputs["y"], a * 2 + 1)
                np.testing.assert_array_equal(out.outputs["s"], a.sum(axis=1))
            one = await infer(plane, req("good", "1", outputs=["s"]))
            assert list(one.outputs) == ["s"] and one.version == "1"
            with pytest.raises(InvalidInputError, match=r"unknown output 'z'"):
                await infer(plane, req(outputs=["z"]))
            with pytest.raises(InvalidInputError, match=r"input 'x' has shape \[2, 4\]"):
                await infer(plane, req(inputs={"x": np.zeros((2, 4), np.float32)}))
            with pytest.raises(InvalidInputError, match=r"missing input 'x'"):
                await infer(plane, req(inputs={}))
            version = plane.repository.version("good", "2")
            # Four requests (the 6-row one ran as two chunks: one success), 12 rows.
            assert version.stats.success == 4 and version.stats.inference_count == 12
        finally:
            plane.close()

    run_async(main)


def test_close_closes_backends(repo_dir: Path, fake_loader: Any, run_async: Any,
                               wait_until: Any) -> None:
    loader = loader_for(fake_loader)
    plane = DataPlane(ModelRepository(repo_dir, loader))

    async def main() -> None:
        await start(plane, wait_until)
        plane.close()

    run_async(main)
    assert all(b.closed for b in loader.backends.values()) and len(loader.backends) == 2
    states = {(v.name, v.version): v.state for v in plane.repository.all_versions()}
    assert states[("good", "2")] is State.READY


def test_readiness_when_every_model_failed(tmp_path: Path, make_model: Any, fake_loader: Any,
                                           run_async: Any, wait_until: Any) -> None:
    """--device cuda on a CPU box fails every model: not ready (a probe must not route)."""
    make_model(tmp_path, "a")
    make_model(tmp_path, "b", versions=("1", "2"))
    make_model(tmp_path, "c", versions=())  # no version folder: FAILED too
    errors = {key: RuntimeError("CUDA is not available") for key in
              (("a", "1"), ("b", "1"), ("b", "2"))}
    plane = DataPlane(ModelRepository(tmp_path, fake_loader(errors=errors)))

    async def main() -> None:
        await start(plane, wait_until)
        assert not plane.ready()
        plane.strict_readiness = True
        assert not plane.ready()

    run_async(main)


def test_strict_readiness_is_tritons_rule(repo_dir: Path, fake_loader: Any, run_async: Any,
                                          wait_until: Any) -> None:
    plane = DataPlane(ModelRepository(repo_dir, loader_for(fake_loader)))

    async def main() -> None:
        await start(plane, wait_until)
        assert plane.ready()  # 'good' serves; 'broken' and 'failing' FAILED
        plane.strict_readiness = True
        assert not plane.ready()
        for name in ("broken", "failing"):
            await plane.repository.unload_model(name)
        assert plane.ready()  # every model left is READY
        for v in plane.repository.all_versions():
            if v.batcher is not None:
                v.batcher.close()

    run_async(main)


@pytest.mark.parametrize("folders", [(), ("no_version",)],
                         ids=["empty", "folders-without-versions"])
def test_empty_repository_is_ready(tmp_path: Path, make_model: Any, fake_loader: Any,
                                   run_async: Any, wait_until: Any,
                                   folders: tuple[str, ...]) -> None:
    """DIR holds no model (CONTRACT 3): ready, as an empty one is; a warning says so."""
    for name in folders:
        make_model(tmp_path, name, versions=())
    plane = DataPlane(ModelRepository(tmp_path, fake_loader()))

    async def main() -> None:
        await start(plane, wait_until)
        assert plane.ready()
        plane.strict_readiness = True
        assert plane.ready() == (not folders)  # Triton's rule: a FAILED folder is not ready

    run_async(main)
