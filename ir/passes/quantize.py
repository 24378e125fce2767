"""Post-training static int8 quantization: calibrate, then insert ONNX-style QDQ pairs.

`quantize_graph(graph, params, calibration, observer=...)` is a pure ``(graph, params) -> (graph, params)``
function. What it makes (the ops are ir/ops/quantize_linear.py and dequantize_linear.py):

- It first runs remove_identity, fold_batch_norm and dead_code on float64 parameters, and quantizes the *unfused*
  result: BN must be folded first, because the int8 weights have to be the folded weights an engine executes
  (quantizing before folding would rescale int8 weights into non-integers); fusion is left to each backend's own
  pipeline, so the QDQ graph stays in ONNX's vocabulary (Conv, Gemm, Add between Q/DQ pairs, the patterns ONNX
  Runtime fuses into QLinearConv / QGemm / QLinearAdd) and `passes.fuse` never crosses a q/dq pair.
- Weights of every contraction (conv2d, linear, and the fused forms if given a fused graph): symmetric per output
  channel int8 (axis 0, zero point 0, scale = max|w_c| / 127, so the codes lie in [-127, 127]; with
  ``weight_bits=7``, ONNX Runtime's ``reduce_range``, max|w_c| / 63 and [-63, 63]: the default on an x86 CPU
  without VNNI/AMX, whose int8 kernels add pairs of u8×s8 products in a saturating int16, so that a full-range
  weight is not the graph's arithmetic there — 2·255·63 = 32130 fits, 2·255·127 does not; raised where the
  bias would need an int32 code above 2^24, i.e. only for channels whose weights are ~0) stored as an
  int8 parameter ``"{w}_quantized"`` read by a dequantize_linear node ``"{w}_dequantized"``. Their biases:
  int32 with scale s_x · s_w[c] (zero point 0), as ORT's QDQ Conv/Gemm fusion wants them (a float bias would
  keep ORT from fusing), ``"{b}_quantized"`` → ``"{b}_dequantized"``.
- Activations read by a contraction or by an add (the residual adds), and — where such a value is made by a pad,
  pool, flatten or reshape (`MOVERS`) — that op's input too (a zero pad, max pool, flatten or reshape quantizes
  its output as its input: `SHARED`): per-tensor, a quantize_linear
  ``"{v}_quantized"`` then a dequantize_linear ``"{v}_dequantized"``, one pair per reader (the second reader's
  named ``"{v}_quantized@{reader}"`` …, same attributes): ORT converts and fuses a Q→DQ pair only when it has
  one consumer (measured on efficientnet_lite0: shared pairs left 14 of 49 convs and every add in float, one pair
  per reader 5 convs and 4 adds). int8
  asymmetric by default (ONNX Runtime's own default; ``symmetric=True`` forces zero point 0, ``activations=
  "uint8"`` gives U8S8). Not uint8: ORT 1.31's uint8 × int8 kernels saturate on this Zen 4 even with VNNI present
  (the VPMADDUBSW caveat of ORT's quantization guide; measured: mobilenet_v2's QDQ graph 49 % off its reference
  with uint8 activations, 5e-8 with int8). The range always contains 0, so zero padding is exact.

Observers (over every calibration batch, run through the float32 interpreter: statistics need no float64, and
it is twice as fast): "minmax" — the extreme values
seen; "percentile" — per batch the ``percentile``-th and (100 − percentile)-th percentiles of the value (default
99.99 %), averaged over the batches, then clipped to the min/max range: one outlier pixel no longer stretches a
layer's whole scale. The results are the float32-rounded scales `QuantAttrs` stores.

Two refinements of the weights, both on by default (measured on efficientnet_lite0, 65 views, 7-bit weights, oneDNN:
top-1 agreement with float64 60/65 → 63/65, KL 0.035 → 0.0077; the real-label top-1 of the photographs unchanged):
- ``weight_clip="mse"``: per channel, the clipping range (a ratio of max|w_c|, `CLIP_RATIOS`) whose rounding has the
  least squared error; a few outliers no longer coarsen the step of every other weight. "absmax" keeps max|w_c|.
- ``bias_correction=True``: rounding the weights shifts each output channel's mean by Σ Δw · E[x]; the bias absorbs
  it, with E[x] the per-channel mean of the reader's input over the calibration batches (Nagel et al. 2019, "Data-
  Free Quantization", empirical form).
  A contraction without a bias is left as it is (a new bias would change the graph's vocabulary).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .. import interpreter, ops
from ..errors import IRError
from ..graph import Graph, Node, TensorType
from ..ops._fused import split
from ..ops.quantize_linear import QDQ_OPS, QDTYPES, QuantAttrs
from ._rewrite import rebuild
from .dead_code import eliminate_dead_code
from .fold_batch_norm import fold_batch_norm
from .remove_identity import remove_identity

OBSERVERS = ("minmax", "percentile")
ACTIVATIONS = ("int8", "uint8")
# the readers whose activation inputs are quantized: every contraction (MACs in int8) and the residual add
READERS = ops.with_trait("contraction") | {"add"}
# ops between a contraction and the next that move (or pool) values: when their output is quantized, their input
# is too, so the producer's output is quantized right after it (ORT then fuses the producer into QLinearConv and
# propagates the pair through the move, or runs QLinear{Average,GlobalAverage}Pool / int8 MaxPool)
MOVERS = frozenset({"pad", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "flatten", "reshape"})
# movers whose output holds only input values (and a zero pad's 0, which every range holds): the output is quantized
# as the input is, so quantize(dequantize(q)) = q and an engine may move the codes themselves (ORT's quantizer
# does the same: quantize_output_same_as_input); a separate calibration of the output would requantize them
SHARED = frozenset({"pad", "max_pool2d", "flatten", "reshape"})
WEIGHT_BITS = (7, 8)
WEIGHT_CLIPS = ("absmax", "mse")
# the ratios of max|w_c| the "mse" clip tries, 1.0 first so that a tie keeps the full range, in steps of 0.005:
# efficientnet_lite0's channels at 7 bits pick 0.94-1.0 (62.5 % keep 1.0)
CLIP_RATIOS = tuple(np.round(np.linspace(1.0, 0.8, 41), 3).tolist())


def weight_max(bits: int) -> int:
    """The largest symmetric weight code: [-127, 127] at 8 bits (negating a code never overflows), [-63, 63] at 7."""
    return 2 ** (bits - 1) - 1


def host_weight_bits() -> int:
    """The weight width whose int8 arithmetic this machine's CPU engines compute exactly: 7 on an x86 CPU whose
    int8 kernels saturate u8×s8 pairs (`bench.machine.int8_pairs_saturate`: no VNNI/AMX), else 8."""
    from ...bench.machine import int8_pairs_saturate  # the one reader of the CPU's flags (a leaf module)

    return 7 if int8_pairs_saturate() else 8


# |int32 bias code| ≤ 2^24: float32 holds every such integer exactly (parameters are float32 in most backends until
# they are cast back), and a channel whose weights are ~0 (after BN folding) cannot overflow int32
BIAS_MAX = 2.0**24
Batch = np.ndarray | Sequence[np.ndarray]


@dataclass(frozen=True)
class Roles:
    """What a reader's inputs are: activation positions, and the weight/bias parameters (contractions only)."""

    activations: tuple[int, ...]
    weight: str | None = None
    bias: str | None = None


