"""Triton's model configuration and statistics documents, shared by the HTTP extensions
(frontends/triton.py) and the gRPC service (fastserve/grpc): the JSON follows Triton's
ModelConfig (TYPE_* datatypes, dims without the batch dimension when max_batch_size > 0).
"""

from __future__ import annotations

from typing import Any

from ..core.control import ModelControl
from ..core.dataplane import DataPlane
from ..core.info import VersionStats
from ..types import DataType, TensorSpec


def _triton_type(datatype: DataType) -> str:
    return "TYPE_STRING" if datatype is DataType.BYTES else f"TYPE_{datatype.wire}"


def _dims(spec: TensorSpec, batched: bool) -> list[int]:
    return list(spec.shape[1:] if batched else spec.shape)


def _version_policy(config: Any) -> dict[str, Any]:
    """config.pbtxt's version_policy; a config.toml model serves every version folder."""
    policy = config.version_policy
    if policy is None or policy.kind == "all":
        return {"all": {}}
    if policy.kind == "latest":
        return {"latest": {"num_versions": policy.values[0]}}
    return {"specific": {"versions": list(policy.values)}}


def _duration(count: int, ns: int) -> dict[str, int]:
    return {"count": count, "ns": ns}


class TritonDocs:
    """Builds the documents from the two doors."""

    def __init__(self, dataplane: DataPlane, control: ModelControl) -> None:
        self.dataplane = dataplane
        self.control = control

    def config_doc(self, name: str, version: str | None) -> dict[str, Any]:
        """Triton's ModelConfig of a model as JSON (gRPC parses the same document)."""
        config = self.dataplane.config(name)
        inputs, outputs = self.dataplane.specs(name, version)
        batched = config.batched
        platform = self.dataplane.platform(name, version)
        device = "KIND_GPU" if config.device.startswith("cuda") else "KIND_CPU"
        doc: dict[str, Any] = {
            "name": name,
            "platform": "pytorch_libtorch" if platform == "pytorch_torchscript" else platform,
            "backend": "pytorch",
            "version_policy": _version_policy(config),
            "max_batch_size": config.max_batch_size,
            "input": [{"name": s.name, "data_type": _triton_type(s.datatype),
                       "format": "FORMAT_NONE", "dims": _dims(s, batched),
                       "is_shape_tensor": False, "allow_ragged_batch": False,
                       "optional": False} for s in inputs],
            "output": [{"name": s.name, "data_type": _triton_type(s.datatype),
                        "dims": _dims(s, batched), "label_filename": "",
                        "is_shape_tensor": False} for s in outputs],
            "instance_group": [{"name": name, "kind": device, "count": config.instances,
                                "gpus": [], "profile": [], "passive": False}],
            "default_model_filename": config.model_filename or (
                "model.pt2" if platform == "pytorch_export" else "model.pt"),
            "parameters": {}, "model_warmup": [],
        }
        if batched:
            doc["dynamic_batching"] = {
                "preferred_batch_size": [],
                "max_queue_delay_microseconds": int(config.batch_delay_ms * 1000),
                "preserve_ordering": False,
                "default_queue_policy": {
                    "timeout_action": "REJECT",
                    "default_timeout_microseconds": int(config.timeout_ms * 1000),
                    "allow_timeout_override": False,
                    "max_queue_size": config.max_queue_size,
                },
            }
        return doc

    def stats_doc(self, name: str | None, version: str | None) -> dict[str, Any]:
        """Triton's statistics of every model, one model or one version (gRPC too)."""
        found = self.control.statistics(name, version)
        return {"model_stats": [self._stats(f) for f in found]}

    @staticmethod
    def _stats(found: VersionStats) -> dict[str, Any]:
        s = found.stats
        done = s.success
        input_ns, output_ns = found.input_ns, found.output_ns
        return {
            "name": found.name,
            "version": found.version,
            "last_inference": s.last_inference_ms,
            "inference_count": s.inference_count,
            "execution_count": s.execution_count,
            "inference_stats": {
                "success": _duration(s.success, s.success_ns),
                "fail": _duration(s.fail, s.fail_ns),
                "queue": _duration(done, s.queue_ns),
                "compute_input": _duration(done, input_ns),
                "compute_infer": _duration(done, s.compute_ns),
                "compute_output": _duration(done, output_ns),
                "cache_hit": _duration(0, 0),
                "cache_miss": _duration(0, 0),
            },
            "batch_stats": [
                {"batch_size": size, "compute_input": _duration(b.count, 0),
                 "compute_infer": _duration(b.count, b.compute_ns),
                 "compute_output": _duration(b.count, 0)}
                for size, b in sorted(s.batches.items())
            ],
            "memory_usage": [],
        }
