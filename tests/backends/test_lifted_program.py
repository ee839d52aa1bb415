"""LiftedProgram: an exported graph run with its lifted weights gives the program's answers."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fastserve.backends.lifted_program import LiftedProgram


class Stateful(nn.Module):
    """A parameter, a buffer and a plain tensor attribute (a lifted constant), two outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.register_buffer("shift", torch.arange(3, dtype=torch.float32))
        self.scale = torch.tensor([0.5, 2.0, -1.0])

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.linear(x) * self.scale + self.shift
        return h, h.sum(1) + y


def exported(module: nn.Module, example: tuple[Any, ...]) -> Any:
    return torch.export.export(module.eval(), example)


def test_weights_first_graph_gives_the_programs_answers() -> None:
    x, y = torch.randn(2, 4), torch.randn(2)
    program = exported(Stateful(), (x, y))
    lifted = LiftedProgram.wrap(program, program.module(), "cpu")
    assert isinstance(lifted, LiftedProgram) and lifted._prefix is not None
    with torch.inference_mode():
        got = lifted(x, y)
        want = program.module()(x, y)
    assert isinstance(got, tuple) and len(got) == 2
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=0)


def test_single_output_is_the_tensor_itself() -> None:
    x = torch.randn(3, 4)
    module = nn.Sequential(nn.Linear(4, 2), nn.ReLU())
    program = exported(module, (x,))
    lifted = LiftedProgram.wrap(program, program.module(), "cpu")
    with torch.inference_mode():
        got = lifted(x)
    assert isinstance(got, torch.Tensor)
    with torch.no_grad():
        torch.testing.assert_close(got, module(x), rtol=0, atol=0)


class AddScaled:
    """A graph whose lifted weight sits between the user inputs: forward(a, w, b)."""

    def forward(self, a: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> tuple[Any, ...]:
        return (a * w + b,)


def test_weights_between_inputs_take_the_general_order() -> None:
    w = torch.tensor([2.0, 3.0])
    lifted = LiftedProgram(AddScaled(), [(1, w)], 3, [0], single=True)
    assert lifted._prefix is None
    a, b = torch.tensor([1.0, 1.0]), torch.tensor([10.0, 20.0])
    torch.testing.assert_close(lifted(a, b), a * w + b)
