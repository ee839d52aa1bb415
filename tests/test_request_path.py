"""Issue 14's one door, checked on a traced request (benchmarks/request_path.py): a v2
JSON infer enters its front-end and the data plane once each, and goes down through
them to the scheduler without climbing back up; socket to model and back it makes at
most 8 stops, none entered twice."""

from __future__ import annotations

import asyncio
import importlib.util
from collections import Counter
from pathlib import Path
from typing import Any

from fastserve.http.protocol import IMPLEMENTATION

ROOT = Path(__file__).resolve().parent.parent


def test_request_path_v2_infer_enters_front_end_and_data_plane_once() -> None:
    log, stops, back = asyncio.run(_request_path().trace_request())
    entered = Counter(callee for source, callee, _ in log if source != "resume")
    assert entered["frontends.kserve_v2"] == 1
    assert entered["core.dataplane"] == 1
    assert stops[:5] == ["http._protocol", "http.dispatch", "frontends.kserve_v2",
                         "core.dataplane", "core.scheduler"]
    assert stops[-1] == "backend" and stops.count("core.dataplane") == 1
    assert back[-3:] == ["core.dataplane", "frontends.kserve_v2", "http.dispatch"]


def test_request_path_v2_infer_is_eight_stops_each_entered_once() -> None:
    """Loop side: protocol, dispatch, front-end, data plane, scheduler (the queue and
    when to dispatch); thread side: the instance worker, the batch policy, the model. The
    instance hands the answer back itself: nothing re-enters the scheduler on the way."""
    log, stops, back = asyncio.run(_request_path().trace_request())
    assert stops == ["http._protocol", "http.dispatch", "frontends.kserve_v2", "core.dataplane",
                     "core.scheduler", "core.instances", "core.batching", "backend"]
    entered = Counter(callee for source, callee, _ in log if source != "resume")
    once = dict.fromkeys(stops[1:], 1)
    if IMPLEMENTATION == "py":
        # The pure-Python twin's per-request handoff (what the compiled protocol does inside
        # its own C method) is http.dispatch._queue_or_run: the request enters dispatch.py
        # there and again when its task starts.
        once["http.dispatch"] = 2
    assert {stop: entered[stop] for stop in stops[1:]} == once
    assert back == ["core.instances", "core.scheduler", "core.dataplane",
                    "frontends.kserve_v2", "http.dispatch"]


def _request_path() -> Any:
    spec = importlib.util.spec_from_file_location(
        "request_path", ROOT / "benchmarks" / "request_path.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_request_path_predictions_enter_the_data_plane_once() -> None:
    """TorchServe's /predictions: one call into the core (the data plane resolves the
    model, asks the body for its instances and queues them), not a look-up and a run;
    and one into the scheduler (its ``infer`` queues the body and waits), as a v2 infer
    makes: no future handed out and no deferred dispatch entering it a second time."""
    log, stops, back = asyncio.run(_request_path().trace_request("predictions"))
    into_core = [(callee, name) for source, callee, name in log
                 if source == "frontends.torchserve" and callee.startswith("core.")]
    assert into_core == [("core.dataplane", "predictions")]
    entered = Counter(callee for source, callee, _ in log if source != "resume")
    assert entered["frontends.torchserve"] == 1 and entered["core.dataplane"] == 1
    assert entered["core.scheduler"] == 1 and stops.count("core.scheduler") == 1
    assert stops[:4] == ["http._protocol", "http.dispatch", "frontends.torchserve",
                         "core.dataplane"]
    assert stops[-1] == "backend" and "core.scheduler" in stops
    assert back[-3:] == ["core.dataplane", "frontends.torchserve", "http.dispatch"]