def roles(graph: Graph, node: Node) -> Roles:
    if node.op not in ops.with_trait("contraction"):
        return Roles(tuple(k for k, i in enumerate(node.inputs) if not graph.is_param(i)))
    if ops.get(node.op).has("fused"):
        a = node.attrs
        _, w, b, r = split(node.inputs, a.bias, a.residual)
        acts = (0, len(node.inputs) - 1) if r is not None else (0,)
    else:
        w, b = node.inputs[1], node.inputs[2] if len(node.inputs) > 2 else None
        acts = (0,)
    if not graph.is_param(w) or (b is not None and not graph.is_param(b)):
        raise IRError(f"quantize: node {node.name!r} ({node.op}) has a weight or bias that is not a parameter")
    return Roles(tuple(k for k in acts if not graph.is_param(node.inputs[k])), w, b)


def _batches(graph: Graph, calibration: Sequence[Batch]) -> list[dict[str, np.ndarray]]:
    names = list(graph.inputs)
    out = []
    for k, batch in enumerate(calibration):
        arrays = [batch] if isinstance(batch, np.ndarray) else list(batch)
        if len(arrays) != len(names):
            raise IRError(f"quantize: calibration batch {k} has {len(arrays)} array(s), graph {graph.name!r} "
                          f"takes {len(names)} input(s) {names}")
        for n, a in zip(names, arrays, strict=True):
            if a.shape[1:] != graph.inputs[n].shape[1:]:
                raise IRError(f"quantize: calibration batch {k}: input {n!r} has shape {a.shape}, the graph wants "
                              f"(N, {', '.join(map(str, graph.inputs[n].shape[1:]))})")
        out.append({n: np.asarray(a, dtype=np.float32) for n, a in zip(names, arrays, strict=True)})
    if not out:
        raise IRError("quantize: no calibration batches given")
    return out


