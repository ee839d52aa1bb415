"""Archives made by the real torch-model-archiver, served from a model store: version
strings on every API, model-config.yaml settings, and TorchServe's management calls
(register with its parameters, a second version, set-default, scale, unregister)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import torch

from _server import ServerProcess
from ts_archives import build_mar, tiny_weights

pytestmark = pytest.mark.slow
pytest.importorskip("ts.torch_handler.base_handler")
pytest.importorskip("fastserve.backends.ts_handler")  # the handler runtime (issue 15 part 2)

YAML = "minWorkers: 2\nbatchSize: 4\nmaxBatchDelay: 5\nresponseTimeout: 30\n"
ROW = [1.0, 2.0, 3.0, 4.0]


def expected(seed: int, row: list[float]) -> list[float]:
    w = tiny_weights(seed)
    return (torch.tensor(row) @ w["fc.weight"].T + w["fc.bias"]).tolist()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("archives")
    root = work / "model-store"
    build_mar(work, root, "tiny", "1.0", config_yaml=YAML, seed=1)
    build_mar(work, work / "v2", "tiny", "2.0", seed=2)
    (work / "v2" / "tiny.mar").rename(root / "tiny_v2.mar")
    build_mar(work, root, "plain", "0.5", fmt="no-archive", seed=3)
    build_mar(work, root, "packed", "0.7", fmt="tgz", seed=4)  # packed.tar.gz
    return root


@pytest.fixture(scope="module")
def server(store: Path) -> Iterator[ServerProcess]:
    with ServerProcess(store, "--model-store", str(store), "--models", "tiny.mar",
                       "tiny_v2.mar,plain", "packed.tar.gz", "--ncs") as srv:
        yield srv


def predict(server: ServerProcess, path: str, row: list[float] = ROW) -> tuple[int, object]:
    status, _, body = server.request("POST", path, orjson.dumps(row),
                                     {"Content-Type": "application/json"})
    return status, orjson.loads(body)


def mgmt(server: ServerProcess, method: str, path: str) -> tuple[int, object]:
    status, _, body = server.request(method, path, port=server.management_port)
    return status, orjson.loads(body)


def test_predictions_by_version_string(server: ServerProcess) -> None:
    for path, seed in (("/predictions/tiny/1.0", 1), ("/predictions/tiny/2.0", 2),
                       ("/predictions/tiny", 2)):  # the highest version is the default
        status, answer = predict(server, path)
        assert status == 200, answer
        assert answer == pytest.approx(expected(seed, ROW), abs=1e-5), path
    status, answer = predict(server, "/predictions/plain/0.5")
    assert status == 200 and answer == pytest.approx(expected(3, ROW), abs=1e-5)
    assert server.request("GET", "/v2/models/tiny/versions/1.0/ready")[0] == 200
    assert server.request("GET", "/v2/models/tiny/versions/9.9/ready")[0] == 404
    status, answer = predict(server, "/predictions/tiny/9.9")
    assert status == 404, answer


def test_a_tgz_archive_serves_like_a_mar(server: ServerProcess) -> None:
    status, answer = predict(server, "/predictions/packed/0.7")
    assert status == 200 and answer == pytest.approx(expected(4, ROW), abs=1e-5)
    status, (described,) = mgmt(server, "GET", "/models/packed")
    assert (status, described["modelVersion"], described["modelUrl"]) == (
        200, "0.7", "packed.tar.gz")


def test_model_config_yaml_is_honoured(server: ServerProcess) -> None:
    status, (described,) = mgmt(server, "GET", "/models/tiny/1.0")
    assert status == 200
    assert (described["modelVersion"], described["modelUrl"]) == ("1.0", "tiny.mar")
    assert (described["minWorkers"], described["batchSize"], described["maxBatchDelay"]) == (
        2, 4, 5)
    assert len(described["workers"]) == 2
    # The other archive of the model keeps its own settings (it has no model-config.yaml).
    status, (other,) = mgmt(server, "GET", "/models/tiny/2.0")
    assert (other["modelUrl"], other["minWorkers"], other["batchSize"]) == ("tiny_v2.mar", 1, 1)


def test_register_versions_set_default_scale_unregister(server: ServerProcess) -> None:
    # A second archive of the model adds version 2.0 (TorchServe's register call).
    assert mgmt(server, "DELETE", "/models/tiny/2.0")[0] == 200
    status, body = mgmt(server, "POST", "/models?url=tiny_v2.mar&batch_size=2"
                                        "&max_batch_delay=10&initial_workers=1"
                                        "&response_timeout=20&synchronous=true")
    assert status == 200 and "2.0" in body["status"], body
    status, answer = predict(server, "/predictions/tiny/2.0")
    assert status == 200 and answer == pytest.approx(expected(2, ROW), abs=1e-5)
    status, answer = predict(server, "/predictions/tiny")  # the highest is the default
    assert answer == pytest.approx(expected(2, ROW), abs=1e-5)
    status, (v2,) = mgmt(server, "GET", "/models/tiny/2.0")
    assert (v2["batchSize"], v2["maxBatchDelay"], v2["minWorkers"]) == (2, 10, 1)
    status, body = mgmt(server, "PUT", "/models/tiny/1.0/set-default")
    assert status == 200, body
    status, answer = predict(server, "/predictions/tiny")
    assert answer == pytest.approx(expected(1, ROW), abs=1e-5)
    status, body = mgmt(server, "PUT", "/models/tiny/1.0?min_worker=3")
    assert status == 200, body
    status, (v1,) = mgmt(server, "GET", "/models/tiny/1.0")
    assert len(v1["workers"]) == 3
    status, body = mgmt(server, "DELETE", "/models/tiny/2.0")
    assert status == 200, body
    assert predict(server, "/predictions/tiny/2.0")[0] == 404
    # Unregister, then register again under another name with TorchServe's parameters.
    assert mgmt(server, "DELETE", "/models/tiny")[0] == 200
    status, body = mgmt(server, "POST", "/models?url=tiny.mar&model_name=renamed&batch_size=8"
                                        "&initial_workers=1")
    assert status == 200 and "renamed" in body["status"], body
    status, answer = predict(server, "/predictions/renamed/1.0")
    assert status == 200 and answer == pytest.approx(expected(1, ROW), abs=1e-5)
    assert mgmt(server, "POST", "/models?url=tiny.mar&model_name=renamed")[0] == 409


def test_version_strings_on_the_other_apis(server: ServerProcess) -> None:
    for path in ("/v2/models/plain/versions/0.5", "/v2/models/plain/versions/0.5/ready",
                 "/v1/models/plain/versions/0.5", "/v1/models/plain/versions/0.5/metadata"):
        assert server.request("GET", path)[0] == 200, path
    status, answer = server.json("POST", "/v1/models/plain/versions/0.5:predict",
                                 {"instances": [ROW]})
    assert status == 200 and answer["predictions"][0] == pytest.approx(expected(3, ROW),
                                                                        abs=1e-5)
    # v2 infer without an envelope: the body reaches the handler whole, as in TorchServe
    # (this handler reads {"body": ...}: a JSON list is a row).
    status, answer = predict(server, "/v2/models/plain/versions/0.5/infer")
    assert status == 200 and answer == pytest.approx(expected(3, ROW), abs=1e-5)


def test_v2_repository_unload_and_load_an_archive(server: ServerProcess) -> None:
    status, body = server.json("POST", "/v2/repository/models/plain/unload", {},
                               port=server.management_port)
    assert status == 200, body
    assert predict(server, "/predictions/plain")[0] == 404
    status, index = server.json("POST", "/v2/repository/index", {},
                                port=server.management_port)
    assert {"name": "plain", "state": "UNAVAILABLE", "reason": "unloaded"} in index
    status, body = server.json("POST", "/v2/repository/models/plain/load", {},
                               port=server.management_port)
    assert status == 200, body
    status, answer = predict(server, "/predictions/plain/0.5")
    assert status == 200 and answer == pytest.approx(expected(3, ROW), abs=1e-5)
