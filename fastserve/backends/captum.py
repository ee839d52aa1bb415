"""Captum attributions for one request: integrated gradients, saliency, input x gradient.

As TorchServe's ``explain_handle``, outside the batcher: baseline zeros, 50 steps, the
target is the predicted class unless the request names one. Imported on the first
explanation only (importing captum takes seconds).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from captum.attr import InputXGradient, IntegratedGradients, Saliency

from ..errors import InvalidInputError, UnsupportedError

N_STEPS = 50
# Scaled inputs per forward/backward pass (bounds memory: 50 steps of a 224 x 224 image
# at once would be 30 MB of activations per layer input).
INTERNAL_BATCH_SIZE = 16

METHODS: dict[str, Any] = {
    "integrated_gradients": IntegratedGradients,
    "saliency": Saliency,
    "input_x_gradient": InputXGradient,
}


def first_tensor(result: Any) -> torch.Tensor:
    """The model's first output (Captum attributes one output tensor)."""
    if isinstance(result, torch.Tensor):
        return result
    if isinstance(result, dict):
        result = list(result.values())
    if isinstance(result, (tuple, list)) and result and isinstance(result[0], torch.Tensor):
        return result[0]
    raise UnsupportedError("explanations need a model whose (first) output is a tensor")


def predicted_target(output: torch.Tensor) -> Any:
    """Captum's target for the predicted class: per row for [N, C], an index tuple beyond."""
    if output.dim() <= 1:
        return None
    if output.dim() == 2:
        return output.argmax(dim=1)
    flat = output[0].reshape(-1).argmax().item()
    return tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), output.shape[1:]))


def check_target(target: Any, output: torch.Tensor) -> Any:
    classes = tuple(output.shape[1:])
    if not classes:
        raise InvalidInputError("this model has one output value per row: leave 'target' out")
    index = (target,) if isinstance(target, int) else tuple(target)
    if len(index) != len(classes) or not all(0 <= i < n for i, n in zip(index, classes,
                                                                        strict=True)):
        raise InvalidInputError(f"target {target!r} is outside the model's output shape "
                                f"{list(classes)} (per row)")
    return index[0] if len(index) == 1 else index


def attribute(
    model: Callable[..., Any],
    inputs: tuple[torch.Tensor, ...],
    method: str,
    target: Any = None,
    static_batch: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Attributions for ``inputs`` (each [N, ...]), one tensor per input, same shapes.

    Args:
        model: the loaded module; its first output is attributed.
        method: integrated_gradients | saliency | input_x_gradient.
        target: a class index (or index tuple), None for the predicted class.
        static_batch: the model only takes its inputs' own first dimension, so scaled
            inputs go through one example at a time.
    """
    try:
        cls = METHODS[method]
    except KeyError:
        raise UnsupportedError(f"unknown explainer {method!r}; expected one of "
                               f"{', '.join(METHODS)}") from None
    for i, t in enumerate(inputs):
        if not t.is_floating_point():
            raise UnsupportedError(
                f"explanations need floating-point inputs; input {i} is {t.dtype}")

    def forward(*args: torch.Tensor) -> torch.Tensor:
        return first_tensor(model(*args))

    with torch.inference_mode(False), torch.enable_grad():
        # Fresh leaf tensors that own their memory (request buffers may be read-only).
        leaves = tuple(t.detach().clone().requires_grad_() for t in inputs)
        with torch.no_grad():
            output = forward(*leaves)
        chosen = predicted_target(output) if target is None else check_target(target, output)
        explainer = cls(forward)
        if cls is IntegratedGradients:
            rows = leaves[0].shape[0] if leaves[0].dim() else 1
            result = explainer.attribute(
                leaves, baselines=tuple(torch.zeros_like(t) for t in leaves), target=chosen,
                n_steps=N_STEPS, internal_batch_size=rows if static_batch else max(
                    rows, INTERNAL_BATCH_SIZE))
        else:
            result = explainer.attribute(leaves, target=chosen)
    return tuple(a.detach() for a in result)
