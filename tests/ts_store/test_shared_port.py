"""One port for both APIs, as TorchServe 0.12 serves them when config.properties gives
inference_address and management_address the same value (KServe's own example does)."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
import torch

from _server import ServerProcess
from ts_archives import build_mar, tiny_weights

pytestmark = pytest.mark.slow
pytest.importorskip("ts.torch_handler.base_handler")

ROW = [1.0, 2.0, 3.0, 4.0]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    work = tmp_path_factory.mktemp("shared")
    store = work / "model-store"
    build_mar(work, store, "tiny", "1.0", seed=5)
    srv = ServerProcess(store, "--model-store", str(store), "--models", "tiny.mar")
    srv.management_port = srv.port  # --management-port = --port: the file's case, as flags
    with srv:
        yield srv


def test_both_apis_answer_on_the_one_port(server: ServerProcess) -> None:
    status, _, body = server.request("POST", "/predictions/tiny", orjson.dumps(ROW),
                                     {"Content-Type": "application/json"})
    w = tiny_weights(5)
    expected = (torch.tensor(ROW) @ w["fc.weight"].T + w["fc.bias"]).tolist()
    assert status == 200 and orjson.loads(body) == pytest.approx(expected, abs=1e-5)
    status, _, body = server.request("GET", "/models")
    assert status == 200 and orjson.loads(body)["models"][0]["modelName"] == "tiny"
    status, _, body = server.request("PUT", "/models/tiny?min_worker=2&synchronous=true")
    assert status == 200, body
    status, _, body = server.request("GET", "/models/tiny")
    assert status == 200 and len(orjson.loads(body)[0]["workers"]) == 2
    # The repository extension's load is the management one here, not the 403 share.
    status, _, body = server.request("POST", "/v2/repository/models/tiny/load")
    assert status == 200, body
    status, _, body = server.request("OPTIONS", "/")  # one document for both, as TorchServe
    assert status == 200 and {"/models", "/predictions/{model}"} <= set(orjson.loads(body)["paths"])
    assert server.request("GET", "/ping")[0] == 200
    assert server.request("GET", "/metrics")[0] == 200
    status, _, body = server.request("GET", "/no/such/route")
    assert status == 404, body
