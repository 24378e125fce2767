"""The reference interpreter loop (torch.fx's Interpreter, in NumPy).

It runs each node's NumPy reference in schedule order, frees every value after its last reader, and wraps
any failure with the node that raised it. ``hook`` may replace a node's computation (used to calibrate BN
statistics and to route nodes to another backend).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from . import ops
from .errors import IRError
from .graph import Graph, Node

Hook = Callable[[Node, list[np.ndarray]], np.ndarray | None]


class NodeError(IRError):
    """A node failed while running; the message names it and its op, the cause is chained."""


def run(graph: Graph, params: Mapping[str, np.ndarray], inputs: Mapping[str, np.ndarray],
        hook: Hook | None = None, frees: Sequence[Sequence[str]] | None = None) -> list[np.ndarray]:
    env: dict[str, np.ndarray] = {**params, **inputs}
    frees = graph.frees if frees is None else frees
    for step, node in enumerate(graph.nodes):
        args = [env[i] for i in node.inputs]
        try:
            out = hook(node, args) if hook is not None else None
            if out is None:
                out = ops.get(node.op).reference(node.attrs, *args)
        except Exception as e:
            shapes = ", ".join(str(getattr(a, "shape", "?")) for a in args)
            raise NodeError(f"node {node.name!r} ({node.op}) failed on inputs of shape {shapes}: "
                            f"{type(e).__name__}: {e}") from e
        env[node.name] = out
        for value in frees[step]:
            del env[value]
    return [env[o] for o in graph.outputs]
