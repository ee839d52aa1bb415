"""A custom batch handler (no BaseHandler): the whole batch in one model call."""

import json
import os

import torch


class BatchHandler:
    def __init__(self):
        self.model = None
        self.initialized = False

    def initialize(self, context):
        props = context.system_properties
        path = os.path.join(props["model_dir"], context.manifest["model"]["serializedFile"])
        self.model = torch.jit.load(path, map_location="cpu")
        self.model.eval()
        self.scale = float(context.model_yaml_config.get("handler", {}).get("scale", 1.0))
        self.batches = context.metrics.add_metric_to_cache("BatchesSeen", "count")
        self.initialized = True

    def handle(self, data, context):
        rows = []
        for row in data:
            value = row.get("data") or row.get("body")
            if isinstance(value, (bytes, bytearray, str)):
                value = json.loads(value)
            rows.append(torch.as_tensor(value, dtype=torch.float32))
        with torch.inference_mode():
            out = self.model(torch.stack(rows)) * self.scale
        self.batches.add_or_update(1, [])
        context.metrics.add_counter("RowsSeen", len(rows))
        return [{"sum": float(o.sum()), "values": o.tolist()} for o in out]
