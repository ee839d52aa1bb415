"""Triton model repositories: a model folder's ``config.pbtxt`` as Triton's PyTorch
backend reads it, mapped onto ``ModelConfig`` (CONTRACT section 2).

The text is parsed by protobuf's text format into Triton's own ``ModelConfig`` message
(tritonclient ships the generated module), so every field Triton knows parses exactly
as Triton parses it; what fastserve cannot honour safely FAILS the model with a message,
and what it can leave aside is logged once as ignored.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from ..errors import ConfigError
from ..types import DataType, TensorSpec
from .model_config import ModelConfig, VersionPolicy

log = logging.getLogger("fastserve.repository")

CONFIG_FILE = "config.pbtxt"
PLATFORM, BACKEND = "pytorch_libtorch", "pytorch"
DEFAULT_FILENAME = "model.pt"  # Triton's PyTorch backend: a TorchScript file
MAX_QUEUE_SIZE = 1024  # Triton's 0 (no limit) becomes config.toml's default

DATATYPES = {
    pb.TYPE_BOOL: DataType.BOOL, pb.TYPE_UINT8: DataType.UINT8,
    pb.TYPE_UINT16: DataType.UINT16, pb.TYPE_UINT32: DataType.UINT32,
    pb.TYPE_UINT64: DataType.UINT64, pb.TYPE_INT8: DataType.INT8,
    pb.TYPE_INT16: DataType.INT16, pb.TYPE_INT32: DataType.INT32,
    pb.TYPE_INT64: DataType.INT64, pb.TYPE_FP16: DataType.FP16, pb.TYPE_FP32: DataType.FP32,
    pb.TYPE_FP64: DataType.FP64, pb.TYPE_STRING: DataType.BYTES, pb.TYPE_BF16: DataType.BF16,
}
# Fields that change what the model computes or how requests relate: never ignored.
UNSAFE = {"sequence_batching": "stateful sequence batching",
          "ensemble_scheduling": "ensembles", "batch_input": "batch inputs",
          "batch_output": "batch outputs"}
HONOURED = {"name", "platform", "backend", "default_model_filename", "max_batch_size", "input",
            "output", "dynamic_batching", "instance_group", "version_policy"}
HONOURED_TENSOR = {"name", "data_type", "dims"}
HONOURED_BATCHING = {"max_queue_delay_microseconds", "default_queue_policy"}
HONOURED_GROUP = {"count", "kind", "gpus", "name"}

_logged: set[tuple[Path, tuple[str, ...]]] = set()  # "logged once": per folder and fields



def read(folder: Path) -> Any:
    """``folder/config.pbtxt`` as Triton's ModelConfig message. Raises ConfigError."""
    try:
        text = (folder / CONFIG_FILE).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{CONFIG_FILE} cannot be read: {exc}") from None
    try:
        return text_format.Parse(text, pb.ModelConfig())
    except text_format.ParseError as exc:
        raise ConfigError(f"{CONFIG_FILE} is not a valid Triton model configuration: "
                          f"{exc}") from None


def parse_triton_config(folder: Path) -> ModelConfig:
    """The ModelConfig that ``folder/config.pbtxt`` describes. Raises ConfigError."""
    msg = read(folder)
    if msg.name and msg.name != folder.name:
        raise ConfigError(f"{CONFIG_FILE}: name '{msg.name}' must match the model folder's "
                          f"name '{folder.name}' (as Triton requires)")
    _check_platform(msg)
    for field, what in UNSAFE.items():
        value = getattr(msg, field)
        if len(value) if field.startswith("batch_") else msg.HasField(field):
            raise ConfigError(f"{CONFIG_FILE}: {field} ({what}) cannot be honoured by "
                              "fastserve; serve this model with Triton")
    if msg.model_transaction_policy.decoupled:
        raise ConfigError(f"{CONFIG_FILE}: decoupled models (several responses per request) "
                          "cannot be honoured by fastserve")
    filename = msg.default_model_filename or DEFAULT_FILENAME
    if "/" in filename or filename in (".", ".."):
        raise ConfigError(f"{CONFIG_FILE}: default_model_filename must be a file name in the "
                          f"version folder, got {filename!r}")
    if msg.max_batch_size < 0:
        raise ConfigError(f"{CONFIG_FILE}: max_batch_size must be >= 0, got "
                          f"{msg.max_batch_size}")
    batched = msg.max_batch_size > 0
    delay_ms, queue, timeout_ms = _batching(msg)
    instances, device = _instances(msg)
    _log_ignored(folder, msg)
    return ModelConfig(
        name=folder.name, max_batch_size=msg.max_batch_size, batch_delay_ms=delay_ms,
        instances=instances, device=device, max_queue_size=queue, timeout_ms=timeout_ms,
        inputs=_tensors(msg.input, "input", batched) if len(msg.input) else None,
        outputs=_tensors(msg.output, "output", batched) if len(msg.output) else None,
        model_filename=filename, version_policy=_version_policy(msg),
        merge_requests=msg.HasField("dynamic_batching"), source=CONFIG_FILE)


def _check_platform(msg: Any) -> None:
    platform, backend = msg.platform, msg.backend
    if platform in ("", PLATFORM) and backend in ("", BACKEND) and (platform or backend):
        return
    if not platform and not backend:
        raise ConfigError(f"{CONFIG_FILE} names no platform: set platform: \"{PLATFORM}\" "
                          f"(or backend: \"{BACKEND}\") for a TorchScript model")
    raise ConfigError(f"{CONFIG_FILE}: platform {platform!r} / backend {backend!r} cannot be "
                      f"served by fastserve, which runs PyTorch models only (platform "
                      f"\"{PLATFORM}\" or backend \"{BACKEND}\")")


