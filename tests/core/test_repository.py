"""ModelRepository: scanning DIR, loading every version off the loop, and model state."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fastserve.core.repository import ModelRepository, State, read_labels
from fastserve.errors import (
    BackendError,
    ConfigError,
    ModelNotFoundError,
    ModelNotReadyError,
    VersionNotFoundError,
)


async def load(repo: ModelRepository, wait_until: Any) -> None:
    repo.scan()
    thread = repo.start_loading(asyncio.get_running_loop())
    await wait_until(lambda: not repo.loading)
    thread.join(5)
    assert not thread.is_alive()


def close(repo: ModelRepository) -> None:
    for v in repo.all_versions():
        if v.batcher is not None:
            v.batcher.close()


# Scanning


def test_version_folders(tmp_path: Path, make_model, caplog) -> None:
    folder = make_model(tmp_path, "m", versions=("1", "2", "10", "01", "0", "v3", "latest",
                                                 ".hidden", "_staging"))
    (folder / "7").write_text("a file, not a folder")
    repo = ModelRepository(tmp_path, loader=None)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="fastserve.repository"):
        repo.scan()
    entry = repo.entry("m")
    assert sorted(entry.versions, key=int) == ["1", "2", "10"]
    assert [v.version for v in entry.sorted_versions()] == ["1", "2", "10"]
    assert all(v.state is State.LOADING for v in entry.versions.values())
    warned = {r.getMessage() for r in caplog.records if r.levelno == logging.WARNING}
    for name in ("01", "0", "v3", "latest"):
        assert any(f"folder {name}/ is not a version number" in m for m in warned), name
    assert not any(".hidden" in m or "_staging" in m or "7/" in m for m in warned)


def test_scan_skips_files_and_hidden_model_folders(tmp_path: Path, make_model) -> None:
    make_model(tmp_path, "a")
    make_model(tmp_path, ".trash")
    (tmp_path / "README.txt").write_text("not a model")
    repo = ModelRepository(tmp_path, loader=None)  # type: ignore[arg-type]
    repo.scan()
    assert list(repo.models) == ["a"] and "a" in repo and ".trash" not in repo


def test_name_from_config_and_duplicates(tmp_path: Path, make_model, caplog) -> None:
    make_model(tmp_path, "a_folder", 'name = "shared"')
    make_model(tmp_path, "b_folder", 'name = "shared"')
    make_model(tmp_path, "shared2")
    repo = ModelRepository(tmp_path, loader=None)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="fastserve.repository"):
        repo.scan()
    assert sorted(repo.models) == ["shared", "shared2"]
    assert repo.entry("shared").folder.name == "a_folder"
    assert repo.entry("shared").versions["1"].name == "shared"
    assert "name 'shared' is already used" in caplog.text


def test_highest_version_is_default(tmp_path: Path, make_model) -> None:
    make_model(tmp_path, "m", versions=("2", "10", "9"))
    repo = ModelRepository(tmp_path, loader=None)  # type: ignore[arg-type]
    repo.scan()
    entry = repo.entry("m")
    for v in entry.versions.values():
        v.state = State.READY
    assert entry.default is entry.versions["10"]  # numeric, not "9" > "10"
    assert repo.version("m", None).version == "10"
    entry.pinned = "2"
    assert repo.version("m", None).version == "2"
    entry.pinned = "404"  # a pin on a removed version is ignored
    assert repo.version("m", None).version == "10"


def test_default_prefers_the_highest_ready_version(tmp_path: Path, make_model) -> None:
    make_model(tmp_path, "m", versions=("1", "2", "3"))
    repo = ModelRepository(tmp_path, loader=None)  # type: ignore[arg-type]
    repo.scan()
    entry = repo.entry("m")
    assert entry.default is entry.versions["3"]  # nothing ready yet: the highest
    entry.versions["1"].state = State.READY
    entry.versions["2"].state = State.READY
    entry.versions["3"].state = State.FAILED
    assert entry.default is entry.versions["2"]


# Labels


@pytest.mark.parametrize(("filename", "text", "labels"), [
    ("labels.json", '{"0": "tench", "1": "goldfish"}', {"0": "tench", "1": "goldfish"}),
    ("index_to_name.json", '{"0": ["n01440764", "tench"], "1": ["n01443537", "goldfish"]}',
     {"0": "tench", "1": "goldfish"}),
    ("labels.json", '{"0": ["only"], "1": "plain"}', {"0": "only", "1": "plain"}),
    ("labels.json", "{}", {}),
])
def test_labels_forms(tmp_path: Path, filename: str, text: str, labels: dict[str, str]) -> None:
    (tmp_path / filename).write_text(text)
    assert read_labels(tmp_path) == labels


def test_no_labels_file(tmp_path: Path) -> None:
    assert read_labels(tmp_path) == {}


def test_labels_json_wins_over_index_to_name(tmp_path: Path) -> None:
    (tmp_path / "labels.json").write_text('{"0": "a"}')
    (tmp_path / "index_to_name.json").write_text('{"0": ["x", "b"]}')
    assert read_labels(tmp_path) == {"0": "a"}


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", r"labels.json is not valid JSON"),
    ('["tench"]', r"labels.json must be an object mapping class index to label"),
    ('{"0": 3}', r"labels.json: label for '0' must be a string or a list"),
    ('{"0": []}', r"labels.json: label for '0' must be a string"),
    ('{"0": ["n1", 5]}', r"labels.json: label for '0' must be a string"),
])
def test_bad_labels(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "labels.json").write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_labels(tmp_path)


def test_labels_reach_the_loader(tmp_path: Path, make_model, fake_loader, run_async,
                                 wait_until) -> None:
    make_model(tmp_path, "img", files={"index_to_name.json": '{"0": ["n0", "cat"]}'})
    loader = fake_loader()
    repo = ModelRepository(tmp_path, loader)

    async def main() -> None:
        await load(repo, wait_until)
        close(repo)

    run_async(main)
    assert repo.entry("img").labels == {"0": "cat"}
    assert loader.calls[0][3] == {"0": "cat"}


# Loading and states


def test_states_through_loading(tmp_path: Path, make_model, fake_loader, run_async,
                                wait_until) -> None:
    make_model(tmp_path, "a", versions=("1", "2"))
    make_model(tmp_path, "b", "max_batch_size = 4\nwarmup = false")
    gate = threading.Event()
    loader = fake_loader(gate=gate)
    repo = ModelRepository(tmp_path, loader)
    changes: list[tuple[str, str, State]] = []
    repo.on_change = lambda v: changes.append((v.name, v.version, v.state))

    async def main() -> None:
        repo.scan()
        assert repo.loading
        thread = repo.start_loading(asyncio.get_running_loop())
        try:
            await wait_until(lambda: len(loader.calls) == 1)
            await asyncio.sleep(0.02)
            assert repo.loading
            states = {(v.name, v.version): v.state for v in repo.all_versions()}
            assert set(states.values()) == {State.LOADING}
            with pytest.raises(ModelNotReadyError, match=r"model 'a' version 2 is loading"):
                repo.ready_version("a", None)
        finally:
            gate.set()
        await wait_until(lambda: not repo.loading)
        thread.join(5)
        try:
            for v in repo.all_versions():
                assert v.state is State.READY and v.ready and v.error == ""
                assert v.backend is loader.backends[(v.name, v.version)]
                assert v.batcher is not None and v.batcher.stats is v.stats
            # a READY version serves through its batcher
            b = repo.ready_version("b", None)
            assert b.batcher is not None
            x = np.ones((2, 3), np.float32)
            out = await b.batcher.submit({"x": x}, 2)
            np.testing.assert_array_equal(out["y"], x * 2 + 1)
        finally:
            close(repo)

    run_async(main)
    assert [(c[0], c[1]) for c in loader.calls] == [("a", "1"), ("a", "2"), ("b", "1")]
    assert loader.calls[2][2].max_batch_size == 4
    assert sorted(changes) == [("a", "1", State.READY), ("a", "2", State.READY),
                               ("b", "1", State.READY)]
    # warm-up ran once per version unless the config turned it off
    assert loader.backends[("a", "1")].warmed == 1
    assert loader.backends[("b", "1")].warmed == 0


def test_broken_config_fails_that_model_only(tmp_path: Path, make_model, fake_loader,
                                             run_async, wait_until) -> None:
    make_model(tmp_path, "bad", "max_batch_size = -2", versions=("1", "2"))
    make_model(tmp_path, "badlabels", files={"labels.json": "[1, 2]"})
    make_model(tmp_path, "good")
    loader = fake_loader()
    repo = ModelRepository(tmp_path, loader)

    async def main() -> None:
        await load(repo, wait_until)
        close(repo)

    run_async(main)
    bad = repo.entry("bad")
    assert bad.config is None
    assert "'max_batch_size' must be >= 0, got -2" in bad.error
    assert [v.state for v in bad.sorted_versions()] == [State.FAILED, State.FAILED]
    assert all(v.error == bad.error for v in bad.versions.values())
    assert "labels.json must be an object" in repo.entry("badlabels").versions["1"].error
    assert repo.entry("good").versions["1"].state is State.READY
    assert [c[0] for c in loader.calls] == ["good"]  # broken models never reach the loader
    with pytest.raises(ModelNotReadyError, match=r"'bad' version 2 failed to load: "
                                                  r"config.toml: 'max_batch_size'"):
        repo.ready_version("bad", None)
    with pytest.raises(ModelNotReadyError, match=r"failed to load"):
        repo.config_of("bad")


def test_no_version_folders_fails_the_model(tmp_path: Path, make_model, fake_loader,
                                            run_async, wait_until) -> None:
    make_model(tmp_path, "empty", versions=("v1",))
    loader = fake_loader()
    repo = ModelRepository(tmp_path, loader)

    async def main() -> None:
        await load(repo, wait_until)

    run_async(main)
    entry = repo.entry("empty")
    assert entry.versions == {} and entry.default is None
    assert "no version folders in" in entry.error and "1/model.pt2" in entry.error
    with pytest.raises(ModelNotReadyError, match=r"model 'empty' failed to load: no version"):
        repo.version("empty", None)
    with pytest.raises(VersionNotFoundError):
        repo.version("empty", "1")
    assert loader.calls == []


@pytest.mark.parametrize(("error", "message"), [
    (ConfigError("model.pt2 was exported with a static batch dimension"),
     "model.pt2 was exported with a static batch dimension"),
    (BackendError("cuda out of memory"), "cuda out of memory"),
    (RuntimeError("bad zip file"), "RuntimeError: bad zip file"),
])
def test_loader_errors_fail_one_version(tmp_path: Path, make_model, fake_loader, run_async,
                                        wait_until, error: Exception, message: str,
                                        caplog) -> None:
    make_model(tmp_path, "m", versions=("1", "2"))
    loader = fake_loader(errors={("m", "2"): error})
    repo = ModelRepository(tmp_path, loader)

    async def main() -> None:
        await load(repo, wait_until)
        close(repo)

    run_async(main)
    entry = repo.entry("m")
    assert entry.versions["1"].state is State.READY
    assert entry.versions["2"].state is State.FAILED
    assert entry.versions["2"].error == message
    assert entry.default is entry.versions["1"]
    assert f"model m version 2 failed to load: {message}" in caplog.text


def test_warmup_failure_fails_the_version(tmp_path: Path, make_model, fake_loader, run_async,
                                          wait_until) -> None:
    make_model(tmp_path, "m")
    loader = fake_loader(warmup_errors={("m", "1"): ValueError("shape mismatch")})
    repo = ModelRepository(tmp_path, loader)

    async def main() -> None:
        await load(repo, wait_until)

    run_async(main)
    version = repo.entry("m").versions["1"]
    assert version.state is State.FAILED and version.error == "ValueError: shape mismatch"
    assert version.batcher is None


def test_empty_repository(tmp_path: Path, fake_loader, run_async, wait_until) -> None:
    repo = ModelRepository(tmp_path, fake_loader())

    async def main() -> None:
        await load(repo, wait_until)

    run_async(main)
    assert repo.models == {} and repo.all_versions() == [] and not repo.loading


def test_lookups(tmp_path: Path, make_model) -> None:
    make_model(tmp_path, "m", versions=("1", "3"))
    repo = ModelRepository(tmp_path, loader=None)  # type: ignore[arg-type]
    repo.scan()
    assert repo.version("m", "3").version == "3"
    with pytest.raises(ModelNotFoundError, match=r"model 'nope' not found"):
        repo.entry("nope")
    with pytest.raises(ModelNotFoundError):
        repo.version("nope", None)
    with pytest.raises(VersionNotFoundError, match=r"model 'm' has no version '2'"):
        repo.version("m", "2")
    with pytest.raises(VersionNotFoundError):
        repo.ready_version("m", "2")
    assert repo.config_of("m").name == "m"


def test_every_failed_version_logs_its_reason(tmp_path: Path, make_model, fake_loader,
                                              run_async, wait_until, caplog) -> None:
    """A broken config.toml fails each version with one log line; so does a model folder
    without a version folder (it has no version: one line for the model)."""
    make_model(tmp_path, "keyed", "colour = 'red'\n", versions=("1", "2"))
    make_model(tmp_path, "bare", versions=())
    make_model(tmp_path, "fine")
    repo = ModelRepository(tmp_path, fake_loader())

    async def main() -> None:
        await load(repo, wait_until)
        close(repo)

    with caplog.at_level(logging.INFO, logger="fastserve.repository"):
        run_async(main)
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    for version in ("1", "2"):
        assert sum(f"model keyed version {version} failed to load: config.toml: unknown "
                   "key(s) colour" in m for m in lines) == 1, lines
    assert sum(m.startswith("model bare failed to load: no version folders") for m in lines
               ) == 1, lines
    assert not any("fine" in m for m in lines)
