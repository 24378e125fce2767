"""Per-node timing: each node compiled on the backend as a one-node graph and timed on the real activations
it sees in the model (captured from one reference run), next to the whole graph's time.

This works for any backend that compiles a single node, which every backend must; what it cannot show is
fusion, so the sum of the nodes' medians is reported beside the whole graph's median — the gap is what the
backend gains (or loses) by compiling the graph as a whole. A node timed alone also runs with its weights
in cache and the allocator warm, so on the NumPy reference the sum is well below the whole graph (resnet18 at
64, one thread: 9 ms of nodes against a 27 ms graph). Each node's FLOPs and minimum memory traffic
(inputs, parameters and output, each touched once) place it on the per-layer roofline.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..backends import get
from ..backends.base import BackendUnavailableError, UnsupportedDtypeError, UnsupportedNodeError, unavailable_reason
from ..ir import interpreter, ops
from ..ir.graph import Graph, Node
from .errors import UnsupportedCase
from .specs import split_backend_spec, typed_options
from .stats import Policy, measure
from .workload import compile_options, make_workload

NODE_POLICY = Policy(warmup_s=0.02, min_time_s=0.05, max_time_s=0.3, min_samples=5)
GRAPH_POLICY = Policy(max_time_s=2.0)


@dataclass(frozen=True)
class NodeTiming:
    name: str
    op: str
    output_shape: tuple[int, ...]
    flops: int
    bytes: int
    median_s: float | None
    p90_s: float | None
    n: int
    error: str = ""

    @property
    def intensity(self) -> float:
        return self.flops / self.bytes if self.bytes else 0.0

    @property
    def gflops(self) -> float | None:
        return self.flops / self.median_s / 1e9 if self.median_s else None


@dataclass(frozen=True)
class Profile:
    model: str
    backend: str
    batch: int
    image_size: int
    dtype: str
    graph_median_s: float
    nodes: tuple[NodeTiming, ...]

    @property
    def nodes_total_s(self) -> float:
        return sum(n.median_s or 0.0 for n in self.nodes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["nodes_total_s"] = self.nodes_total_s
        for row, n in zip(d["nodes"], self.nodes, strict=True):
            row["intensity"], row["gflops"] = n.intensity, n.gflops
        return d


def node_graph(graph: Graph, node: Node) -> Graph:
    """The one-node graph of ``node``: its activation inputs become graph inputs, its parameters stay."""
    types = graph.types
    acts = dict.fromkeys(graph.activation_inputs(node))
    return Graph(inputs={a: types[a] for a in acts}, nodes=(node,), outputs=(node.name,),
                 params={p: types[p] for p in node.inputs if p in graph.params}, name=f"{graph.name}.{node.name}")


def _capture(graph: Graph, params: dict[str, np.ndarray], x: np.ndarray) -> dict[str, list[np.ndarray]]:
    """Each node's activation inputs from one float32 reference run."""
    seen: dict[str, list[np.ndarray]] = {}

    def hook(node: Node, args: list[np.ndarray]) -> None:
        acts = dict.fromkeys(graph.activation_inputs(node))
        by_name = dict(zip(node.inputs, args, strict=True))
        seen[node.name] = [by_name[a] for a in acts]
        return None

    interpreter.run(graph, {k: v.astype(np.float32) for k, v in params.items()}, {"input": x}, hook=hook)
    return seen


def profile(model: str, backend_spec: str, batch: int = 1, image_size: int | None = None,
            dtype: str = "float32", threads: int | None = None, policy: Policy = NODE_POLICY,
            graph_policy: Policy = GRAPH_POLICY) -> Profile:
    """Raises `UnsupportedCase` where the backend cannot run the model in ``dtype`` here (the reason as
    ``check`` and ``run`` word it)."""
    name, raw = split_backend_spec(backend_spec)
    backend = get(name)
    why = unavailable_reason(backend, dtype)
    if why:
        raise UnsupportedCase(why)
    w = make_workload(model, batch, image_size)
    graph, params, x = w.graph, w.params, w.input
    options = compile_options(backend, dtype, threads, typed_options(name, raw))
    try:
        whole = backend.compile(graph, params, **options)
    except (UnsupportedNodeError, UnsupportedDtypeError, BackendUnavailableError) as e:
        raise UnsupportedCase(" ".join(str(e).split())) from None
    graph_median = measure(functools.partial(whole, x), graph_policy).stats.median
    del whole
    inputs = _capture(graph, params, x)
    types = graph.types
    rows = []
    for node in graph.nodes:
        op = ops.get(node.op)
        in_types = [types[i] for i in node.inputs]
        out = types[node.name]
        traffic = sum(t.nbytes for t in in_types) + out.nbytes
        flops = op.flops(node.attrs, in_types, out)
        sub = node_graph(graph, node)
        try:
            exe = backend.compile(sub, {p: params[p] for p in sub.params}, **options)
            m = measure(functools.partial(exe, *inputs[node.name]), policy)
            rows.append(NodeTiming(node.name, node.op, out.shape, flops, traffic, m.stats.median, m.stats.p90,
                                   m.stats.n))
        except Exception as e:  # one node that will not compile alone must not end the profile
            rows.append(NodeTiming(node.name, node.op, out.shape, flops, traffic, None, None, 0,
                                   f"{type(e).__name__}: {e}"[:200]))
    return Profile(model, backend_spec, batch, graph.inputs["input"].shape[-1], dtype, graph_median, tuple(rows))


def layer_roofline(prof: Profile, path, peak_gflops: float | None, bandwidth_gbs: float | None) -> None:
    """Per-layer roofline: each node's intensity and achieved GFLOP/s, one colour per op."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = [n for n in prof.nodes if n.gflops and n.flops]
    fig, ax = plt.subplots(figsize=(9, 5.5))
    cmap = plt.get_cmap("tab10")
    kinds = list(dict.fromkeys(n.op for n in timed))
    for k, op in enumerate(kinds):
        pts = [n for n in timed if n.op == op]
        share = np.array([n.median_s for n in pts]) / prof.nodes_total_s
        ax.scatter([n.intensity for n in pts], [n.gflops for n in pts], s=15 + 400 * share, color=cmap(k % 10),
                   label=op, edgecolors="black", linewidths=0.3, alpha=0.8)
    if timed and peak_gflops and bandwidth_gbs:
        ai = np.logspace(np.log10(min(n.intensity for n in timed) / 2), np.log10(max(n.intensity for n in timed) * 2))
        ax.plot(ai, np.minimum(peak_gflops, bandwidth_gbs * ai), color="black", lw=1.2,
                label=f"roof: GEMM {peak_gflops:.0f} GFLOP/s, copy {bandwidth_gbs:.1f} GB/s")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity, FLOP / byte (inputs, params, output touched once)")
    ax.set_ylabel("achieved GFLOP/s")
    ax.set_title(f"Per-layer roofline: {prof.model}@{prof.image_size} b{prof.batch} on {prof.backend} "
                 f"(marker area = share of time)", fontsize=10)
    ax.grid(which="both", alpha=0.2)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
