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
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

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
    # int8: the settings given (``--int8``, `models.calibration.int8_spec`; "" the defaults) and how the profiled
    # QDQ graph was quantized (`quantize_model`'s settings, what a sweep's record carries)
    int8: str = ""
    quantization: dict[str, Any] | None = None

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
            graph_policy: Policy = GRAPH_POLICY, int8: str = "") -> Profile:
    """Raises `UnsupportedCase` where the backend cannot run the model in ``dtype`` here (the reason as
    ``check`` and ``run`` word it). ``int8``: how an int8 graph is quantized, as ``run --int8``."""
    name, raw = split_backend_spec(backend_spec)
    backend = get(name)
    why = unavailable_reason(backend, dtype)
    if why:
        raise UnsupportedCase(why)
    w = make_workload(model, batch, image_size, dtype=dtype, int8=int8)  # int8: the QDQ graph a sweep would run
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
    from ..models.calibration import int8_spec, parse_int8

    spec = int8_spec(parse_int8(int8)) if dtype == "int8" else ""  # as a sweep's case: only int8 carries it
    return Profile(model, backend_spec, batch, graph.inputs["input"].shape[-1], dtype, graph_median, tuple(rows),
                   spec, w.quantization)


def layer_roofline(prof: Profile, path, peak_gflops: float | None, bandwidth_gbs: float | None) -> None:
    """Per-layer roofline: each node's intensity and achieved GFLOP/s, one colour per op."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plots import save_figure

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
    save_figure(fig, path)


# -- OpenVINO's own per-layer counters on the same network, mapped to the IR's nodes ------------------------------

@dataclass(frozen=True)
class OvLayer:
    """One layer of OpenVINO's executed graph (``InferRequest.get_profiling_info()``), the median over calls."""

    name: str  # the IR node's name where OpenVINO kept it (the backend names every node after its IR node)
    type: str  # OpenVINO's node type: Convolution, Reorder …
    exec_type: str  # the kernel: brgconv_avx512_f32, jit_uni_f32 …
    status: str  # EXECUTED, NOT_RUN (fused into another layer), OPTIMIZED_OUT
    median_s: float


@dataclass(frozen=True)
class OpenVinoLayers:
    layers: tuple[OvLayer, ...]
    graph_median_s: float  # the whole infer call, counters on
    calls: int


@dataclass(frozen=True)
class LayerGroup:
    """The IR nodes one OpenVINO layer executes (a conv with its folded BN, fused ReLU and residual add), or an
    OpenVINO layer with no IR node (a Reorder: ``nodes`` empty), or IR nodes OpenVINO has no layer for."""

    layer: str
    kind: str  # the first node's op ("conv2d 1×1 s1", "relu" …) or OpenVINO's type for an OpenVINO-only layer
    ov_type: str
    exec_type: str
    nodes: tuple[str, ...]
    backend_s: float | None  # the nodes' medians on the profiled backend, summed (None: one of them failed)
    ov_s: float | None  # None: OpenVINO runs no layer of that name


def _counting_openvino() -> Any:
    """The OpenVINO backend with PERF_COUNT on: the same lowering (IR node names), pipeline and properties as
    ``convbench run -b openvino``, compiled once; the executable's artifact is the counting compiled model."""
    base = type(get("openvino"))

    class Counting(base):  # type: ignore[misc, valid-type]
        properties: ClassVar[dict[str, Any]] = {"PERF_COUNT": True}

    return Counting()


def openvino_layers(model: str, batch: int = 1, image_size: int | None = None, threads: int | None = None,
                    calls: int = 20, warmup: int = 3, dtype: str = "float32", int8: str = "") -> OpenVinoLayers:
    """OpenVINO's per-layer real time at ``dtype``'s precision (float32: f32 forced; bfloat16/float16: that
    inference precision; int8: the workload's QDQ graph, as `profile` and ``run`` quantize it with ``int8``'s
    settings), the median of ``calls`` calls after ``warmup``."""
    backend = get("openvino")
    why = unavailable_reason(backend, dtype)
    if why:
        raise UnsupportedCase(why)
    w = make_workload(model, batch, image_size, dtype=dtype, int8=int8)
    counting = _counting_openvino()
    forced = {"precision": "f32"} if dtype == "float32" else {}
    try:
        exe = counting.compile(w.graph, w.params, **compile_options(backend, dtype, threads, forced))
    except (UnsupportedNodeError, UnsupportedDtypeError, BackendUnavailableError) as e:
        raise UnsupportedCase(" ".join(str(e).split())) from None
    request = exe.artifact.create_infer_request()
    x = np.ascontiguousarray(w.input)
    per_layer: dict[str, list[float]] = {}
    meta: dict[str, tuple[str, str, str]] = {}
    whole = []
    for i in range(warmup + calls):
        t = time.perf_counter()
        request.infer({0: x})
        if i < warmup:
            continue
        whole.append(time.perf_counter() - t)
        for p in request.get_profiling_info():
            per_layer.setdefault(p.node_name, []).append(p.real_time.total_seconds())
            meta[p.node_name] = (p.node_type, p.exec_type, p.status.name)
    layers = tuple(OvLayer(name, *meta[name], float(np.median(v))) for name, v in per_layer.items())
    return OpenVinoLayers(layers, float(np.median(whole)), calls)


