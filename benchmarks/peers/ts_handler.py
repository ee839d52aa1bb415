"""TorchServe handler: the TorchScript model of the .mar, one answer per request.

A request body is a JSON list (TorchServe's worker hands it over decoded) or raw
little-endian FP32 bytes (np.frombuffer); either way it is reshaped to [-1, *shape] with
the sample shape from shape.json in the .mar. The requests of a batch are concatenated,
run in one call, and each gets its own rows back as a JSON list.
"""

import json
import os

import numpy as np
import torch

_model, _shape = None, None


def _tensor(body) -> torch.Tensor:
    if isinstance(body, (bytes, bytearray)):
        x = torch.from_numpy(np.frombuffer(body, dtype="<f4"))
    else:
        x = torch.as_tensor(body, dtype=torch.float32)
    return x.reshape(-1, *_shape)


def handle(data, context):
    global _model, _shape
    if _model is None:
        torch.set_num_threads(1)
        folder = context.system_properties["model_dir"]
        serialized = context.manifest["model"]["serializedFile"]
        _model = torch.jit.load(os.path.join(folder, serialized)).eval()
        with open(os.path.join(folder, "shape.json")) as f:
            _shape = json.load(f)
    if data is None:  # TorchServe's initialisation call
        return None
    xs = [_tensor(row.get("data") if row.get("data") is not None else row.get("body"))
          for row in data]
    with torch.inference_mode():
        y = _model(torch.cat(xs))
    out, start = [], 0
    for x in xs:
        out.append(y[start:start + len(x)].tolist())
        start += len(x)
    return out