@dataclass(frozen=True)
class Observed:
    ranges: dict[str, tuple[float, float]]  # (low, high) of each observed value, by the observer
    means: dict[tuple[str, int], np.ndarray]  # (value, channel axis) -> its mean per channel over every batch


def observe(graph: Graph, params: Mapping[str, np.ndarray], calibration: Sequence[Batch], values: set[str],
            observer: str = "minmax", percentile: float = 99.99, channel_axes: Sequence[tuple[str, int]] = ()
            ) -> Observed:
    """The ranges of each value in ``values`` over the calibration batches, by ``observer``, and the means of the
    (value, axis) pairs in ``channel_axes`` along every other axis, in float64 (what bias correction needs: a
    conv's input along axis 1, a linear's along its last)."""
    axes: dict[str, set[int]] = {}
    for v, axis in channel_axes:
        axes.setdefault(v, set()).add(axis)
    if observer not in OBSERVERS:
        raise IRError(f"quantize: unknown observer {observer!r}; known: {', '.join(OBSERVERS)}")
    if not 50.0 < percentile <= 100.0:
        raise IRError(f"quantize: percentile must be in (50, 100], got {percentile}")
    seen: dict[str, list[tuple[float, float, float, float]]] = {v: [] for v in values}
    sums: dict[tuple[str, int], np.ndarray] = {}

    def record(value: str, a: np.ndarray) -> None:
        stats = seen[value]
        if len(stats) > count[0]:  # several readers see one value: record it once per batch
            return
        lo, hi = float(a.min()), float(a.max())
        # the percentile of an even stride through the value (≤ 2^20 elements: 100 beyond a 99.99 % tail) costs
        # a fraction of the whole value's partition and moves the estimate by far less than a quantization step
        flat = a.ravel()[::max(1, a.size >> 20)]
        plo, phi = (np.percentile(flat, [100.0 - percentile, percentile]) if observer == "percentile"
                    else (lo, hi))
        stats.append((lo, hi, float(plo), float(phi)))
        for axis in axes.get(value, ()):
            other = tuple(k for k in range(a.ndim) if k != axis % a.ndim)
            sums[value, axis] = sums.get((value, axis), 0.0) + a.mean(axis=other, dtype=np.float64)

    def hook(node: Node, args: list[np.ndarray]) -> None:
        for i, a in zip(node.inputs, args, strict=True):
            if i in seen:
                record(i, a)

    count = [0]
    for feed in _batches(graph, calibration):
        interpreter.run(graph, params, feed, hook=hook)
        count[0] += 1
    out = {}
    for v, stats in seen.items():
        s = np.asarray(stats)
        lo, hi = float(s[:, 0].min()), float(s[:, 1].max())
        out[v] = (lo, hi) if observer == "minmax" else (max(lo, float(s[:, 2].mean())), min(hi, float(s[:, 3].mean())))
    return Observed(out, {v: m / count[0] for v, m in sums.items()})


