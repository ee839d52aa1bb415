"""Triton's system shared-memory extension, end to end with tritonclient's own utilities."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from _server import ServerProcess

shm = pytest.importorskip("tritonclient.utils.shared_memory")
httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

pytestmark = pytest.mark.slow  # every test here uses a server process of its own

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def server():
    with ServerProcess(EXAMPLES / "models", "--allow-shared-memory") as s:
        yield s


@pytest.fixture
def client(server: ServerProcess):
    c = httpclient.InferenceServerClient(f"127.0.0.1:{server.port}")
    yield c
    c.unregister_system_shared_memory()
    c.close()


def _batch() -> np.ndarray:
    doc = json.loads((EXAMPLES / "samples" / "digits_batch_v2.json").read_text())
    return np.asarray(doc["inputs"][0]["data"], dtype=np.float32).reshape(4, 64)


def _expected(x: np.ndarray) -> np.ndarray:
    program = torch.export.load(str(EXAMPLES / "models" / "digits" / "1" / "model.pt2"))
    with torch.inference_mode():
        return program.module()(torch.from_numpy(x)).numpy()


def test_shm_inputs_and_outputs_round_trip(client) -> None:
    x = _batch()
    in_handle = shm.create_shared_memory_region("in_region", "/fastserve_test_in", x.nbytes)
    out_handle = shm.create_shared_memory_region("out_region", "/fastserve_test_out", 4 * 10 * 4)
    try:
        shm.set_shared_memory_region(in_handle, [x])
        client.register_system_shared_memory("in_region", "/fastserve_test_in", x.nbytes)
        client.register_system_shared_memory("out_region", "/fastserve_test_out", 160)
        status = client.get_system_shared_memory_status()
        assert {r["name"] for r in status} == {"in_region", "out_region"}
        inp = httpclient.InferInput("input__0", [4, 64], "FP32")
        inp.set_shared_memory("in_region", x.nbytes)
        out = httpclient.InferRequestedOutput("output__0")
        out.set_shared_memory("out_region", 160)
        result = client.infer("digits", [inp], outputs=[out])
        meta = result.get_output("output__0")
        assert meta["shape"] == [4, 10] and "data" not in meta
        got = shm.get_contents_as_numpy(out_handle, np.float32, [4, 10])
        np.testing.assert_allclose(got, _expected(x), rtol=1e-5, atol=1e-5)
    finally:
        client.unregister_system_shared_memory()
        shm.destroy_shared_memory_region(in_handle)
        shm.destroy_shared_memory_region(out_handle)


def test_shm_bad_regions_are_400(client) -> None:
    handle = shm.create_shared_memory_region("small", "/fastserve_test_small", 64)
    try:
        with pytest.raises(InferenceServerException, match="does not fit"):
            client.register_system_shared_memory("too_big", "/fastserve_test_small", 128)
        with pytest.raises(InferenceServerException, match="cannot open"):
            client.register_system_shared_memory("missing", "/fastserve_no_such_key", 16)
        client.register_system_shared_memory("small", "/fastserve_test_small", 64)
        with pytest.raises(InferenceServerException, match="already registered"):
            client.register_system_shared_memory("small", "/fastserve_test_small", 64)
        inp = httpclient.InferInput("input__0", [1, 64], "FP32")
        inp.set_shared_memory("small", 256)  # past the end of the region
        with pytest.raises(InferenceServerException, match="past the end"):
            client.infer("digits", [inp])
        inp.set_shared_memory("nope", 256)
        with pytest.raises(InferenceServerException, match="unknown shared memory region"):
            client.infer("digits", [inp])
    finally:
        client.unregister_system_shared_memory()
        shm.destroy_shared_memory_region(handle)


def test_shm_off_without_the_flag_is_403() -> None:
    with ServerProcess(EXAMPLES / "models", wait_ready=False) as server:
        server.wait_until_ready()
        status, _, body = server.request("GET", "/v2/systemsharedmemory/status")
        assert status == 403
        assert b"--allow-shared-memory" in body
