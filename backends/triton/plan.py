"""The Triton backend's launch plan: where concat outputs live, the steps, and the loop that runs them.

`layout_concats` decides from the graph, before anything is lowered, which values are written in place into a
concat's output and which concats are mere views of another's (DenseNet's blocks); `lower` then builds each
`Step` once with that decision. A step is one kernel launch (or a view) producing one IR value; `Plan.execute`
runs the steps in order on device tensors, hands a step that writes into a concat its slice of the concat's
output, and releases each value after its last reader.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from ...ir import ops
from ...ir.graph import Graph
from ...kernels.triton import runtime
from ..base import BackendError

Env = dict[str, torch.Tensor]
# kernels that take an output row stride, so they can write straight into a slice of a concat's output
STRIDED_OUT_OPS = ops.with_trait("window") | {"lrn"}
# readers that take a strided view as input: those kernels, channel_affine (an unfolded BN) and concat's copy
STRIDED_IN_OPS = STRIDED_OUT_OPS | {"batch_norm", "concat"}


@dataclass(frozen=True)
class ConcatLayout:
    """Where every concat's output lives; decided from the graph alone (`layout_concats`).

    ``shapes``: concat -> (output shape, axis, each input's size along it). ``into``: value -> (concat, input
    index) whose slice the value's launch writes. ``views``: concat -> (owner, first, end): the concat is the
    slices ``first:end`` of ``owner``'s output, taken without a launch.
    """

    shapes: dict[str, tuple[tuple[int, ...], int, tuple[int, ...]]]
    into: dict[str, tuple[str, int]]
    views: dict[str, tuple[str, int, int]]

    def in_place(self, concat: str, inputs: tuple[str, ...]) -> tuple[bool, ...]:
        """Which of ``concat``'s inputs are written in place (the others its launch copies)."""
        return tuple(self.into.get(v) == (concat, k) for k, v in enumerate(inputs))

def layout_concats(graph: Graph, writers: Mapping[str, str]) -> ConcatLayout:
    """Lay concat outputs out so that producers write into them and concats of concats are views.

    ``writers`` maps each value a kernel launch produces to the IR op of that launch (an activation absorbed
    into its producer's epilogue is written by the producer's launch; values the NumPy fallback computes are
    absent: it returns fresh arrays). Placement, latest concat first: an input written by a strided-output
    kernel, read only by kernels that take strided inputs, goes straight into its slice of the concat's output
    (placed once: the latest concat, which in DenseNet is the block's output, holding every layer's features).
    Aliasing: a concat whose inputs all sit consecutively in another concat's output is a view of it, no launch
    (a DenseNet layer's input is a prefix of its block's output). Whatever is not placed is copied.
    """
    concats = [n for n in graph.nodes if n.op == "concat" and writers.get(n.name) == "concat"]
    shapes, into, views = {}, {}, {}
    for node in concats:
        t = graph.types[node.name]
        axis = node.attrs.axis % t.rank
        shapes[node.name] = (t.shape, axis, tuple(graph.types[i].shape[axis] for i in node.inputs))
    for node in reversed(concats):
        if graph.types[node.name].rank != 4:
            continue
        for k, v in enumerate(node.inputs):
            if (writers.get(v) in STRIDED_OUT_OPS and v not in into and node.inputs.count(v) == 1
                    and v not in graph.outputs and _strided_readers(graph, v)):
                into[v] = (node.name, k)
    for node in concats:
        homes = [into.get(v) for v in node.inputs]
        owners = {h[0] if h else None for h in homes}
        if len(owners) != 1 or None in owners or owners == {node.name} or not _strided_readers(graph, node.name):
            continue
        owner = owners.pop()
        indices = [h[1] for h in homes if h]
        consecutive = indices == list(range(indices[0], indices[0] + len(indices)))
        if consecutive and shapes[owner][1] == shapes[node.name][1]:
            views[node.name] = (owner, indices[0], indices[-1] + 1)
    return ConcatLayout(shapes, into, views)


def _strided_readers(graph: Graph, value: str) -> bool:
    """Whether every reader of ``value`` takes a strided view of it."""
    return all(graph.node_by_name[r].op in STRIDED_IN_OPS for r in graph.users.get(value, ()))


@dataclass(frozen=True)
class Step:
    """One launch: computes ``output`` (``run(env, out)``, ``out`` a preallocated slice of a concat's output
    or None); ``text`` is its line in the plan, ``covers`` the IR nodes it computes, ``into`` the (concat,
    input index) whose slice it writes."""

    output: str
    kernel: str
    run: Callable[[Env, torch.Tensor | None], torch.Tensor]
    text: str
    covers: tuple[str, ...] = ()
    into: tuple[str, int] | None = None


@dataclass(frozen=True)
class Plan:
    """The steps in schedule order, the parameters read as activations (converted once), the concat layout
    (a concat's output is allocated by its first producer that writes in place) and what to release after
    each step."""

    steps: tuple[Step, ...]
    constants: Env
    dtype: torch.dtype
    outputs: tuple[str, ...]
    layout: ConcatLayout
    frees: tuple[tuple[str, ...], ...]

    def lines(self) -> list[str]:
        return [s.text for s in self.steps]

    def execute(self, feed: Env) -> list[torch.Tensor]:
        env: Env = {**self.constants, **feed}
        for step, frees in zip(self.steps, self.frees, strict=True):
            out = None
            if step.into is not None:
                concat, k = step.into
                shape, axis, sizes = self.layout.shapes[concat]
                if concat not in env:
                    env[concat] = torch.empty(shape, dtype=self.dtype, device=runtime.DEVICE)
                out = env[concat].narrow(axis, sum(sizes[:k]), sizes[k])
            try:
                env[step.output] = step.run(env, out)
            except Exception as e:
                raise BackendError(f"triton backend: launch {step.output!r} ({step.kernel}) failed: "
                                   f"{type(e).__name__}: {e}") from e
            for value in frees:
                del env[value]
        return [env[o] for o in self.outputs]
