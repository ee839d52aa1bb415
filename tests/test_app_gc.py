"""Once a model is ready, what is loaded is frozen out of the cyclic GC's full passes."""

from __future__ import annotations

import gc
from pathlib import Path

from fastserve.app import App
from fastserve.config import ServerConfig
from fastserve.core.repository import ModelVersion, State


def test_ready_model_freezes_what_is_loaded(tmp_path: Path) -> None:
    app = App(ServerConfig(models=tmp_path))
    gc.unfreeze()
    try:
        loading = ModelVersion("m", "1", tmp_path, state=State.LOADING)
        app._model_changed(loading)
        assert gc.get_freeze_count() == 0  # nothing is frozen while a model still loads
        held = [{"cycle": None} for _ in range(100)]
        app._model_changed(ModelVersion("m", "1", tmp_path, state=State.READY))
        assert gc.get_freeze_count() >= len(held)
    finally:
        gc.unfreeze()