def _tensors(entries: Any, section: str, batched: bool) -> tuple[TensorSpec, ...]:
    """Triton's inputs/outputs in the order forward takes or returns them: by the
    ``__N`` index of their names when every name has one, else as listed."""
    specs = []
    for entry in entries:
        if entry.data_type not in DATATYPES:
            raise ConfigError(f"{CONFIG_FILE}: {section} '{entry.name}' has data_type "
                              f"{pb.DataType.Name(entry.data_type)}, which fastserve cannot "
                              "serve")
        if section == "input" and entry.HasField("reshape"):
            raise ConfigError(f"{CONFIG_FILE}: input '{entry.name}' uses reshape, which "
                              "fastserve cannot honour; give dims as the model takes them")
        dims = tuple(int(d) for d in entry.dims)
        if any(d < -1 for d in dims):
            raise ConfigError(f"{CONFIG_FILE}: {section} '{entry.name}' has dims "
                              f"{list(dims)}: sizes are >= 0, or -1 for variable")
        specs.append(TensorSpec(entry.name, DATATYPES[entry.data_type],
                                ((-1,) if batched else ()) + dims))
    if len({s.name for s in specs}) != len(specs):
        raise ConfigError(f"{CONFIG_FILE}: {section} names must be unique")
    indices = [_index(s.name) for s in specs]
    if all(i is not None for i in indices):
        if len(set(indices)) != len(indices):
            raise ConfigError(f"{CONFIG_FILE}: two {section}s have the same __N index")
        specs = [s for _, s in sorted(zip(indices, specs, strict=True), key=lambda p: p[0])]
    return tuple(specs)


def _index(name: str) -> int | None:
    head, sep, tail = name.rpartition("__")
    return int(tail) if sep and head and tail.isdigit() else None


def _batching(msg: Any) -> tuple[float, int, float]:
    """(batch_delay_ms, max_queue_size, timeout_ms). Without dynamic_batching Triton runs
    each request as it comes: no wait to fill a batch."""
    if not msg.HasField("dynamic_batching"):
        return 0.0, MAX_QUEUE_SIZE, 0.0
    dyn = msg.dynamic_batching
    policy = dyn.default_queue_policy
    queue = policy.max_queue_size or MAX_QUEUE_SIZE
    return dyn.max_queue_delay_microseconds / 1000, queue, \
        policy.default_timeout_microseconds / 1000


def _instances(msg: Any) -> tuple[int, str]:
    """instance_group: the instances of every group; KIND_GPU runs on CUDA (its first
    listed GPU), KIND_CPU on the CPU, KIND_AUTO/MODEL wherever --device says."""
    groups = list(msg.instance_group)
    if not groups:
        return 1, "auto"
    kinds = {g.kind for g in groups}
    if len(kinds) > 1:
        raise ConfigError(f"{CONFIG_FILE}: instance groups of different kinds cannot be "
                          "honoured (fastserve runs a model version on one device)")
    kind = kinds.pop()
    count = sum(g.count or 1 for g in groups)
    if kind == pb.ModelInstanceGroup.KIND_CPU:
        return count, "cpu"
    if kind == pb.ModelInstanceGroup.KIND_GPU:
        gpus = [gpu for g in groups for gpu in g.gpus]
        return count, f"cuda:{gpus[0]}" if gpus else "cuda"
    if kind in (pb.ModelInstanceGroup.KIND_AUTO, pb.ModelInstanceGroup.KIND_MODEL):
        return count, "auto"
    raise ConfigError(f"{CONFIG_FILE}: instance_group kind "
                      f"{pb.ModelInstanceGroup.Kind.Name(kind)} cannot be honoured")


def _version_policy(msg: Any) -> VersionPolicy:
    which = msg.version_policy.WhichOneof("policy_choice")
    if which == "all":
        return VersionPolicy("all")
    if which == "specific":
        versions = tuple(int(v) for v in msg.version_policy.specific.versions)
        if not versions:
            raise ConfigError(f"{CONFIG_FILE}: version_policy specific lists no versions")
        return VersionPolicy("specific", versions)
    count = msg.version_policy.latest.num_versions if which == "latest" else 1
    if count < 1:
        raise ConfigError(f"{CONFIG_FILE}: version_policy latest needs num_versions >= 1")
    return VersionPolicy("latest", (count,))


def _log_ignored(folder: Path, msg: Any) -> None:
    ignored = [f.name for f, _ in msg.ListFields() if f.name not in HONOURED]
    for section, known in (("dynamic_batching", HONOURED_BATCHING),):
        if msg.HasField(section):
            ignored += [f"{section}.{f.name}" for f, _ in getattr(msg, section).ListFields()
                        if f.name not in known]
    for kind, tensors in (("input", msg.input), ("output", msg.output)):
        for t in tensors:
            ignored += [f"{kind}[{t.name}].{f.name}" for f, _ in t.ListFields()
                        if f.name not in HONOURED_TENSOR]
    for g in msg.instance_group:
        ignored += [f"instance_group.{f.name}" for f, _ in g.ListFields()
                    if f.name not in HONOURED_GROUP]
    key = (folder, tuple(sorted(set(ignored))))
    if ignored and key not in _logged:
        _logged.add(key)
        log.info("model %s: %s field(s) ignored (fastserve has no use for them): %s",
                 folder.name, CONFIG_FILE, ", ".join(key[1]))