def activation_attrs(lo: float, hi: float, dtype: str, symmetric: bool = False) -> QuantAttrs:
    """Per-tensor scale and zero point covering [lo, hi] ∪ {0}: asymmetric (uint8 or int8), or symmetric int8."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if symmetric:
        bound = max(-lo, hi)
        return QuantAttrs((bound / 127.0 if bound > 0 else 1.0,), (0,), dtype="int8")
    qlo, qhi = QDTYPES[dtype]
    scale = (hi - lo) / (qhi - qlo) if hi > lo else 1.0
    scale = float(np.float32(scale))
    zp = int(np.clip(np.rint(qlo - lo / scale), qlo, qhi))
    return QuantAttrs((scale,), (zp,), dtype=dtype)


def weight_codes(w: np.ndarray, min_scale: np.ndarray | None = None, bits: int = 8, clip: str = "absmax"
                 ) -> tuple[np.ndarray, QuantAttrs]:
    """Symmetric per-output-channel int8 codes of ``w`` (axis 0) in ``bits`` bits and their attributes, each
    channel's range by ``clip`` (`WEIGHT_CLIPS`); ``min_scale`` (per channel) raises a scale where the bias needs
    it."""
    top = weight_max(bits)
    flat = w.reshape(w.shape[0], -1)
    absmax = np.abs(flat).max(axis=1) / top
    if clip == "mse":
        absmax = absmax * _mse_ratio(flat, absmax, top)
    if min_scale is not None:
        absmax = np.maximum(absmax, min_scale)
    scale = np.where(absmax > 0, absmax, 1.0).astype(np.float32)
    s = scale.astype(np.float64).reshape(-1, *([1] * (w.ndim - 1)))
    codes = np.clip(np.rint(w / s), -top, top).astype(np.int8)
    return codes, QuantAttrs(tuple(scale.tolist()), (0,), axis=0)


def _mse_ratio(flat: np.ndarray, step: np.ndarray, top: int) -> np.ndarray:
    """Per channel (a row of ``flat``), the ratio of `CLIP_RATIOS` whose step ratio·``step`` rounds it with the
    least squared error: every fifth ratio first, then the ratios within two coarse steps of each row's best (the
    error is smooth on that scale), in float32 (ResNet-50's 25 M weights: 1.6 s, against 5.9 s for every ratio in
    float64)."""
    rows = np.asarray(flat, np.float32)
    s0 = np.where(step > 0, step, 1.0).astype(np.float32)[:, None]
    grid = np.asarray(CLIP_RATIOS, np.float32)
    best = np.zeros(len(rows), np.int64)  # an index into grid
    best_err = np.full(len(rows), np.inf, np.float32)

    def consider(index: np.ndarray) -> None:
        s = s0 * grid[index][:, None]
        err = np.square(np.clip(np.rint(rows / s), -top, top) * s - rows).sum(axis=1)
        better = err < best_err
        best[better], best_err[better] = index[better], err[better]

    for k in range(0, len(grid), 5):
        consider(np.full(len(rows), k))
    centre = best.copy()
    for d in (d for d in range(-9, 10) if d % 5):
        consider(np.clip(centre + d, 0, len(grid) - 1))
    return grid[best].astype(np.float64)


def mean_shift(error: np.ndarray, mean: np.ndarray, groups: int = 1) -> np.ndarray:
    """The expected shift of a contraction's output channels when its weight is off by ``error`` (O, C/g, …) and its
    input has channel means ``mean`` (C,): Σ over each channel's inputs of error · mean (zero padding ignored)."""
    o, cg = error.shape[:2]
    per_group = error.reshape(groups, o // groups, cg, -1).sum(axis=3)  # a kernel's taps all see the same mean
    return np.einsum("goc,gc->go", per_group, mean.reshape(groups, cg)).reshape(o)


def bias_codes(b: np.ndarray, x_scale: float, w_attrs: QuantAttrs) -> tuple[np.ndarray, QuantAttrs]:
    """int32 codes of a bias at scale s_x · s_w[c] (zero point 0): what the int32 accumulator adds."""
    scale = (np.float32(x_scale) * np.asarray(w_attrs.scale, np.float32)).astype(np.float32)
    codes = np.clip(np.rint(b / scale.astype(np.float64)), -BIAS_MAX, BIAS_MAX).astype(np.int32)
    return codes, QuantAttrs(tuple(scale.tolist()), (0,), axis=0, dtype="int32")


def prepare(graph: Graph, params: Mapping[str, np.ndarray]) -> tuple[Graph, dict[str, np.ndarray]]:
    """The inference graph quantization starts from: identities dropped, BN folded (in float64), dead code gone."""
    p64 = {k: np.asarray(params[k], dtype=np.float64) for k in graph.params}
    g = remove_identity(graph)
    g, p64 = fold_batch_norm(g, {k: p64[k] for k in g.params})
    g = eliminate_dead_code(g)
    return g, {k: p64[k] for k in g.params}


def quantize_graph(graph: Graph, params: Mapping[str, np.ndarray], calibration: Sequence[Batch], *,
                   observer: str = "minmax", percentile: float = 99.99, activations: str = "int8",
                   symmetric: bool = False, weight_bits: int | None = None, weight_clip: str = "mse",
                   bias_correction: bool = True) -> tuple[Graph, dict[str, np.ndarray]]:
    """The QDQ graph of ``graph`` and its parameters (int8 weights, int32 biases, the rest float32), calibrated on
    ``calibration``: a sequence of batches, each an array (one-input graphs) or one array per graph input.
    ``weight_bits``: 8 or 7 (None: `host_weight_bits`, what this machine computes exactly); ``weight_clip`` and
    ``bias_correction``: see the module's docstring."""
    bits = host_weight_bits() if weight_bits is None else weight_bits
    if bits not in WEIGHT_BITS:
        raise IRError(f"quantize: weight_bits must be one of {WEIGHT_BITS}, got {weight_bits!r}")
    if weight_clip not in WEIGHT_CLIPS:
        raise IRError(f"quantize: weight_clip must be one of {WEIGHT_CLIPS}, got {weight_clip!r}")
    if activations not in ACTIVATIONS:
        raise IRError(f"quantize: activations must be one of {ACTIVATIONS}, got {activations!r}")
    if any(n.op in ("quantize_linear", "dequantize_linear") for n in graph.nodes):
        raise IRError(f"quantize: graph {graph.name!r} is already quantized")
    g, p64 = prepare(graph, params)
    readers = {n.name: roles(g, n) for n in g.nodes if n.op in READERS}
    values = {n.inputs[k] for n in g.nodes if n.name in readers for k in readers[n.name].activations}
    for n in reversed(g.nodes):  # a quantized value made by a pad/pool/flatten: quantize that op's input too
        if n.op in MOVERS and n.name in values and not g.is_param(n.inputs[0]):
            readers[n.name] = Roles((0,))
            values.add(n.inputs[0])
    # a contraction's input channels: a conv's (4-D weight) axis 1, a linear's last
    def channel_axis(node: Node) -> tuple[str, int]:
        return node.inputs[0], 1 if p64[readers[node.name].weight].ndim == 4 else -1

    axes = [channel_axis(g.node_by_name[n]) for n, r in readers.items()
            if bias_correction and r.weight is not None and r.bias is not None]
    seen = observe(g, {k: v.astype(np.float32) for k, v in p64.items()}, calibration, values, observer, percentile,
                   axes)
    ranges = seen.ranges
    if symmetric and activations != "int8":
        raise IRError("quantize: symmetric activations are int8 (a uint8 range centred on 0 wastes its zero point)")
    act = {v: activation_attrs(*ranges[v], activations, symmetric) for v in values}
    for n in g.nodes:  # in order, so a chain of them shares one quantization
        if n.op in SHARED and n.name in act and n.inputs[0] in act and (n.op != "pad" or n.attrs.value == 0.0):
            act[n.name] = act[n.inputs[0]]
    taken = {*g.inputs, *g.params, *(n.name for n in g.nodes)}
    new_params: dict[str, TensorType] = {}
    arrays: dict[str, np.ndarray] = {}
    nodes: list[Node] = []

    def fresh(name: str) -> str:
        if name in taken:
            raise IRError(f"quantize: graph {g.name!r} already has a value named {name!r}")
        taken.add(name)
        return name

    def dq_param(name: str, codes: np.ndarray, attrs: QuantAttrs) -> str:
        qname, dname = fresh(f"{name}_quantized"), fresh(f"{name}_dequantized")
        new_params[qname], arrays[qname] = TensorType(codes.shape, attrs.dtype), codes
        nodes.append(Node(dname, "dequantize_linear", (qname,), attrs))
        return dname

    done: dict[str, str] = {}  # weight/bias parameter -> the dequantized value that replaces it for readers
    paired: set[str] = set()
    weights: dict[str, QuantAttrs] = {}
    errors: dict[str, np.ndarray] = {}  # a weight's rounding error, dequantized codes − float64 weight
    for node in g.nodes:
        r = readers.get(node.name)
        mapping: dict[str, str] = {}
        if r is not None:
            for k in r.activations:
                v = node.inputs[k]
                if v not in mapping:  # a pair per reader: ORT converts/fuses a Q→DQ pair only with one consumer
                    mapping[v] = _qdq(nodes, fresh, v, act[v], "" if v not in paired else f"@{node.name}")
                    paired.add(v)
            if r.weight is not None:
                if r.weight not in done:
                    # the weight scale must keep this reader's bias codes within BIAS_MAX (s_b = s_x · s_w)
                    floor = (np.abs(p64[r.bias]) / (act[node.inputs[0]].scale[0] * BIAS_MAX)
                             if r.bias is not None else None)
                    codes, weights[r.weight] = weight_codes(p64[r.weight], floor, bits, weight_clip)
                    done[r.weight] = dq_param(r.weight, codes, weights[r.weight])
                    steps = np.asarray(weights[r.weight].scale, np.float64).reshape(-1, *[1] * (codes.ndim - 1))
                    errors[r.weight] = codes * steps - p64[r.weight]
                mapping[r.weight] = done[r.weight]
            if r.bias is not None:  # per reader: its scale is this reader's input scale times the weight's
                b = p64[r.bias]
                if bias_correction:  # this reader's own input mean: a shared weight's readers see different inputs
                    groups = node.attrs.groups if p64[r.weight].ndim == 4 else 1
                    b = b - mean_shift(errors[r.weight], seen.means[channel_axis(node)], groups)
                codes, attrs = bias_codes(b, act[node.inputs[0]].scale[0], weights[r.weight])
                mapping[r.bias] = dq_param(f"{r.bias}@{node.name}" if r.bias in done else r.bias, codes, attrs)
                done.setdefault(r.bias, mapping[r.bias])
        nodes.append(Node(node.name, node.op, tuple(mapping.get(i, i) for i in node.inputs), node.attrs))
    for name, t in g.params.items():  # the float parameters no quantized reader replaced (BN of an unfoldable …)
        if any(name in n.inputs for n in nodes):
            new_params[name], arrays[name] = t, p64[name].astype(np.float32)
    out = rebuild(g, nodes, params=new_params).replace(name=g.name)
    return out, {k: arrays[k] for k in out.params}


def _qdq(nodes: list[Node], fresh, value: str, attrs: QuantAttrs, tag: str = "") -> str:
    q, d = fresh(f"{value}_quantized{tag}"), fresh(f"{value}_dequantized{tag}")
    nodes.append(Node(q, "quantize_linear", (value,), attrs))
    nodes.append(Node(d, "dequantize_linear", (q,), attrs))
    return d


def is_quantized(graph: Graph) -> bool:
    """Does ``graph`` hold QDQ nodes (what an int8 backend runs)?"""
    return any(n.op in QDQ_OPS for n in graph.nodes)
