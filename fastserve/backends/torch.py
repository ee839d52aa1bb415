"""PyTorch backend: torch.export (model.pt2, preferred) and TorchScript (model.pt).

CPU: request arrays become tensors with ``torch.from_numpy`` (no copy). CUDA: each
instance has its own stream and pinned host staging buffers, allocated once and
grown when needed; copies are non_blocking and the stream is synchronised before
outputs are read.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from time import perf_counter_ns
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, InvalidInputError, UnsupportedError
from ..types import DataType, TensorSpec
from .devices import resolve_device, too_large
from .model_files import load_torchscript
from .torch_loading import check_count, forward_arguments, load_export, merge_specs, model_file
from .torch_outputs import OutputNames
from .torch_values import (
    inference_mode,
    inference_on,
    to_numpy,
    to_tensor,
    value_to_array,
)

log = logging.getLogger("fastserve.backends.torch")


# Page-locked staging is what lets a host-to-device copy run asynchronously, overlapping
# another instance's compute; FASTSERVE_CUDA_PINNED=0 turns it off, so the gain can be
# measured (benchmarks/gpu_check.py) and a host short of lockable memory still serves.
PINNED = os.environ.get("FASTSERVE_CUDA_PINNED", "1") != "0"
from_numpy, Tensor, BF16 = torch.from_numpy, torch.Tensor, torch.bfloat16  # the short path's


class TorchBackend:
    """A loaded model version (see backends._base.Backend)."""

    def __init__(self, folder: Path, config: Any, labels: dict[str, str]) -> None:
        self.config = config
        self.labels = labels
        try:
            self.device = resolve_device(config.device)
        except ConfigError as exc:
            if getattr(config, "source", "") != "config.pbtxt":
                raise
            reason = exc.message.split(" but ", 1)[-1].split(";", 1)[0]
            raise ConfigError(f"config.pbtxt: instance_group kind KIND_GPU ({config.device}) "
                              f"but {reason}; use KIND_CPU or KIND_AUTO") from None
        self.cuda = self.device.startswith("cuda")
        self.instance_scope = inference_mode  # each instance thread's (core/instances.py)
        self.declared = True
        self._forward_args: tuple[list[str], int] | None = None  # undeclared model.pt only
        # Per instance (each written by its own thread only): [input ns, output ns]
        self.io_ns = [[0, 0] for _ in range(config.instances)]
        path = model_file(folder, getattr(config, "model_filename", None))
        if path.suffix == ".pt2":
            self.platform = "pytorch_export"
            self.model, model_in, model_out = load_export(path, config, self.device)
        else:
            self.platform = "pytorch_torchscript"
            self.model, model_in, model_out = self._load_torchscript(path)
        # A scripted module's compiled forward, called without nn.Module.__call__'s Python
        # (hooks a served model never has): ~10 us less per call on a small model.
        self._forward = (self.model.forward if isinstance(self.model, torch.jit.ScriptModule)
                         else self.model)
        source = getattr(config, "source", "config.toml")
        self.inputs = merge_specs("inputs", config.inputs, model_in, source, self.platform)
        self.outputs = merge_specs("outputs", config.outputs, model_out, source, self.platform)
        self._names = OutputNames(self.outputs, config.outputs, self.platform)
        # The common case takes a short path in infer(): CPU, declared inputs that are plain
        # numbers (no BYTES, no BF16) and one declared output tensor.
        plain = (DataType.BYTES, DataType.BF16)
        self._plain_inputs = tuple(s.name for s in self.inputs) if self.declared and not (
            self.cuda or any(s.datatype in plain for s in self.inputs)) else None
        self._single_output = self.outputs[0].name if len(self.outputs) == 1 and (
            self.outputs[0].datatype not in plain) else None
        if self.cuda:
            self.pinned = PINNED
            self._streams = [torch.cuda.Stream(self.device) for _ in range(config.instances)]
            self._staging: list[dict[str, torch.Tensor]] = [{} for _ in range(config.instances)]

    # Loading

    def _load_torchscript(self, path: Path) -> tuple[Any, list[TensorSpec], list[TensorSpec]]:
        try:
            model = load_torchscript(path, self.device)
        except torch.OutOfMemoryError as exc:
            raise too_large(path, self.device, exc) from None
        model.eval()
        if self.config.inputs is None:
            self.declared = False
            self._forward_args = forward_arguments(model)
        # TorchScript keeps no shapes: the config says them, else the contract's defaults.
        return model, [TensorSpec("input__0", DataType.FP32, (-1,))], \
            [TensorSpec("output__0", DataType.FP32, (-1,))]

    # Running

    def warmup(self) -> None:
        if not self.declared:
            log.info("model.pt without [[inputs]]: warm-up skipped (no shapes to warm up with)")
            return
        if any(s.datatype is DataType.BYTES for s in self.inputs):
            log.info("model with BYTES inputs: warm-up skipped")
            return
        batch = {}
        for spec in self.inputs:
            shape = tuple(1 if d == -1 else d for d in spec.shape)
            dtype = np.bool_ if spec.datatype is DataType.BOOL else np.dtype(spec.datatype.numpy)
            batch[spec.name] = np.zeros(shape, dtype=dtype)
        try:
            for instance in range(self.config.instances):
                self.infer(batch, instance)
                self.io_ns[instance] = [0, 0]  # requests only, as Triton counts them
        except torch.OutOfMemoryError as exc:
            raise too_large(None, self.device, exc) from None

    def _args(self, inputs: dict[str, Any]) -> list[Any]:
        if self.declared:
            pairs = [(s.name, inputs[s.name], s.datatype) for s in self.inputs]
        else:  # a model.pt without [[inputs]]: whatever was sent, in request order
            pairs = [(n, a, None) for n, a in inputs.items()]
            check_count(self._forward_args, len(pairs))
        args = []
        for name, arr, datatype in pairs:
            if arr.dtype == object:
                try:
                    args.append([b.decode("utf-8") for b in arr.ravel()])
                except UnicodeDecodeError as exc:
                    raise InvalidInputError(
                        f"input '{name}': BYTES element is not UTF-8 ({exc.reason})") from None
                continue
            t = to_tensor(arr)
            if datatype is DataType.BF16:
                t = t.view(torch.bfloat16)
            args.append(t)
        return args

    def infer(self, inputs: dict[str, Any], instance: int) -> dict[str, Any]:
        # io_ns: Triton's compute_input (arrays to tensors) and compute_output (back).
        names = self._plain_inputs
        if names is None:
            return self._infer_general(inputs, instance)
        # Runs per request: module-level names (no torch.X look-ups), and no list
        # comprehension (a frame of its own in 3.11) for the usual single input.
        start = perf_counter_ns()
        if len(names) == 1:
            args: Any = (from_numpy(inputs[names[0]]),)
        else:
            args = [from_numpy(inputs[n]) for n in names]
        ran = perf_counter_ns()
        if inference_on():  # an instance thread (instance_scope)
            result = self._forward(*args)
        else:  # warm-up, on the loading thread
            with inference_mode():
                result = self._forward(*args)
        done = perf_counter_ns()
        single = self._single_output
        # The test OutputNames.arrays makes of each tensor: anything else (on a GPU: a
        # scripted model may move its answer itself) goes through to_numpy there.
        if single is not None and type(result) is Tensor and (
                result.dtype is not BF16 and not result.requires_grad and result.is_cpu):
            outputs = {single: result.numpy()}
        else:
            outputs = self._names.arrays(result)
        io = self.io_ns[instance]
        io[0] += ran - start
        io[1] += perf_counter_ns() - done
        return outputs

    def _infer_general(self, inputs: dict[str, Any], instance: int) -> dict[str, Any]:
        io = self.io_ns[instance]
        start = perf_counter_ns()
        args = self._args(inputs)
        ran = perf_counter_ns()
        with inference_mode():
            if self.cuda:  # the copies run on the instance's stream, with the model
                outputs = self._infer_cuda(args, instance)
                io[0] += ran - start
                return outputs
            result = self._forward(*args)
        done = perf_counter_ns()
        outputs = self._names.arrays(result)
        io[0] += ran - start
        io[1] += perf_counter_ns() - done
        return outputs

    def _infer_cuda(self, args: list[Any], instance: int) -> dict[str, Any]:
        stream = self._streams[instance]
        staging = self._staging[instance]
        with torch.cuda.stream(stream):
            device_args = []
            for i, a in enumerate(args):
                if isinstance(a, torch.Tensor):
                    if self.pinned:
                        pinned = self._pinned(staging, f"in{i}", a)
                        pinned.copy_(a)  # host -> pinned (CPU memcpy)
                        a = pinned.to(self.device, non_blocking=True)
                    else:  # pageable: the copy waits for the device (measurement switch)
                        a = a.to(self.device)
                device_args.append(a)
            result = self._forward(*device_args)
            outputs = self._names.collect(result)
            host = {}
            for name, t in outputs.items():
                if isinstance(t, torch.Tensor) and not self.pinned:
                    host[name] = t.to("cpu")
                elif isinstance(t, torch.Tensor):
                    pinned = self._pinned(staging, f"out{name}", t)
                    pinned.copy_(t, non_blocking=True)
                    host[name] = pinned
                else:
                    host[name] = t
        stream.synchronize()
        out = {}
        for n, t in host.items():
            if not isinstance(t, torch.Tensor):
                out[n] = value_to_array(t)
            elif self.pinned:  # the reused pinned buffers: the next batch overwrites them
                out[n] = to_numpy(t).copy()
            else:  # a fresh host tensor of its own
                out[n] = to_numpy(t)
        return out

    @staticmethod
    def _pinned(staging: dict[str, torch.Tensor], key: str, like: torch.Tensor) -> torch.Tensor:
        """A pinned host buffer shaped like ``like``, reused and grown, never shrunk."""
        buf = staging.get(key)
        n = like.numel()
        if buf is None or buf.dtype != like.dtype or buf.numel() < n:
            buf = torch.empty(max(n, 1), dtype=like.dtype, pin_memory=True)
            staging[key] = buf
        return buf[:n].view(like.shape)

    def explain(self, inputs: dict[str, Any], method: str, target: Any = None
                ) -> dict[str, np.ndarray]:
        """Captum attributions of one request's inputs, by input name, shaped like them.

        Runs with gradients on, on the calling (explanation) thread; ``method`` is the
        config's explainer, ``target`` a class index or None for the predicted class.
        """
        try:  # importing captum takes seconds: first use only
            from . import captum as explainers
        except ImportError as exc:
            raise UnsupportedError(f"explanations need Captum ({exc}); pip install captum"
                                   ) from None

        tensors = []
        for arg in self._args(inputs):
            if not isinstance(arg, torch.Tensor):
                raise UnsupportedError("explanations need tensor inputs; BYTES inputs cannot "
                                       "be attributed")
            tensors.append(arg.to(self.device) if self.cuda else arg)
        names = [s.name for s in self.inputs] if self.declared else list(inputs)
        # A model that does not batch and has a fixed first dimension takes no more rows.
        static = not self.config.batched and any(s.shape[:1] not in ((), (-1,))
                                                 for s in self.inputs)
        attributions = explainers.attribute(self.model, tuple(tensors), method, target, static)
        return {n: to_numpy(a) for n, a in zip(names, attributions, strict=True)}

    def close(self) -> None:
        self.model = self._forward = None


def load(folder: Path, config: Any, labels: dict[str, str]) -> TorchBackend:
    """The BackendLoader the repository calls for every version folder."""
    return TorchBackend(folder, config, labels)
