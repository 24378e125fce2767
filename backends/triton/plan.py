"""The Triton backend's launch plan: where concat outputs live, the steps, and the loop that runs them.

`layout_concats` decides from the graph, before anything is lowered, which values are written in place into a
concat's output and which concats are mere views of another's (DenseNet's blocks); `lower` then builds each
`Step` once with that decision. A step is one kernel launch (or a view) producing one IR value; `Plan.execute`
runs the steps in order on device tensors, hands a step that writes into a concat its slice of the concat's
output (or, in the nhwc layout, a channels-last output it allocates), and releases each value after its last
reader. `nchw_values` and `flatten_views` are the nhwc layout's graph decisions: which 4-D values stay NCHW (the
network's inputs, parameters, fallback results) and which flattens into a linear are (h, w, c)-ordered views.
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
# what a conv/linear launch stands for besides itself: the BN folded into its weights, the residual add and the
# activation of its epilogue (fold_batch_norm, fuse, and the lowering's absorbed activations)
FOLDED_OPS = {"batch_norm", "add"} | ops.with_trait("activation")
VIEW_OPS = {"dropout"}  # the view lowerings that keep the input's layout (flatten and reshape reorder it)


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


def nchw_values(graph: Graph, fallback: set[str]) -> set[str]:
    """Values laid out NCHW at run time whatever the plan's layout: the graph's inputs and parameters, the
    NumPy fallback's fresh arrays, and views (dropout) of those."""
    out = set(graph.inputs) | set(graph.params) | set(fallback)
    for node in graph.nodes:
        if node.op in VIEW_OPS and node.inputs[0] in out:
            out.add(node.name)
    return out


def flatten_views(graph: Graph, nchw: set[str], fallback: set[str]) -> set[str]:
    """In the nhwc layout, the flattens of an NHWC map (more than one pixel) whose one reader is a linear with a
    static weight: such a flatten is an (h, w, c)-ordered view and the linear's weight columns are permuted to
    match (the classifier reads the layout that comes last)."""
    out = set()
    for node in graph.nodes:
        if node.op != "flatten" or graph.types[node.name].rank != 2:
            continue
        src, reader = graph.types[node.inputs[0]], graph.sole_reader(node.name)
        if (src.rank == 4 and src.shape[2] * src.shape[3] > 1 and node.inputs[0] not in nchw
                and reader is not None and reader.op in ("linear", "fused_linear") and reader.name not in fallback
                and reader.inputs[0] == node.name and reader.inputs[1] in graph.params):
            out.add(node.name)
    return out


def covers(original: Graph, graph: Graph, output: str, head: str) -> tuple[str, ...]:
    """The ``original`` graph's nodes one launch computes: from ``head`` along sole readers to ``output``,
    through what the passes folded or fused away. Past ``output`` only a folded batch_norm can follow (the conv
    keeps its name); before it, any folded or fused node."""
    chain, name = [head], head
    while (nxt := original.sole_reader(name)) is not None:
        if nxt.name in graph.node_by_name and nxt.name != output:
            break
        reached = output in chain
        if not (nxt.name == output or nxt.op == "batch_norm" or (not reached and nxt.op in FOLDED_OPS)):
            break
        chain.append(nxt.name)
        name = nxt.name
    return tuple(chain)


def weight_reader(original: Graph, weight: str) -> str:
    """The original node that reads ``weight`` as its weight (a fused node's conv/linear)."""
    readers = original.users.get(weight, ())
    return next((r for r in readers if original.node_by_name[r].inputs[1:2] == (weight,)), weight)


def _strided_readers(graph: Graph, value: str) -> bool:
    """Whether every reader of ``value`` takes a strided view of it."""
    return all(graph.node_by_name[r].op in STRIDED_IN_OPS for r in graph.users.get(value, ()))


@dataclass(frozen=True)
class Step:
    """One launch: computes ``output`` (``run(env, out)``, ``out`` a preallocated slice of a concat's output
    or None); ``text`` is its line in the plan, ``covers`` the IR nodes it computes, ``into`` the (concat,
    input index) whose slice it writes, ``alloc`` the shape of the output the plan allocates in its memory
    format (the nhwc layout's 4-D outputs) and hands over as ``out``, ``split_k`` a GEMM's K split."""

    output: str
    kernel: str
    run: Callable[[Env, torch.Tensor | None], torch.Tensor]
    text: str
    covers: tuple[str, ...] = ()
    into: tuple[str, int] | None = None
    alloc: tuple[int, ...] | None = None
    split_k: int = 1  # a GEMM launch's K split (its configuration's)


@dataclass(frozen=True)
class Plan:
    """The steps in schedule order, the parameters read as activations (converted once), the concat layout
    (a concat's output is allocated by its first producer that writes in place) and what to release after
    each step; ``memory_format`` that of its 4-D activations (channels_last in the nhwc layout)."""

    steps: tuple[Step, ...]
    constants: Env
    dtype: torch.dtype
    outputs: tuple[str, ...]
    layout: ConcatLayout
    frees: tuple[tuple[str, ...], ...]
    memory_format: torch.memory_format = torch.contiguous_format

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
                    fmt = self.memory_format if len(shape) == 4 else torch.contiguous_format
                    env[concat] = torch.empty(shape, dtype=self.dtype, device=runtime.DEVICE, memory_format=fmt)
                out = env[concat].narrow(axis, sum(sizes[:k]), sizes[k])
            elif step.alloc is not None:
                out = torch.empty(step.alloc, dtype=self.dtype, device=runtime.DEVICE, memory_format=self.memory_format)
            try:
                env[step.output] = step.run(env, out)
            except Exception as e:
                raise BackendError(f"triton backend: launch {step.output!r} ({step.kernel}) failed: "
                                   f"{type(e).__name__}: {e}") from e
            for value in frees:
                del env[value]
        return [env[o] for o in self.outputs]
