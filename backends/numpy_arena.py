"""The numpy backend's arena mode: every activation lives at its planned offset in one preallocated buffer.

The plan (`convbench.ir.passes.plan_memory`) is made for the backend's dtype. At compile time the arena is
allocated once and every value becomes a fixed view into it; a run copies the inputs in, lets each node write
its view, and copies the outputs out (the next call reuses the arena). A view op (flatten, dropout) planned at
its input's offset costs nothing: its output view already shows the input's bytes. relu and add run as ufuncs
with ``out=``, truly in place when the plan shares their buffer; every other op runs its reference and copies
the result into its view, which is safe even when the view overlaps an input: the reference has finished
reading first.

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
from ..ir.passes.memory_plan import VIEW_OPS, MemoryPlan

Step = Callable[[], None]


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
                          node.op in VIEW_OPS and plan.offsets[node.name] == plan.offsets[node.inputs[0]]))
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
