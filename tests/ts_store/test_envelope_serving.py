"""service_envelope=kservev2 (KServe's TorchServe predictors): a v2 infer request for an
archive goes to its handler whole, TorchServe's envelope unwraps it and writes the v2
answer, on /v2/models/m/versions/1.0/infer too. The server runs fastserve's own start
line (--models DIR, plus --ts-config): the .mar beside a model folder serves too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from _server import ServerProcess
from models_factory import build_repository, load_model, model_file
from ts_archives import build_mar, tiny_weights

pytestmark = pytest.mark.slow
pytest.importorskip("ts.torch_handler.request_envelope.kservev2")

ROW = [0.5, -1.0, 2.0, 3.5]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("envelope")
    store = work / "model-store"
    build_mar(work, store, "tiny", "1.0", seed=5)
    build_repository(store, ["versioned"])
    return store


@pytest.fixture(scope="module")
def server(store: Path) -> Iterator[ServerProcess]:
    work = store.parent
    config = work / "config.properties"
    config.write_text("service_envelope=kservev2\n")
    with ServerProcess(store, "--ts-config", str(config)) as srv:
        yield srv


@pytest.mark.parametrize("path", ["/v2/models/tiny/infer", "/v2/models/tiny/versions/1.0/infer"])
def test_v2_request_through_the_kservev2_envelope(server: ServerProcess, path: str) -> None:
    status, answer = server.json("POST", path, {
        "id": "req-7", "inputs": [{"name": "input-0", "shape": [4], "datatype": "FP32",
                                   "data": ROW}]})
    assert status == 200, answer
    assert (answer["id"], answer["model_name"], answer["model_version"]) == (
        "req-7", "tiny", "1.0")
    (output,) = answer["outputs"]
    w = tiny_weights(5)
    want = (torch.tensor(ROW) @ w["fc.weight"].T + w["fc.bias"]).tolist()
    assert output["name"] == "input-0" and output["shape"] == [3]
    assert output["data"] == pytest.approx(want, abs=1e-5)


def test_a_body_the_envelope_cannot_read_fails_alone(server: ServerProcess) -> None:
    status, _, _ = server.request("POST", "/v2/models/tiny/infer", b"not json",
                                  {"Content-Type": "application/json"})
    assert status >= 400
    assert server.request("GET", "/v2/health/live")[0] == 200


def test_the_model_folder_beside_the_archive_serves(server: ServerProcess, store: Path) -> None:
    status, answer = server.json("POST", "/v2/models/versioned/versions/1/infer", {
        "inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]})
    assert status == 200, answer
    model = load_model(model_file(store, "versioned", "1"))
    want = model(torch.tensor([[1.0, 2.0, 3.0]])).ravel().tolist()
    assert answer["outputs"][0]["data"] == pytest.approx(want, abs=1e-6)
