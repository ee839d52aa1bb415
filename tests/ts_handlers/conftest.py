"""The archives of mar_build.py, built once per session with the real archiver."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from mar_cases import SHIM

pytest.importorskip("model_archiver", reason="torch-model-archiver is not installed")


@pytest.fixture(scope="session")
def ts_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model store holding the archives TorchServe 0.12 can serve (mar_build.build)."""
    import mar_build

    store = tmp_path_factory.mktemp("ts-handlers") / "model-store"
    mar_build.build(store)
    return store


def _install_torchvision_shim() -> None:
    # This process computes image_classifier's expected answers with torchvision too.
    spec = importlib.util.spec_from_file_location("fastserve_torchvision_shim",
                                                  SHIM / "sitecustomize.py")
    assert spec is not None and spec.loader is not None
    spec.loader.exec_module(importlib.util.module_from_spec(spec))


_install_torchvision_shim()
