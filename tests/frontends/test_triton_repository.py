"""A model repository laid out for Triton's PyTorch backend serves unchanged (CONTRACT
section 2, Triton model repositories), checked with tritonclient against local torch."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import torch
from torch import nn

from _server import ServerProcess

httpclient = pytest.importorskip("tritonclient.http")
pytestmark = pytest.mark.slow  # one server process for the module


class Linear(nn.Module):
    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class SumDiff(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return a + b, a - b


LINEAR = """name: "linear"
platform: "pytorch_libtorch"
max_batch_size: 8
input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 2 ] } ]
dynamic_batching { max_queue_delay_microseconds: 500 }
instance_group [ { count: 2 kind: KIND_CPU } ]
optimization { input_pinned_memory { enable: true } }
"""
# Listed out of order: Triton binds them to forward by their __N index.
SUMDIFF = """backend: "pytorch"
max_batch_size: 0
default_model_filename: "sumdiff.pt"
input [ { name: "b__1" data_type: TYPE_FP32 dims: [ 3 ] },
        { name: "a__0" data_type: TYPE_FP32 dims: [ 3 ] } ]
output [ { name: "DIFF__1" data_type: TYPE_FP32 dims: [ 3 ] },
         { name: "SUM__0" data_type: TYPE_FP32 dims: [ 3 ] } ]
version_policy: { specific { versions: [ 1, 3 ] } }
"""
ONNX = """platform: "onnxruntime_onnx"
max_batch_size: 4
"""


def _save(module: nn.Module, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(module), str(path))


def build_triton_repository(root: Path) -> None:
    for name, text in (("linear", LINEAR), ("sumdiff", SUMDIFF), ("onnx_model", ONNX)):
        (root / name).mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(text, encoding="utf-8")
    for version in (1, 2):  # Triton's default policy: only the latest serves
        _save(Linear(seed=version), root / "linear" / str(version) / "model.pt")
    for version in (1, 2, 3):
        _save(SumDiff(), root / "sumdiff" / str(version) / "sumdiff.pt")
    (root / "onnx_model" / "1").mkdir()
    (root / "onnx_model" / "1" / "model.onnx").write_bytes(b"not used")


@pytest.fixture(scope="module")
def triton_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("triton") / "models"
    build_triton_repository(root)
    return root


@pytest.fixture(scope="module")
def triton_server(triton_repo: Path) -> Iterator[ServerProcess]:
    with ServerProcess(triton_repo) as server:
        yield server


@pytest.fixture(scope="module")
def client(triton_server: ServerProcess) -> Iterator[Any]:
    c = httpclient.InferenceServerClient(f"127.0.0.1:{triton_server.port}")
    yield c
    c.close()


def _input(name: str, arr: np.ndarray) -> Any:
    inp = httpclient.InferInput(name, list(arr.shape), "FP32")
    inp.set_data_from_numpy(arr)
    return inp


@pytest.mark.parametrize("rows", [3, 11])  # 11 > max_batch_size: split, never refused
def test_batched_model_serves_the_latest_version(client: Any, rows: int) -> None:
    x = np.random.default_rng(rows).standard_normal((rows, 4)).astype(np.float32)
    result = client.infer("linear", [_input("INPUT__0", x)])
    assert result.get_response()["model_version"] == "2"
    with torch.no_grad():
        expected = Linear(seed=2)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(result.as_numpy("OUTPUT__0"), expected, rtol=1e-5, atol=1e-6)


def test_versions_outside_the_policy_are_not_served(triton_server: ServerProcess,
                                                    client: Any) -> None:
    assert client.is_model_ready("linear", "2") and client.is_model_ready("sumdiff", "3")
    for model, version in (("linear", "1"), ("sumdiff", "2")):
        status, _, body = triton_server.request("GET", f"/v2/models/{model}/versions/{version}")
        assert status == 404, body
    assert client.get_model_metadata("sumdiff")["versions"] == ["1", "3"]


def test_inputs_and_outputs_bound_by_their_index(client: Any) -> None:
    a = np.arange(3, dtype=np.float32)
    b = np.full(3, 10.0, dtype=np.float32)
    result = client.infer("sumdiff", [_input("b__1", b), _input("a__0", a)], model_version="1")
    np.testing.assert_array_equal(result.as_numpy("SUM__0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("DIFF__1"), a - b)


def test_model_config_as_triton_reports_it(client: Any, triton_server: ServerProcess) -> None:
    config = client.get_model_config("linear")
    assert config["max_batch_size"] == 8
    assert config["input"][0]["name"] == "INPUT__0" and config["input"][0]["dims"] == [4]
    assert config["input"][0]["data_type"] == "TYPE_FP32"
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 500
    assert config["version_policy"] == {"latest": {"num_versions": 1}}
    sumdiff = client.get_model_config("sumdiff")
    assert sumdiff["version_policy"] == {"specific": {"versions": [1, 3]}}
    assert sumdiff["default_model_filename"] == "sumdiff.pt"
    status, _, body = triton_server.request("GET", "/models/linear",
                                            port=triton_server.management_port)
    (d,) = orjson.loads(body)
    assert (d["minWorkers"], d["device"]) == (2, "cpu")


def test_other_platforms_fail_with_a_message(client: Any, triton_server: ServerProcess
                                             ) -> None:
    assert not client.is_model_ready("onnx_model")
    index = {r["name"]: r for r in client.get_model_repository_index()}
    assert index["onnx_model"]["state"] == "UNAVAILABLE"
    assert "platform 'onnxruntime_onnx'" in index["onnx_model"]["reason"]
    assert client.is_server_ready()  # the others serve
    log = triton_server.log()
    assert "model onnx_model version 1 failed to load: config.pbtxt: platform" in log
    assert "model linear: config.pbtxt field(s) ignored" in log and "optimization" in log
