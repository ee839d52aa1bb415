"""Reading a torch model file: which file, its program, and the tensor specs it declares
(a torch.export program keeps them; TorchScript does not)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, InvalidInputError
from ..types import DataType, TensorSpec
from .devices import to_device
from .lifted_program import LiftedProgram
from .model_files import load_exported
from .torch_values import spec_from_value


def model_file(folder: Path, named: str | None) -> Path:
    """model.pt2 (preferred), else model.pt; or config.pbtxt's default_model_filename
    (a .pt2 is a torch.export program, anything else TorchScript, as Triton loads it)."""
    if named is not None:
        if not (folder / named).is_file():
            raise ConfigError(f"no model file {named} in {folder} (default_model_filename "
                              "in config.pbtxt; Triton's PyTorch backend expects model.pt)")
        return folder / named
    for name in ("model.pt2", "model.pt"):
        if (folder / name).exists():
            return folder / name
    raise ConfigError(f"no model file in {folder}: expected model.pt2 (torch.export) "
                      "or model.pt (TorchScript)")


def load_export(path: Path, config: Any, device: str
                ) -> tuple[Any, list[TensorSpec], list[TensorSpec]]:
    """A torch.export program (on ``device``) and the input and output specs it declares."""
    program = load_exported(path)
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    inputs = [spec_from_value(f"input__{i}", placeholders[name].meta["val"])
              for i, name in enumerate(program.graph_signature.user_inputs)]
    out_node = next(n for n in program.graph.nodes if n.op == "output")
    values = [a.meta.get("val") for a in out_node.args[0] if hasattr(a, "meta")]
    outputs = [spec_from_value(f"output__{i}", v) for i, v in enumerate(values)
               if isinstance(v, torch.Tensor)]
    if config.batched:
        static = [spec for spec, name in zip(inputs, program.graph_signature.user_inputs,
                                             strict=True)
                  if not isinstance(placeholders[name].meta["val"].shape[0], torch.SymInt)]
        if static:
            raise ConfigError(
                f"{path.name} was exported with a static batch dimension but max_batch_size "
                f"= {config.max_batch_size}: export with dynamic_shapes={{...: {{0: "
                "torch.export.Dim('batch')}}}, or set max_batch_size = 0")
    if any(s.datatype is DataType.BYTES for s in config.inputs or ()):
        raise ConfigError("a model.pt2 cannot take BYTES inputs; use TorchScript (model.pt) "
                          "with List[str], or an image/handler.py model")
    module = program.module()
    if device.startswith("cuda"):
        module = to_device(module, device, path)
    return LiftedProgram.wrap(program, module, device), inputs, outputs


def forward_arguments(model: Any) -> tuple[list[str], int] | None:
    """A scripted forward's argument names (self excluded) and how many are required."""
    try:
        arguments = model.forward.schema.arguments[1:]
    except (AttributeError, RuntimeError):
        return None
    return [a.name for a in arguments], sum(not a.has_default_value() for a in arguments)


def check_count(forward_args: tuple[list[str], int] | None, sent: int) -> None:
    """A request for an undeclared model.pt must give each of forward's arguments."""
    if forward_args is None:
        return
    names, required = forward_args
    if sent < required:
        raise InvalidInputError(
            f"missing input for argument '{names[sent]}' of the model's forward("
            f"{', '.join(names)}): send one input per argument, in this order")
    if sent > len(names):
        raise InvalidInputError(f"{sent} inputs sent but the model's forward takes "
                                f"{len(names)} ({', '.join(names)})")


def merge_specs(section: str, configured: Any, found: list[TensorSpec], source: str,
                platform: str) -> tuple[TensorSpec, ...]:
    """The config's inputs or outputs, checked against the exported program's (if any)."""
    if configured is None:
        return tuple(found)
    if platform == "pytorch_export" and found:
        if len(configured) != len(found):
            raise ConfigError(f"{source} declares {len(configured)} {section} but the "
                              f"model has {len(found)}")
        for c, f in zip(configured, found, strict=True):
            if c.datatype is not f.datatype:
                raise ConfigError(f"{source}: {section} '{c.name}' is {c.datatype.wire} "
                                  f"but the model's is {f.datatype.wire}")
            if len(c.shape) != len(f.shape):
                raise ConfigError(f"{source}: {section} '{c.name}' has shape "
                                  f"{list(c.shape)} but the model's is {list(f.shape)}")
    return tuple(configured)
