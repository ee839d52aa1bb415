"""A model folder's config.toml: every key of the contract, its default, and its checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from ..errors import ConfigError
from ..types import DataType, TensorSpec

HANDLERS = ("tensor", "image_classifier", "handler.py")
EXPLAINERS = ("integrated_gradients", "saliency", "input_x_gradient")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ImageConfig:
    resize: int = 256
    crop: int = 224
    mode: str = "RGB"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD


@dataclass(frozen=True)
class VersionPolicy:
    """Which version folders serve (Triton's version_policy): ``latest`` (values: (n,)),
    ``all``, or ``specific`` (values: the version numbers)."""

    kind: str = "all"
    values: tuple[int, ...] = ()

    def select(self, versions: Any) -> list[str]:
        """The names among ``versions`` (numeric folder names) this policy serves."""
        names = [v for v in versions if v.isdigit()]
        if self.kind == "latest":
            return sorted(names, key=int)[-self.values[0]:]
        if self.kind == "specific":
            return [v for v in names if int(v) in self.values]
        return names


@dataclass(frozen=True)
class ModelConfig:
    name: str
    max_batch_size: int = 0
    batch_delay_ms: float = 1.0
    instances: int = 1
    device: str = "auto"
    handler: str = "tensor"
    explainer: str = "integrated_gradients"
    warmup: bool = True
    max_queue_size: int = 1024
    timeout_ms: float = 0.0
    image: ImageConfig = field(default_factory=ImageConfig)
    # None: not configured (read off the model, or the contract's defaults).
    inputs: tuple[TensorSpec, ...] | None = None
    outputs: tuple[TensorSpec, ...] | None = None
    # Triton repositories (config.pbtxt): the version's model file, and which versions serve.
    model_filename: str | None = None  # None: model.pt2, else model.pt
    version_policy: VersionPolicy | None = None  # None: every version folder
    # False: Triton's default scheduler (config.pbtxt without dynamic_batching): a
    # request runs alone, with the rows it brings; requests are never merged.
    merge_requests: bool = True
    source: str = "config.toml"  # the file the settings came from (for messages)

    @property
    def batched(self) -> bool:
        return self.max_batch_size > 0


def _expect(table: dict[str, Any], key: str, kinds: tuple[type, ...], default: Any) -> Any:
    if key not in table:
        return default
    value = table[key]
    # bool is an int subclass; never accept it where a number is meant.
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise ConfigError(f"config.toml: '{key}' must be {names}, got {value!r}")
    return value


def _tensor_specs(
    entries: Any, section: str, prefix: str, batched: bool
) -> tuple[TensorSpec, ...]:
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"config.toml: [[{section}]] must be a non-empty array of tables")
    specs = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ConfigError(f"config.toml: [[{section}]] entry {i} must be a table")
        unknown = sorted(set(entry) - {"name", "datatype", "shape"})
        if unknown:
            raise ConfigError(f"config.toml: unknown key(s) in [[{section}]] entry {i}: "
                              f"{', '.join(unknown)}; known keys are datatype, name, shape")
        name = _expect(entry, "name", (str,), f"{prefix}__{i}")
        try:
            dtype = DataType.parse(_expect(entry, "datatype", (str,), "FP32"))
        except ValueError as exc:
            raise ConfigError(f"config.toml: [[{section}]] '{name}': {exc}") from None
        shape = _expect(entry, "shape", (list,), [-1])
        if not all(isinstance(d, int) and not isinstance(d, bool) and (d == -1 or d >= 0)
                   for d in shape):
            raise ConfigError(
                f"config.toml: [[{section}]] '{name}': shape must be a list of sizes "
                f"(>= 0, or -1 for variable), got {shape!r}"
            )
        if batched and (not shape or shape[0] != -1):
            raise ConfigError(
                f"config.toml: [[{section}]] '{name}' has shape {shape} but max_batch_size > 0 "
                "needs the batch dimension first: make the shape start with -1"
            )
        specs.append(TensorSpec(name, dtype, tuple(shape)))
    if len({s.name for s in specs}) != len(specs):
        raise ConfigError(f"config.toml: [[{section}]] names must be unique")
    return tuple(specs)


def parse_model_config(folder: Path) -> ModelConfig:
    """Read ``folder/config.toml`` (absent: all defaults; Triton's config.pbtxt when it is
    there instead, see triton_config). Raises ConfigError."""
    path = folder / "config.toml"
    if not path.exists() and (folder / "config.pbtxt").is_file():
        from .triton_config import parse_triton_config  # protobuf: only for such folders

        return parse_triton_config(folder)
    table: dict[str, Any] = {}
    if path.exists():
        try:
            table = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config.toml is not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"config.toml cannot be read: {exc}") from None
    known = {"name", "max_batch_size", "batch_delay_ms", "instances", "device", "handler",
             "explainer", "warmup", "max_queue_size", "timeout_ms", "image", "inputs",
             "outputs"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"config.toml: unknown key(s) {', '.join(unknown)}; "
                          f"known keys are {', '.join(sorted(known))}")
    name = _expect(table, "name", (str,), folder.name)
    max_batch = _expect(table, "max_batch_size", (int,), 0)
    delay = float(_expect(table, "batch_delay_ms", (int, float), 1.0))
    instances = _expect(table, "instances", (int,), 1)
    device = _expect(table, "device", (str,), "auto")
    handler = _expect(table, "handler", (str,), "tensor")
    explainer = _expect(table, "explainer", (str,), "integrated_gradients")
    queue = _expect(table, "max_queue_size", (int,), 1024)
    timeout = float(_expect(table, "timeout_ms", (int, float), 0.0))
    if not name or "/" in name:
        raise ConfigError(f"config.toml: 'name' must be a non-empty name without '/', got {name!r}")
    if max_batch < 0:
        raise ConfigError(f"config.toml: 'max_batch_size' must be >= 0, got {max_batch}")
    if delay < 0 or timeout < 0:
        raise ConfigError("config.toml: 'batch_delay_ms' and 'timeout_ms' must be >= 0")
    if instances < 1:
        raise ConfigError(f"config.toml: 'instances' must be >= 1, got {instances}")
    if queue < 1:
        raise ConfigError(f"config.toml: 'max_queue_size' must be >= 1, got {queue}")
    if device != "auto" and device != "cpu" and not (
        device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())
    ):
        raise ConfigError(
            f"config.toml: 'device' must be auto, cpu, cuda or cuda:N, got {device!r}")
    if handler not in HANDLERS:
        raise ConfigError(f"config.toml: 'handler' must be one of {', '.join(HANDLERS)}, "
                          f"got {handler!r}")
    if explainer not in EXPLAINERS:
        raise ConfigError(f"config.toml: 'explainer' must be one of {', '.join(EXPLAINERS)}, "
                          f"got {explainer!r}")
    return ModelConfig(
        name=name,
        max_batch_size=max_batch,
        batch_delay_ms=delay,
        instances=instances,
        device=device,
        handler=handler,
        explainer=explainer,
        warmup=_expect(table, "warmup", (bool,), True),
        max_queue_size=queue,
        timeout_ms=timeout,
        image=_image_config(_expect(table, "image", (dict,), {})),
        inputs=_tensor_specs(table["inputs"], "inputs", "input", max_batch > 0)
        if "inputs" in table else None,
        outputs=_tensor_specs(table["outputs"], "outputs", "output", max_batch > 0)
        if "outputs" in table else None,
    )


def _image_config(table: dict[str, Any]) -> ImageConfig:
    unknown = sorted(set(table) - {"resize", "crop", "mode", "mean", "std"})
    if unknown:
        raise ConfigError(f"config.toml: unknown key(s) in [image]: {', '.join(unknown)}")
    mode = _expect(table, "mode", (str,), "RGB")
    if mode not in ("RGB", "L"):
        raise ConfigError(f"config.toml: [image] mode must be \"RGB\" or \"L\", got {mode!r}")
    channels = 3 if mode == "RGB" else 1
    default_mean = IMAGENET_MEAN if channels == 3 else (0.5,)
    default_std = IMAGENET_STD if channels == 3 else (0.5,)
    mean = tuple(_expect(table, "mean", (list,), list(default_mean)))
    std = tuple(_expect(table, "std", (list,), list(default_std)))
    for key, values in (("mean", mean), ("std", std)):
        if len(values) != channels or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
        ):
            raise ConfigError(f"config.toml: [image] {key} needs {channels} numbers for mode "
                              f"{mode}, got {list(values)!r}")
    if any(s == 0 for s in std):
        raise ConfigError("config.toml: [image] std values must not be 0")
    resize = _expect(table, "resize", (int,), 256)
    crop = _expect(table, "crop", (int,), 224)
    if resize < 0 or crop < 0:
        raise ConfigError("config.toml: [image] resize and crop must be >= 0")
    return ImageConfig(resize, crop, mode, tuple(map(float, mean)), tuple(map(float, std)))
