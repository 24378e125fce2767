"""Static memory planning: every activation gets a byte offset in one arena, reused once its value is dead.

1. Liveness over the schedule: a value lives from the step that writes it (graph inputs: step 0) to the last
   step that reads it; graph outputs live past the last step, since the caller reads them.
2. Sharing, where legal. A view op (flatten, dropout) stores its output in its input's buffer. An op whose
   output element i depends on input element i only (relu and the other elementwise ops, add, the residual of
   a fused node) writes over an input whose buffer nobody reads after this step — in place.
3. Placement: buffers whose lifetimes overlap must not overlap in memory. Greedy by size (Pisarchyk & Lee,
   "Efficient Memory Management for Deep Neural Net Inference", 2020): largest first, each into the smallest gap
   among the already placed buffers it conflicts with, else above them.

The plan reports the arena size, the naive sum (one buffer per value, no reuse) and a lower bound no placement
can beat: the most bytes of buffers live at any one step. Op scratch (im2col columns, padding copies) is the
backend's business and not planned here.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import ops
from ..graph import Graph, Node

ALIGNMENT = 64  # bytes: every buffer starts on a cache line (and any SIMD width)


@dataclass(frozen=True)
class Buffer:
    """A region of the arena and the values stored in it one after another (several when shared)."""

    offset: int
    size: int  # bytes, unaligned
    start: int  # first step that writes it
    end: int  # last step that reads it (the step count for graph outputs)
    values: tuple[str, ...]


@dataclass(frozen=True)
class MemoryPlan:
    offsets: dict[str, int]  # value -> byte offset in the arena
    nbytes: dict[str, int]  # value -> bytes
    buffers: tuple[Buffer, ...]
    arena_bytes: int
    naive_bytes: int  # every value its own buffer: no reuse at all
    lower_bound_bytes: int  # max over steps of the bytes of live buffers
    inplace_nodes: tuple[str, ...]  # nodes that write over one of their inputs
    view_nodes: tuple[str, ...]  # nodes whose output is a view of their input
    steps: int

    def to_dict(self) -> dict:
        return {"arena_bytes": self.arena_bytes, "naive_bytes": self.naive_bytes,
                "lower_bound_bytes": self.lower_bound_bytes, "buffers": len(self.buffers),
                "values": len(self.offsets), "inplace_nodes": len(self.inplace_nodes),
                "view_nodes": len(self.view_nodes)}


def inplace_candidates(node: Node, graph: Graph) -> tuple[str, ...]:
    """Inputs the node's output may overwrite (the op's ``overwrites`` rule), parameters excepted."""
    positions = ops.get(node.op).overwrites(node.attrs, len(node.inputs))
    return tuple(node.inputs[k] for k in positions if not graph.is_param(node.inputs[k]))


def lifetimes(graph: Graph) -> dict[str, tuple[int, int]]:
    """value -> (step written, last step read) for graph inputs and node outputs."""
    steps = len(graph.nodes)
    life = {name: (0, 0) for name in graph.inputs}
    for k, node in enumerate(graph.nodes):
        life[node.name] = (k, k)
        for i in set(node.inputs):
            if i in life:
                life[i] = (life[i][0], k)
    for out in graph.outputs:
        if out in life:
            life[out] = (life[out][0], steps)
    return life


def _aligned(n: int) -> int:
    return -(-n // ALIGNMENT) * ALIGNMENT


class _Groups:
    """Union of values into buffers, with each buffer's lifetime and members."""

    def __init__(self) -> None:
        self.of: dict[str, int] = {}
        self.members: list[list[str]] = []
        self.span: list[tuple[int, int]] = []

    def new(self, value: str, life: tuple[int, int]) -> None:
        self.of[value] = len(self.members)
        self.members.append([value])
        self.span.append(life)

    def join(self, value: str, into: str, life: tuple[int, int]) -> None:
        g = self.of[into]
        self.of[value] = g
        self.members[g].append(value)
        self.span[g] = (min(self.span[g][0], life[0]), max(self.span[g][1], life[1]))


def plan_memory(graph: Graph, itemsize: int | None = None, inplace: bool = True) -> MemoryPlan:
    """Assign every activation (graph inputs and node outputs) an offset in one arena.

    ``itemsize`` overrides the graph's element size (a backend computing in float64 plans for 8 bytes);
    ``inplace=False`` plans reuse only — no views, no in-place — whose arena the plain liveness peak bounds.
    """
    types = graph.types
    life = lifetimes(graph)
    nbytes = {v: types[v].numel * (itemsize or types[v].itemsize) for v in life}
    groups = _Groups()
    inplace_nodes, view_nodes = [], []
    for name in graph.inputs:
        groups.new(name, life[name])
    for k, node in enumerate(graph.nodes):
        target = _share_with(graph, node, k, groups, nbytes) if inplace else None
        if target is None:
            groups.new(node.name, life[node.name])
            continue
        groups.join(node.name, target, life[node.name])
        (view_nodes if ops.get(node.op).has("view") else inplace_nodes).append(node.name)
    sizes = [max(nbytes[v] for v in members) for members in groups.members]
    offsets_by_group = _place(sizes, groups.span)
    buffers = tuple(Buffer(offsets_by_group[g], sizes[g], *groups.span[g], tuple(groups.members[g]))
                    for g in range(len(sizes)))
    return MemoryPlan(
        offsets={v: offsets_by_group[g] for v, g in groups.of.items()}, nbytes=nbytes, buffers=buffers,
        arena_bytes=max((b.offset + b.size for b in buffers), default=0), naive_bytes=sum(nbytes.values()),
        lower_bound_bytes=_peak(buffers, len(graph.nodes)), inplace_nodes=tuple(inplace_nodes),
        view_nodes=tuple(view_nodes), steps=len(graph.nodes))


def _share_with(graph: Graph, node: Node, step: int, groups: _Groups, nbytes: dict[str, int]) -> str | None:
    """The input whose buffer ``node`` may store its output in, or None."""
    if ops.get(node.op).has("view"):
        (x,) = node.inputs
        return x if x in groups.of and nbytes[x] == nbytes[node.name] else None
    for x in inplace_candidates(node, graph):
        if x not in groups.of or nbytes[x] != nbytes[node.name]:
            continue
        g = groups.of[x]
        # nobody reads any value of that buffer after this step (graph outputs live past the last step)
        if groups.span[g][1] == step:
            return x
    return None


def _conflicts(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def _place(sizes: list[int], spans: list[tuple[int, int]]) -> list[int]:
    """Greedy by size: offsets such that buffers with overlapping lifetimes are disjoint in memory."""
    offsets = [0] * len(sizes)
    placed: list[int] = []
    for g in sorted(range(len(sizes)), key=lambda g: (-sizes[g], spans[g][0], g)):
        need = _aligned(sizes[g])
        best, best_gap, top = None, None, 0
        for p in sorted((p for p in placed if _conflicts(spans[p], spans[g])), key=lambda p: offsets[p]):
            gap = offsets[p] - top
            if gap >= need and (best_gap is None or gap < best_gap):
                best, best_gap = top, gap
            top = max(top, offsets[p] + _aligned(sizes[p]))
        offsets[g] = top if best is None else best
        placed.append(g)
    return offsets


def _peak(buffers: tuple[Buffer, ...], steps: int) -> int:
    """Most bytes of buffers live at one step: a lower bound on any arena for these buffers."""
    delta = [0] * (steps + 2)
    for b in buffers:
        delta[b.start] += b.size
        delta[b.end + 1] -= b.size
    peak = live = 0
    for d in delta:
        live += d
        peak = max(peak, live)
    return peak
