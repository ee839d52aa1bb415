"""A real server on a TorchServe model store holding broken archives beside working
models: each broken one is FAILED with its reason in the log and every status API, the
rest serves, the server stays up; the register call's URL rules (CONTRACT section 7);
config.properties from TS_CONFIG_FILE, with service_envelope=kserve (KServe v1)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest

from _server import ServerProcess, free_port
from models_factory import build_repository, load_model, model_file
from ts_archives import build_mar, hostile_archives, tiny_weights

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("ts") / "model-store"
    build_repository(root, ["versioned"])
    build_mar(root.parent, root, "tiny", "1.0", seed=7)
    return root, hostile_archives(root)


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def server(store: tuple[Path, dict[str, str]], metrics_port: int) -> Iterator[ServerProcess]:
    root, _ = store
    config = root.parent / "config.properties"
    config.write_text(f"metrics_address=http://127.0.0.1:{metrics_port}\n"
                      "number_of_netty_threads=4\njob_queue_size=50\nload_models=all\n"
                      "service_envelope=kserve\n")
    with ServerProcess(root, "--model-store", str(root), "--max-archive-size", "1MB", "--ncs",
                       env={"TS_CONFIG_FILE": str(config)}) as srv:
        yield srv


def test_config_file_from_ts_config_file(server, metrics_port) -> None:
    """TS_CONFIG_FILE names the config: its metrics port serves /metrics, its unknown key
    is logged once, load_models=all loaded the store."""
    status, headers, body = server.request("GET", "/metrics", port=metrics_port)
    assert status == 200 and b"fastserve_model_state" in body
    assert server.log_path.read_text().count("number_of_netty_threads") == 1
    status, described = mgmt(server, "GET", "/models/versioned")
    assert status == 200 and described[0]["jobQueueSize"] == 1024  # a folder model: its own


def mgmt(server: ServerProcess, method: str, path: str) -> tuple[int, object]:
    status, _, raw = server.request(method, path, port=server.management_port)
    return status, orjson.loads(raw)


def test_broken_archives_fail_with_their_reason_everywhere(server, store) -> None:
    _, expected = store
    status, index = server.json("POST", "/v2/repository/index", {},
                                port=server.management_port)
    assert status == 200
    rows = {row["name"]: row for row in index}
    for name, words in expected.items():
        assert rows[name]["state"] == "UNAVAILABLE" and words in rows[name]["reason"], name
        status, described = mgmt(server, "GET", f"/models/{name}")
        assert status == 200 and described[0]["status"] == "FAILED", name
        assert words in described[0]["error"], described
        status, _, body = server.request("GET", f"/v2/models/{name}/ready")
        assert status != 200, name
        status, _, body = server.request("POST", f"/predictions/{name}", b"{}",
                                         {"Content-Type": "application/json"})
        assert status == 503 and words in orjson.loads(body)["message"], (name, body)
        assert words in server.log() or words in server.log_path.read_text(), name
    # The manifest named a version: it is listed, FAILED, on the metrics too.
    status, _, metrics = server.request("GET", "/metrics")
    assert 'model="slip",state="FAILED",version="1.0"} 1.0' in metrics.decode()


def test_the_working_model_serves_beside_them(server, store) -> None:
    root, _ = store
    x = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    status, answer = server.json("POST", "/v2/models/versioned/versions/2/infer", {
        "inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": x.ravel().tolist()}]})
    assert status == 200, answer
    import torch

    expected = load_model(model_file(root, "versioned", "2"))(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(answer["outputs"][0]["data"], expected.ravel(), rtol=1e-6)
    assert server.request("GET", "/v2/health/live")[0] == 200


def test_nothing_was_written_outside(server, store) -> None:
    root, _ = store
    assert not (root.parent / "escaped.py").exists()
    assert not (root.parent.parent / "escaped.py").exists()
    assert not Path("/tmp/fastserve-absolute-escape.py").exists()


@pytest.mark.parametrize("url, status, words", [
    ("https://example.com/mnist.mar", 400, "fastserve downloads nothing"),
    ("http://127.0.0.1:1/mnist.mar", 400, "fastserve downloads nothing"),
    ("../mnist.mar", 400, "outside the model repository"),
    ("/etc/passwd", 400, "outside the model repository"),
    ("missing.mar", 404, "no model archive 'missing.mar'"),
])
def test_register_refuses_urls_outside_the_store(server, url, status, words) -> None:
    got, body = mgmt(server, "POST", f"/models?url={url}&initial_workers=1")
    assert got == status and words in body["error"], body


def test_register_a_broken_archive_answers_500_naming_it(server) -> None:
    status, body = mgmt(server, "DELETE", "/models/slip")
    assert status == 200, body
    status, body = mgmt(server, "POST", "/models?url=slip.mar&model_name=slip2&batch_size=2"
                                        "&max_batch_delay=5&response_timeout=3")
    assert status == 500 and "zip-slip" in body["error"], body
    status, described = mgmt(server, "GET", "/models/slip2")
    assert status == 200 and described[0]["status"] == "FAILED"


def test_kserve_v1_request_through_the_kserve_envelope(server) -> None:
    rows = [[1.0, 2.0, 3.0, 4.0], [-1.0, 0.5, 0.0, 2.0]]
    status, answer = server.json("POST", "/v1/models/tiny/versions/1.0:predict",
                                 {"instances": [{"data": row} for row in rows]})
    assert status == 200, answer
    import torch

    w = tiny_weights(7)
    want = (torch.tensor(rows) @ w["fc.weight"].T + w["fc.bias"]).tolist()
    assert len(answer["predictions"]) == 2
    for got, expected in zip(answer["predictions"], want, strict=True):
        assert got == pytest.approx(expected, abs=1e-5)
    status, (described,) = mgmt(server, "GET", "/models/tiny")
    assert described["jobQueueSize"] == 50  # config.properties job_queue_size
