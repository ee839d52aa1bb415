"""--poll-interval: versions and models written while serving load; removed ones unload."""

from __future__ import annotations

import shutil
from pathlib import Path

from ops_helpers import LoadGenerator, infer, mgmt, wait_for
from ops_models import write_versioned

X = [1.0, 2.0, 3.0]


def _answer_matches(doc) -> bool:
    """versioned: version N answers x + N; a wrong answer is a failure."""
    version = int(doc["model_version"])
    return doc["outputs"][0]["data"] == [x + version for x in X]


def _write_version(folder: Path, value: float, staging: Path) -> None:
    """The model of ``versioned`` for ``value``, exported to staging then renamed in place."""
    write_versioned(value, staging)
    staging.rename(folder)


def _default_version(ops) -> str:
    status, doc = infer(ops, "versioned")
    assert status == 200, doc
    return doc["model_version"]


def test_hot_reload_new_version_becomes_default_then_unloads(ops, ops_repo, tmp_path):
    with LoadGenerator(ops, "versioned", threads=2, check=_answer_matches) as load:
        load.wait_ok(10)
        _write_version(ops_repo / "versioned" / "3", 3.0, tmp_path / "v3")
        wait_for(lambda: _default_version(ops) == "3", 30, "version 3 to become the default",
                 ops)
        before = load.ok
        load.wait_ok(before + 10)
        shutil.rmtree(ops_repo / "versioned" / "3")
        wait_for(lambda: _default_version(ops) == "2", 30, "version 3 to be unloaded", ops)
        load.wait_ok(load.ok + 10)
    assert load.failures == [], load.failures[:5]
    versions = {doc["model_version"] for doc in load.answers}
    assert versions == {"2", "3"}
    wait_for(lambda: mgmt(ops, "GET", "/models/versioned")[1][0]["versions"] == ["1", "2"], 10,
             "version 3 gone from the status")


def test_hot_reload_half_written_version_never_serves(ops, ops_repo, tmp_path):
    data = write_versioned(4.0, tmp_path / "v4").read_bytes()
    folder = ops_repo / "versioned" / "4"
    with LoadGenerator(ops, "versioned", threads=2, check=_answer_matches) as load:
        load.wait_ok(10)
        folder.mkdir()
        (folder / "model.pt").write_bytes(data[: len(data) // 3])  # the copy stalls
        wait_for(lambda: mgmt(ops, "GET", "/models/versioned/4")[0] == 200
                 and mgmt(ops, "GET", "/models/versioned/4")[1][0]["status"] == "FAILED",
                 30, "the truncated version 4 to fail", ops)
        assert _default_version(ops) == "2"
        assert infer(ops, "versioned", "4")[0] == 503
        (folder / "model.pt").write_bytes(data)  # the copy completes: loaded again
        wait_for(lambda: _default_version(ops) == "4", 30, "version 4 to load when complete",
                 ops)
        load.wait_ok(load.ok + 10)
        shutil.rmtree(folder)
        wait_for(lambda: _default_version(ops) == "2", 30, "version 4 to be unloaded", ops)
    assert load.failures == [], load.failures[:5]
    assert {doc["model_version"] for doc in load.answers} <= {"2", "4"}


def test_hot_reload_new_model_folder(ops, ops_repo, tmp_path):
    staging = tmp_path / "hot"
    shutil.copytree(ops_repo / "digits", staging)
    with LoadGenerator(ops, "digits", threads=1) as load:
        staging.rename(ops_repo / "hot")
        wait_for(lambda: infer(ops, "hot")[0] == 200, 30, "model 'hot' to load", ops)
        shutil.rmtree(ops_repo / "hot")
        wait_for(lambda: infer(ops, "hot")[0] == 404, 30, "model 'hot' to unload", ops)
    assert load.failures == [] and load.ok > 0


def test_hot_reload_two_new_exported_models_at_once(ops, ops_repo, tmp_path):
    """Two new folders of .pt2 versions in one poll: four torch.export loads at once."""
    names = ("twin_a", "twin_b")
    for name in names:
        shutil.copytree(ops_repo / "twin", tmp_path / name)
    for name in names:
        (tmp_path / name).rename(ops_repo / name)
    try:
        for name in names:
            for version in ("1", "2"):
                wait_for(lambda n=name, v=version: infer(ops, n, v)[0] not in (404, 503), 30,
                         f"model {name!r} version {version} to load", ops)
                status, doc = infer(ops, name, version)
                assert status == 200, doc
                assert doc["outputs"][0]["data"] == [x + int(version) for x in X]
    finally:
        for name in names:
            shutil.rmtree(ops_repo / name)
    for name in names:
        wait_for(lambda n=name: infer(ops, n)[0] == 404, 30, f"model {name!r} to unload", ops)
