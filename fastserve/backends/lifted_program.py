"""An exported program run as its bare graph, its lifted parameters passed in directly."""

from __future__ import annotations

from typing import Any

import torch


class LiftedProgram:
    """Runs an exported program's graph with its lifted parameters passed in directly.

    ``ExportedProgram.module()`` flattens pytrees and checks input guards in Python on
    every call (~0.4 ms for a small MLP, 5x its compute); our own shape checks already ran,
    so the graph is called as ``graph(*params_and_buffers, *inputs)``. Programs with
    state the graph mutates, or inputs of other kinds, keep the module as it is.

    The graph's own ``forward`` is called, not the module: GraphModule's ``__call__``
    (nn.Module's hook dispatch, then fx's error-printing wrapper) costs ~2.5 µs of a
    small MLP's ~15 µs, and this graph has no hooks. When the lifted values all come
    first (what torch.export writes), they are one tuple put before the inputs.
    """

    def __init__(self, graph: Any, lifted: list[tuple[int, Any]], n_args: int,
                 user_outputs: list[int], single: bool) -> None:
        self.graph = graph
        self.lifted = lifted
        self.n_args = n_args
        self.user_outputs = user_outputs
        self.single = single
        self._run = graph.forward
        self._every = user_outputs == list(range(len(user_outputs)))
        first = [i for i, _ in lifted] == list(range(len(lifted)))
        self._prefix = tuple(v for _, v in lifted) if first else None

    @classmethod
    def wrap(cls, program: Any, module: Any, device: str) -> Any:
        from torch.export.graph_signature import InputKind, OutputKind

        sig = program.graph_signature
        values = {**program.state_dict, **program.constants}
        lifted = []
        for i, spec in enumerate(sig.input_specs):
            if spec.kind is InputKind.USER_INPUT:
                continue
            if spec.kind not in (InputKind.PARAMETER, InputKind.BUFFER,
                                 InputKind.CONSTANT_TENSOR) or spec.target not in values:
                return module
            value = values[spec.target]
            lifted.append((i, value.to(device) if isinstance(value, torch.Tensor) else value))
        kinds = [spec.kind for spec in sig.output_specs]
        if any(k is not OutputKind.USER_OUTPUT for k in kinds):
            return module
        out_tree = program.call_spec.out_spec
        single = out_tree is not None and out_tree.num_leaves == 1 and \
            out_tree.type not in (tuple, list, dict)
        if out_tree is not None and out_tree.type is dict:
            return module  # keep the names a dict output carries
        return cls(program.graph_module, lifted, len(sig.input_specs),
                   list(range(len(kinds))), single)

    def __call__(self, *inputs: Any) -> Any:
        if self._prefix is not None and len(self._prefix) + len(inputs) == self.n_args:
            out = self._run(*self._prefix, *inputs)
        else:
            args: list[Any] = [None] * self.n_args
            for i, value in self.lifted:
                args[i] = value
            it = iter(inputs)
            for i in range(self.n_args):
                if args[i] is None:
                    args[i] = next(it)
            out = self._run(*args)
        if self.single:
            return out[0]
        if self._every and len(out) == len(self.user_outputs):
            return tuple(out)
        return tuple(out[i] for i in self.user_outputs)

    def parameters(self) -> Any:
        return (v for _, v in self.lifted if isinstance(v, torch.Tensor) and v.requires_grad)
