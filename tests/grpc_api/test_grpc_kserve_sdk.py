"""KServe's Python SDK (InferenceGRPCClient) against fastserve's gRPC port.

kserve's grpc_predict_v2 messages and tritonclient's grpc_service ones share the proto
package ``inference``, so one process cannot import both: the SDK runs in a child.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    importlib.util.find_spec("kserve") is None,
    reason="kserve SDK not installed (pip install --no-deps kserve + its imports)")]

CLIENT = """
import asyncio, json, sys
import numpy as np
from kserve import InferenceGRPCClient, InferInput, InferRequest

async def main(url):
    client = InferenceGRPCClient(url)
    x = np.asarray(json.loads(sys.stdin.read()), dtype=np.float32)
    tensor = InferInput("input__0", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=True)
    answer = await client.infer(InferRequest("digits", [tensor], request_id="k-1"))
    typed = InferInput("input__0", list(x.shape), "FP32", data=x.ravel().tolist())
    answer2 = await client.infer(InferRequest("digits", [typed]))
    print(json.dumps({
        "live": await client.is_server_live(), "ready": await client.is_server_ready(),
        "model_ready": await client.is_model_ready("digits"), "id": answer.id,
        "raw": answer.outputs[0].as_numpy().tolist(),
        "typed": answer2.outputs[0].as_numpy().tolist()}))
    await client.close()

asyncio.run(main(sys.argv[1]))
"""


def test_kserve_inference_grpc_client(grpc_server, local_model) -> None:
    x = np.random.default_rng(5).random((2, 64), dtype=np.float32)
    run = subprocess.run([sys.executable, "-c", CLIENT, grpc_server.url],
                         input=json.dumps(x.tolist()), capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout.strip().splitlines()[-1])
    assert doc["live"] and doc["ready"] and doc["model_ready"] and doc["id"] == "k-1"
    with torch.inference_mode():
        want = local_model("digits")(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(doc["raw"], want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(doc["typed"], want, rtol=1e-5, atol=1e-5)
