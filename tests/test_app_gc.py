"""Once a model is ready, what is loaded is frozen out of the cyclic GC's full passes."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

from fastserve.app import App
from fastserve.config import ServerConfig
from fastserve.core.repository import ModelVersion, State


class Node:
    other: Node


def garbage_cycle() -> weakref.ref[Node]:
    """Two objects that only refer to each other: only a cyclic GC pass can free them."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_ready_model_freezes_what_is_loaded(tmp_path: Path) -> None:
    app = App(ServerConfig(models=tmp_path))
    gc.unfreeze()
    try:
        app._model_changed(ModelVersion("m", "1", tmp_path, state=State.LOADING))
        assert gc.get_freeze_count() == 0  # nothing is frozen while a model still loads
        while_loading = garbage_cycle()
        gc.collect()
        assert while_loading() is None  # the GC still visits everything

        before_ready = garbage_cycle()
        app._model_changed(ModelVersion("m", "1", tmp_path, state=State.READY))
        gc.collect()
        # Frozen: a full pass no longer looks at what existed when the model became ready.
        assert before_ready() is not None
        assert gc.get_freeze_count() > 0
        after_ready = garbage_cycle()
        gc.collect()
        assert after_ready() is None  # what comes later is collected as before
    finally:
        gc.unfreeze()
        gc.collect()
    assert before_ready() is None  # unfrozen, the cycle is garbage again


def test_gc_is_back_on_once_the_first_loads_are_done() -> None:
    """cli.main turns the GC off for the start (imports, first loads); the loader's end
    turns it back on, what was loaded frozen."""
    import asyncio
    import threading

    from fastserve.startup import collect_garbage_after

    loaded = threading.Event()
    loader = threading.Thread(target=loaded.wait)
    loader.start()

    async def start() -> bool:
        collect_garbage_after(loader, asyncio.get_running_loop())
        await asyncio.sleep(0.05)
        still_off = not gc.isenabled()
        loaded.set()
        while not gc.isenabled():
            await asyncio.sleep(0.01)
        return still_off

    gc.disable()
    try:
        assert asyncio.run(start())  # off while the loader runs, on after
        assert gc.get_freeze_count() > 0
    finally:
        gc.enable()
        gc.unfreeze()


def test_gc_is_back_on_when_a_first_model_is_ready(tmp_path: Path) -> None:
    """Requests make garbage: the GC comes back with the first READY model, even while
    other models still load (the loader's end would be later)."""
    app = App(ServerConfig(models=tmp_path))
    gc.disable()
    try:
        app._model_changed(ModelVersion("m", "1", tmp_path, state=State.LOADING))
        assert not gc.isenabled()
        app._model_changed(ModelVersion("m", "1", tmp_path, state=State.READY))
        assert gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()
