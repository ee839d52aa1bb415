"""TorchServe-style handler over BaseHandler: JSON rows in, scores out."""

import torch
from ts.torch_handler.base_handler import BaseHandler


class MLPHandler(BaseHandler):
    def preprocess(self, data):
        rows = []
        for row in data:
            value = row.get("data") or row.get("body")
            if isinstance(value, dict):
                value = value["inputs"]
            rows.append(torch.as_tensor(value, dtype=torch.float32))
        return torch.stack(rows)

    def postprocess(self, data):
        return [{"scores": row.tolist(), "label": int(row.argmax())} for row in data]
