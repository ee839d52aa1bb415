"""The repository's scan of a TorchServe model store: which archives, under what name,
and broken archives FAILED with their reason while the rest load."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from fastserve.core.repository import ModelRepository, State
from fastserve.core.ts_store import StoreSettings, store_names

from ts_archives import build_mar, hostile_archives


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store")
    build_mar(root / ".src", root, "alpha", "1.0")
    build_mar(root / ".src", root / ".v2", "alpha", "2.0", config_yaml="batchSize: 3\n")
    (root / ".v2" / "alpha.mar").rename(root / "alpha_v2.mar")
    build_mar(root / ".src", root, "beta", "0.3", fmt="no-archive")
    hostile_archives(root)
    (root / "folder_model" / "1").mkdir(parents=True)
    return root


def scan(root: Path, settings: StoreSettings) -> ModelRepository:
    repo = ModelRepository(root, loader=None, store=settings)  # type: ignore[arg-type]
    repo.scan()
    return repo


def test_models_dir_serves_archives_beside_model_folders(store: Path, caplog) -> None:
    with caplog.at_level(logging.ERROR, logger="fastserve.repository"):
        repo = scan(store, StoreSettings(max_archive_size=1_000_000))
    alpha = repo.entry("alpha")
    assert [v.version for v in alpha.sorted_versions()] == ["1.0", "2.0"]
    assert alpha.default is alpha.versions["2.0"] and alpha.archive
    assert alpha.config is not None and alpha.config.handler == "torchserve"
    # Each archive keeps its own model-config.yaml: 2.0's batchSize 3, 1.0 the default 1.
    assert alpha.config.max_batch_size == 1 and alpha.versions["1.0"].config is None
    v2_config = alpha.versions["2.0"].config
    assert v2_config is not None and v2_config.max_batch_size == 3
    assert repo.entry("beta").versions["0.3"].folder == store / "beta"
    assert "folder_model" in repo
    for name in ("slip", "absolute", "link", "huge"):  # the manifest was read: a FAILED version
        (version,) = repo.entry(name).versions.values()
        assert version.state is State.FAILED and version.error
    for name in ("corrupt", "nomanifest"):
        entry = repo.entry(name)
        assert entry.error and not entry.versions
    for words in ("zip-slip", "symbolic link", "inflates to more than", "not a valid model",
                  "no MAR-INF/MANIFEST.json"):
        assert words in caplog.text


def test_model_store_selection_and_names(store: Path) -> None:
    repo = scan(store, StoreSettings(selection=("alpha.mar", "beta"),
                                     names={"alpha.mar": "renamed"}))
    assert sorted(repo.models) == ["beta", "renamed"]
    assert list(repo.entry("renamed").versions) == ["1.0"]
    assert scan(store, StoreSettings(selection=())).models == {}
    everything = scan(store, StoreSettings(selection=("all",)))
    assert {"alpha", "beta", "folder_model", "corrupt"} <= set(everything.models)


def test_models_map_pins_the_default_version(store: Path) -> None:
    repo = scan(store, StoreSettings(models={"alpha": {"1.0": {"defaultVersion": True}}}))
    assert repo.entry("alpha").default is repo.entry("alpha").versions["1.0"]


def test_store_names_for_the_index_and_registration(store: Path) -> None:
    names = store_names(store, StoreSettings())
    assert names["alpha"] == store / "alpha.mar" and names["beta"] == store / "beta"
    assert names["corrupt"] == store / "corrupt.mar"
    assert "folder_model" not in names
