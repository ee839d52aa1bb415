"""--poll-interval on a TorchServe model store, end to end with real archives: a replaced
.mar serves its new version, an added one loads, a removed one is gone."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
import torch

from _server import ServerProcess
from ts_archives import build_mar, tiny_weights

pytestmark = pytest.mark.slow
pytest.importorskip("ts.torch_handler.base_handler")

ROW = [1.0, 2.0, 3.0, 4.0]


def expected(seed: int) -> list[float]:
    w = tiny_weights(seed)
    return (torch.tensor(ROW) @ w["fc.weight"].T + w["fc.bias"]).tolist()


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("polling")


@pytest.fixture(scope="module")
def server(work: Path) -> Iterator[ServerProcess]:
    store = work / "model-store"
    build_mar(work, store, "tiny", "1.0", seed=1)
    with ServerProcess(store, "--model-store", str(store), "--models", "all",
                       "--poll-interval", "0.2") as srv:
        yield srv


def predict(server: ServerProcess, model: str) -> tuple[int, object]:
    status, _, body = server.request("POST", f"/predictions/{model}", orjson.dumps(ROW),
                                     {"Content-Type": "application/json"})
    return status, orjson.loads(body)


def eventually(what: str, check: Callable[[], bool], server: ServerProcess) -> None:
    deadline = time.monotonic() + 60  # a poll, the file held still, a load
    while not check():
        assert time.monotonic() < deadline, f"{what}\n{server.log()[-3000:]}"
        time.sleep(0.1)


def test_archives_replaced_added_and_removed_while_serving(server: ServerProcess,
                                                           work: Path) -> None:
    store = server.models
    status, answer = predict(server, "tiny")
    assert status == 200 and answer == pytest.approx(expected(1), abs=1e-5)

    replacement = build_mar(work / "next", work / "staging", "tiny", "2.0", seed=2)
    os.replace(replacement, Path(store) / "tiny.mar")
    eventually("tiny 2.0 replaces 1.0",
               lambda: server.request("GET", "/models/tiny", port=server.management_port)[0]
               == 200 and [d["modelVersion"] for d in orjson.loads(server.request(
                   "GET", "/models/tiny/all", port=server.management_port)[2])] == ["2.0"]
               # listed may still be loading (503): wait until it answers
               and predict(server, "tiny")[0] == 200,
               server)
    status, answer = predict(server, "tiny")
    assert status == 200 and answer == pytest.approx(expected(2), abs=1e-5)

    added = build_mar(work / "other", work / "staging", "other", "0.3", seed=3)
    os.replace(added, Path(store) / "other.mar")
    eventually("other.mar loads", lambda: predict(server, "other")[0] == 200, server)
    assert predict(server, "other")[1] == pytest.approx(expected(3), abs=1e-5)

    (Path(store) / "other.mar").unlink()
    eventually("other.mar unloads", lambda: predict(server, "other")[0] == 404, server)
    assert predict(server, "tiny")[0] == 200  # the rest serves on
