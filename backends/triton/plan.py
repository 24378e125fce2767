"""The Triton backend's launch plan: the steps, where concat outputs live, and the loop that runs them.

A `Step` is one kernel launch (or a view) producing one IR value; `Plan.execute` runs the steps in order on
device tensors, hands a step that writes into a concat its slice of the concat's output, and frees each value
after its last reader. `layout_concats` decides which values are written in place into a concat's output and
which concats are mere views of another's (DenseNet's blocks); `lower` builds the steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ...ir.graph import Graph, Node
from ...kernels.triton import runtime
from ..base import BackendError

Env = dict[str, torch.Tensor]
# kernels that write through output strides (into a slice), and readers that take a strided view as input
STRIDED_OUT_OPS = {"conv2d", "fused_conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "lrn"}
STRIDED_IN_OPS = {*STRIDED_OUT_OPS, "batch_norm", "concat"}


@dataclass
class Step:
    """One launch: computes ``output`` from the activations ``reads`` (``run(env, out)``, ``out`` a
    preallocated view or None); ``text`` is its line in the plan, ``covers`` the IR nodes it computes."""

    output: str
    kernel: str
    run: Callable[[Env, torch.Tensor | None], torch.Tensor]
    reads: tuple[str, ...]
    text: str
    covers: tuple[str, ...] = ()
    into: tuple[str, int] | None = None  # (concat, input index): write into that slice of the concat's output
    in_place: list[bool] = field(default_factory=list)  # a concat: which inputs were written in place


@dataclass
class Plan:
    """The steps in schedule order, the parameters read as activations (converted once), the shape of every
    concat output (allocated by its first producer that writes in place), and what to free after each step."""

    steps: list[Step]
    constants: Env
    dtype: torch.dtype
    outputs: tuple[str, ...]
    concats: dict[str, tuple[tuple[int, ...], int, tuple[int, ...]]] = field(default_factory=dict)
    frees: list[list[str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [s.text for s in self.steps]

    def execute(self, feed: Env) -> list[torch.Tensor]:
        env: Env = {**self.constants, **feed}
        for step, frees in zip(self.steps, self.frees, strict=True):
            out = None
            if step.into is not None:
                concat, k = step.into
                shape, axis, sizes = self.concats[concat]
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



def layout_concats(plan: Plan, graph: Graph) -> None:
    """Lay concat outputs out so that producers write into them and concats of concats are views.

    Placement, latest concat first: an input produced by a strided-output kernel, read only by kernels that
    take strided inputs, is written straight into its slice of the concat's output (placed once: the
    latest concat, which in DenseNet is the block's output, holding every layer's features). Aliasing: a
    concat whose inputs all sit consecutively in another concat's output is a view of it, no launch (a
    DenseNet layer's input is a prefix of its block's output). Whatever is not placed is copied.
    """
    by_output = {s.output: s for s in plan.steps}
    concats = [n for n in graph.nodes if n.op == "concat"]
    for node in concats:
        t = graph.types[node.name]
        axis = node.attrs.axis % t.rank
        plan.concats[node.name] = (t.shape, axis, tuple(graph.types[i].shape[axis] for i in node.inputs))
    for node in reversed(concats):
        if graph.types[node.name].rank != 4:
            continue
        for k, v in enumerate(node.inputs):
            step = by_output.get(v)
            if (step is not None and step.kernel in STRIDED_OUT_OPS and step.into is None
                    and node.inputs.count(v) == 1 and v not in graph.outputs and _strided_readers(graph, v)):
                step.into = (node.name, k)
                by_output[node.name].in_place[k] = True
    for node in concats:
        step = by_output[node.name]
        homes = {by_output[v].into if v in by_output else None for v in node.inputs}
        owner = {h[0] if h else None for h in homes}
        if len(owner) == 1 and None not in owner and owner != {node.name} and _strided_readers(graph, node.name):
            _alias(plan, step, node, owner.pop(), by_output)
        copies = step.in_place.count(False)
        if step.kernel == "concat":
            step.text += f" ({len(node.inputs) - copies} written in place, {copies} copied)"
    for step in plan.steps:
        if step.into is not None:
            step.text += f"  → into {step.into[0]}[{step.into[1]}]"

def _strided_readers(graph: Graph, value: str) -> bool:
    """Whether every reader of ``value`` takes a strided view of it."""
    return all(graph.node_by_name[r].op in STRIDED_IN_OPS for r in graph.users.get(value, ()))

def _alias(plan: Plan, step: Step, node: Node, owner: str, by_output: dict[str, Step]) -> None:
    """Turn concat ``step`` into a view of ``owner``'s output if its inputs are consecutive slices there."""
    indices = [by_output[v].into[1] for v in node.inputs]  # type: ignore[index]
    _, axis, sizes = plan.concats[owner]
    if indices != list(range(indices[0], indices[0] + len(indices))) or axis != plan.concats[node.name][1]:
        return
    start, length = sum(sizes[: indices[0]]), plan.concats[node.name][0][axis]
    step.kernel, step.reads = "view", (*step.reads, owner)
    step.run = lambda env, out: env[owner].narrow(axis, start, length)
    step.text = f"{node.name}: concat as a view of {owner}[{indices[0]}:{indices[-1] + 1}] (no launch)"

def frees(steps: list[Step], keep: set[str]) -> list[list[str]]:
    """For each step, the values whose last reader it is (graph outputs are kept)."""
    last = {v: k for k, step in enumerate(steps) for v in step.reads}
    out: list[list[str]] = [[] for _ in steps]
    for value, k in last.items():
        if value not in keep:
            out[k].append(value)
    return out