def _kind(graph: Graph, node: Node) -> str:
    if node.op in ("conv2d", "fused_conv2d"):
        k = graph.types[node.inputs[1]].shape[2:]
        stride, groups = getattr(node.attrs, "stride", (1, 1)), getattr(node.attrs, "groups", 1)
        return f"conv2d {k[0]}×{k[1]}{' dw' if groups > 1 else ''} s{stride[0]}"
    return node.op


def map_layers(graph: Graph, prof: Profile, ov: OpenVinoLayers) -> list[LayerGroup]:
    """Each IR node to the OpenVINO layer of its name where that layer ran; a node OpenVINO lists as fused
    (NOT_RUN: a ReLU post-op, a residual add), a batch_norm folded at lowering or a view, to the layer of its first
    activation input; a node OpenVINO does not list (run inside a layer of another name, a snippets Subgraph) is
    a group of its own without an OpenVINO time, joined by the nodes after it that are absent too."""
    nodes = {n.name: n for n in graph.nodes}
    by_name = {la.name: la for la in ov.layers}
    for la in ov.layers:  # OpenVINO may name a layer NODE/suffix (fc/add_bias: the linear with its bias fused)
        base = la.name.split("/")[0]
        if base in nodes and base not in by_name and la.status == "EXECUTED":
            by_name[base] = la
    mapped = {id(la) for la in by_name.values()}
    times = {n.name: n.median_s for n in prof.nodes}
    group_of: dict[str, str] = {}
    members: dict[str, list[str]] = {}
    for node in graph.nodes:
        layer = by_name.get(node.name)
        acts = [group_of[a] for a in graph.activation_inputs(node) if a in group_of]
        op = ops.get(node.op)
        if layer is not None and layer.status == "EXECUTED":
            home = node.name
        elif acts and (layer is not None or node.op == "batch_norm" or op.has("identity") or op.has("view")
                       or by_name.get(acts[0]) is None):
            home = acts[0]  # fused into its input's layer (listed NOT_RUN, or a BN folded at lowering)
        else:  # not in OpenVINO's list at all: inside a layer of another name (a Subgraph), shown on its own
            home = node.name
        group_of[node.name] = home
        members.setdefault(home, []).append(node.name)
    groups = []
    for home, names in members.items():
        layer = by_name.get(home)
        spent = [times.get(n) for n in names]
        groups.append(LayerGroup(home, _kind(graph, nodes[names[0]]), layer.type if layer else "—",
                                 layer.exec_type if layer else "—", tuple(names),
                                 None if any(t is None for t in spent) else sum(spent),  # type: ignore[misc]
                                 layer.median_s if layer and layer.status == "EXECUTED" else None))
    for la in ov.layers:  # what OpenVINO runs that the IR has no node for: layout reorders, mostly
        if id(la) not in mapped and la.status == "EXECUTED":
            groups.append(LayerGroup(la.name, la.type, la.type, la.exec_type, (), None, la.median_s))
    return groups


def by_kind(groups: Sequence[LayerGroup]) -> list[dict[str, Any]]:
    """Time per kind of layer on both sides, largest gap first: which layers account for the difference."""
    rows: dict[str, dict[str, Any]] = {}
    for g in groups:
        r = rows.setdefault(g.kind, {"kind": g.kind, "layers": 0, "backend_s": 0.0, "ov_s": 0.0})
        r["layers"] += 1
        r["backend_s"] += g.backend_s or 0.0
        r["ov_s"] += g.ov_s or 0.0
    for r in rows.values():
        r["gap_s"] = r["backend_s"] - r["ov_s"]
    return sorted(rows.values(), key=lambda r: -r["gap_s"])


def layers_vs_openvino_plot(groups: Sequence[LayerGroup], backend: str, path: Any, top: int = 30) -> None:
    """The ``top`` layers by the larger of the two times, the backend's node(s) beside OpenVINO's layer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plots import save_figure

    rows = sorted(groups, key=lambda g: -max(g.backend_s or 0.0, g.ov_s or 0.0))[:top][::-1]
    fig, ax = plt.subplots(figsize=(9, 0.28 * len(rows) + 1.5))
    y = np.arange(len(rows))
    ax.barh(y + 0.2, [(g.backend_s or 0) * 1e3 for g in rows], 0.4, label=f"{backend} (node alone)")
    ax.barh(y - 0.2, [(g.ov_s or 0) * 1e3 for g in rows], 0.4, label="OpenVINO (in the graph)")
    ax.set_yticks(y, [f"{g.layer} [{g.kind}]" for g in rows], fontsize=6)
    ax.set_xlabel("ms per call")
    ax.set_title(f"Per layer: {backend} against OpenVINO's counters", fontsize=10)
    ax.legend(fontsize=7)
    save_figure(fig, path)
