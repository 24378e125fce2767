"""The numpy backend's arena mode: every activation lives at its planned offset in one preallocated buffer.

The plan (`convbench.ir.passes.plan_memory`) is made for the backend's dtype. At compile time the arena is
allocated once and every value becomes a fixed view into it; a run copies the inputs in, lets each node write
its view, and copies the outputs out (the next call reuses the arena). A view op (flatten, dropout) planned at
its input's offset costs nothing: its output view already shows the input's bytes. relu and add run as ufuncs
with ``out=``, truly in place when the plan shares their buffer; conv2d and linear (fused or not) run their
reference's matmul with ``out=`` the arena view, and the bias, residual and activation in place on it. Every
other op runs its reference and copies the result into its view, which is safe even when the view overlaps an
input: the reference has finished reading first.

The results equal the plain interpreter's bit for bit: the arithmetic is the same, only where it lands differs.
A wrong plan (two live values overlapping) shows up as a different result, which is what the tests check.
An executable in arena mode is not re-entrant: one call at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from ..ir import ops
from ..ir.graph import Graph, Node
from ..ir.interpreter import NodeError
from ..ir.ops._fused import epilogue, split
from ..ir.ops.conv2d import Conv2dAttrs, im2col
from ..ir.passes.memory_plan import MemoryPlan

Step = Callable[[], None]


def _conv_into(attrs: Conv2dAttrs, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, dst: np.ndarray) -> None:
    """conv2d's reference with the matmul writing straight into ``dst`` (same BLAS calls, same bits)."""
    n, (o, cg, kh, kw), g = x.shape[0], w.shape, attrs.groups
    cols, oh, ow = im2col(x, (kh, kw), attrs)
    k = cg * kh * kw
    np.matmul(w.reshape(g, o // g, k), cols.reshape(n, g, k, oh * ow), out=dst.reshape(n, g, o // g, oh * ow))
    if b is not None:
        dst += b.reshape(o, 1, 1)


def _linear_into(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, dst: np.ndarray) -> None:
    np.matmul(x, w.T, out=dst)
    if b is not None:
        dst += b


def _fused(node: Node, args: list[np.ndarray], out: np.ndarray) -> Step:
    """conv/linear into ``out``, then the epilogue in place. When the plan put ``out`` over the residual, the
    conv/linear result goes to a temporary first (the residual must be read before it is overwritten)."""
    a = node.attrs
    x, w, b, r = split(tuple(args), a.bias, a.residual)
    conv = node.op == "fused_conv2d"

    def into(dst: np.ndarray) -> None:
        _conv_into(a.conv, x, w, b, dst) if conv else _linear_into(x, w, b, dst)

    def finish() -> None:
        y = epilogue(out, None, a.activation)
        if y is not out:
            np.copyto(out, y)

    if r is not None and np.shares_memory(out, r):
        def step() -> None:
            tmp = np.empty_like(out)
            into(tmp)
            np.add(tmp, r, out=out)  # tmp + r, as the reference's y += r
            finish()
    else:
        def step() -> None:
            into(out)
            if r is not None:
                np.add(out, r, out=out)
            finish()
    return step


def _step(node: Node, args: list[np.ndarray], out: np.ndarray, view: bool) -> Step | None:
    """A closure that computes ``node`` from ``args`` into ``out`` (all fixed arrays), or None for a view."""
    if view:
        return None
    if node.op == "relu":
        return lambda: np.maximum(args[0], 0, out=out)
    if node.op == "add":
        first, rest = (args[0], args[1]), args[2:]

        def add() -> None:
            np.add(*first, out=out)
            for x in rest:
                np.add(out, x, out=out)

        return add
    if node.op == "conv2d":
        return lambda: _conv_into(node.attrs, args[0], args[1], args[2] if len(args) > 2 else None, out)
    if node.op == "linear":
        return lambda: _linear_into(args[0], args[1], args[2] if len(args) > 2 else None, out)
    if node.op in ("fused_conv2d", "fused_linear"):
        return _fused(node, args, out)
    reference, attrs = ops.get(node.op).reference, node.attrs
    return lambda: np.copyto(out, reference(attrs, *args))


def arena_runner(graph: Graph, weights: Mapping[str, np.ndarray], plan: MemoryPlan, dtype: str
                 ) -> tuple[Callable[[list[np.ndarray]], list[np.ndarray]], np.ndarray]:
    """(run, arena): ``run(inputs) -> outputs`` computing ``graph`` inside ``arena``."""
    arena = np.empty(plan.arena_bytes, dtype=np.uint8)
    types = graph.types
    view: dict[str, np.ndarray] = {
        v: arena[off: off + plan.nbytes[v]].view(dtype).reshape(types[v].shape) for v, off in plan.offsets.items()
    }
    env = {**weights, **view}
    # a view op whose output the plan put at its input's offset has nothing to do; elsewhere it copies
    steps = [(node, _step(node, [env[i] for i in node.inputs], view[node.name],
                          ops.get(node.op).has("view") and plan.offsets[node.name] == plan.offsets[node.inputs[0]]))
             for node in graph.nodes]
    input_names = list(graph.inputs)

    def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
        for name, x in zip(input_names, inputs, strict=True):
            np.copyto(view[name], x, casting="unsafe")
        for node, step in steps:
            if step is None:
                continue
            try:
                step()
            except Exception as e:
                raise NodeError(f"node {node.name!r} ({node.op}) failed in arena mode: "
                                f"{type(e).__name__}: {e}") from e
        return [np.array(env[o], copy=True) for o in graph.outputs]

    return run, arena
