"""The IR lowered to an ``ov.Model`` with OpenVINO's Python opset API, one rule per op (`LOWERINGS`).

`LOWERINGS` is the one list of what the OpenVINO backend runs (`OpenVinoBackend.lowered_ops` returns its keys). It
is defined without openvino installed: the rules reach the opset through ``Lowering.op``, imported when a model is
built, so ``supports`` and the coverage test answer without it. Every OpenVINO node is named after its IR node
(``<node>/<part>`` for the pieces of one), which keeps the model's cache key stable from one compile to the next.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np

from ...ir.graph import Graph, Node
from ...ir.ops import NoAttrs
from ...ir.ops.avg_pool2d import divisor
from ...ir.ops.batch_norm import scale_shift
from ...ir.ops.conv2d import Conv2dAttrs
from ...ir.ops.quantize_linear import QDTYPES
from ...ir.passes.fold_batch_norm import fold_conv_bn_weights, foldable
from ...ir.passes.int8_patterns import as_uint8
from ..base import BackendError

# the newest complete opset of openvino 2026.4 (opset17 holds only its two new ops so far)
OPSET = "openvino.opset16"


def message(e: BaseException) -> str:
    """OpenVINO's message without its C++ source locations (``Exception from src/…cpp:117:``)."""
    lines = [ln.strip() for ln in str(e).splitlines()]
    kept = [ln for ln in lines if ln and not re.match(r"(Exception from |Check '.*' failed at )\S*src/", ln)]
    text = " ".join(kept or lines)
    return text if len(text) <= 400 else text[:400] + " …"


Rule = Callable[["Lowering", Node], Any]


class Lowering:
    """Builds the ``ov.Model``; one instance per compile. ``rules`` maps each op to its rule (a subclass may swap
    some: the planted-rule test does). A rule returns the ``Output`` that holds the node's value."""

    rules: ClassVar[Mapping[str, Rule]] = {}  # LOWERINGS, assigned below

    def __init__(self, graph: Graph, params: Mapping[str, np.ndarray]):
        self.op = importlib.import_module(OPSET)
        self.graph, self.params = graph, params
        self.env: dict[str, Any] = {}
        self.folded: dict[str, Node] = {}  # conv2d/linear name -> the batch_norm folded into its weights

    def const(self, array: np.ndarray | list | float, name: str, dtype: Any = np.float32) -> Any:
        a = np.asarray(array, dtype=dtype)  # a scalar stays 0-d (ascontiguousarray would make it (1,))
        return self.op.constant(a if a.flags.c_contiguous else a.copy(), name=name).output(0)

    def value(self, name: str) -> Any:
        if name not in self.env:  # a parameter read as a value: a constant named after it
            self.env[name] = self.const(self.params[name], name)
        return self.env[name]

    def param(self, name: str) -> np.ndarray | None:
        return self.params.get(name) if self.graph.is_param(name) else None

    def weights(self, node: Node, bias_at: int | None) -> tuple[Any, Any]:
        """(weight, bias or None) of a conv/linear: arrays where they are parameters (with the folded batch_norm's
        affine map applied), else the values that compute them."""
        w_name = node.inputs[1]
        b_name = node.inputs[bias_at] if bias_at is not None else None
        w, b = self.param(w_name), (self.param(b_name) if b_name else None)
        if (bn := self.folded.get(node.name)) is not None:
            w, b = fold_conv_bn_weights(w, b, *(self.params[i] for i in bn.inputs[1:]), bn.attrs.eps)
        w = self.value(w_name) if w is None else w
        b = self.value(b_name) if b is None and b_name else b
        return w, b

    def conv(self, node: Node, attrs: Conv2dAttrs, bias: bool) -> Any:
        """conv2d, around two bugs of OpenVINO 2026.4's CPU convolution that the conformance corpus's regression
        cases hit (conv2d-…-regress-out1-strided, conv2d-…-regress-pad-ge-span)."""
        x = self.value(node.inputs[0])
        w, b = self.weights(node, 2 if bias else None)
        o, cg, kh, kw = self.graph.types[node.inputs[1]].shape
        (_, _, h, wd), (oh, ow) = self.graph.types[node.inputs[0]].shape, self.graph.types[node.name].shape[2:]
        g, name, stride, padding = attrs.groups, node.name, list(attrs.stride), list(attrs.padding)
        # 1. an output position whose taps all read padding can crash it (a segfault) once a bias is fused:
        # such convolutions read an input zero-padded by concatenation (OpenVINO folds a Pad op back into the conv)
        axes = list(zip((h, wd), (kh, kw), stride, padding, attrs.dilation, (oh, ow), strict=True))
        if any(_dead(*axis).any() for axis in axes):
            x, padding = self.zero_pad(node, x, padding), [0, 0]
        # 2. one input channel, one output column and a column stride > 1 give wrong numbers: the first column does
        # not depend on the stride, so it is taken from the stride-1 convolution
        narrow = g == 1 and cg == 1 and ow == 1 and stride[1] > 1
        stride[1] = 1 if narrow else stride[1]
        window = (stride, padding, padding, list(attrs.dilation))
        if g == 1:
            w = self.const(w, f"{name}/weight") if isinstance(w, np.ndarray) else w
            y = self.op.convolution(x, w, *window, name=f"{name}/wide" if narrow else name)
            if narrow:
                first = [self.const([v], f"{name}/{k}", np.int64) for k, v in (("start", 0), ("stop", 1), ("step", 1),
                                                                                ("axis", 3))]
                y = self.op.slice(y, *first, name=name)
        else:  # OpenVINO's grouped filters are (G, O/G, C/G, KH, KW)
            shape = [g, o // g, cg, kh, kw]
            w = (self.const(w.reshape(shape), f"{name}/weight") if isinstance(w, np.ndarray)
                 else self.op.reshape(w, self.const(shape, f"{name}/wshape", np.int64), False, name=f"{name}/wgroups"))
            y = self.op.group_convolution(x, w, *window, name=name)
        return self.add_bias(node, y.output(0), b, (1, o, 1, 1))

    def zero_pad(self, node: Node, x: Any, padding: list[int]) -> Any:
        """``x`` between zero blocks on the spatial axes, as concatenations."""
        shape = list(self.graph.types[node.inputs[0]].shape)
        for axis, pad in zip((2, 3), padding, strict=True):
            if pad:
                zeros = self.const(np.zeros([*shape[:axis], pad, *shape[axis + 1:]]), f"{node.name}/pad{axis}")
                x = self.op.concat([zeros, x, zeros], axis, name=f"{node.name}/padded{axis}").output(0)
                shape[axis] += 2 * pad
        return x

    def add_bias(self, node: Node, y: Any, b: Any, shape: tuple[int, ...]) -> Any:
        if b is None:
            return y
        b = (self.const(b.reshape(shape), f"{node.name}/bias") if isinstance(b, np.ndarray)
             else self.op.reshape(b, self.const(list(shape), f"{node.name}/bshape", np.int64), False,
                                  name=f"{node.name}/bias"))
        return self.op.add(y, b, name=f"{node.name}/add_bias").output(0)

    def linear(self, node: Node, bias: bool) -> Any:
        w, b = self.weights(node, 2 if bias else None)
        w = self.const(w, f"{node.name}/weight") if isinstance(w, np.ndarray) else w
        y = self.op.matmul(self.value(node.inputs[0]), w, False, True, name=node.name).output(0)
        return self.add_bias(node, y, b, (self.graph.types[node.inputs[1]].shape[0],))

    def epilogue(self, node: Node, y: Any) -> Any:
        """A fused node's ``activation(y + residual)``; the activation lowers by its own rule."""
        if node.attrs.residual:
            y = self.op.add(y, self.value(node.inputs[-1]), name=f"{node.name}/residual").output(0)
        act = node.attrs.activation
        if act is None:
            return y
        temporary = f"{node.name}::{act}_input"  # y enters the activation's rule under a name only it reads
        self.env[temporary] = y
        try:
            return self.rules[act](self, Node(f"{node.name}/{act}", act, (temporary,), NoAttrs()))
        finally:
            del self.env[temporary]

    def plan_folds(self) -> None:
        for node in self.graph.nodes:
            if node.op == "batch_norm" and (producer := foldable(self.graph, node)) is not None:
                self.folded[producer.name] = node

    def run(self) -> Any:
        import openvino as ov

        inputs = []
        for name, t in self.graph.inputs.items():
            inputs.append(self.op.parameter(list(t.shape), np.float32, name=name))
            self.env[name] = inputs[-1].output(0)
        self.plan_folds()
        absorbed = {bn.name: producer for producer, bn in self.folded.items()}
        for node in self.graph.nodes:
            if node.name in absorbed:  # the conv/linear before it computes it
                self.env[node.name] = self.env[absorbed[node.name]]
                continue
            try:
                self.env[node.name] = self.rules[node.op](self, node)
            except BackendError:
                raise
            except Exception as e:  # OpenVINO refused the node (shape inference, attributes): name it
                raise BackendError(f"openvino backend: OpenVINO rejected node {node.name!r} ({node.op}) of "
                                   f"{self.graph.name}: {message(e)}") from None
        results = [self.op.result(self.value(o), name=f"{o}/result") for o in self.graph.outputs]
        return ov.Model(results, inputs, self.graph.name)


def _dead(size: int, taps: int, stride: int, pad: int, dilation: int, out: int) -> np.ndarray:
    """Per output position along an axis: whether every (dilated) tap falls outside the input, on padding."""
    at = np.arange(out)[:, None] * stride - pad + np.arange(taps)[None, :] * dilation
    return ~((at >= 0) & (at < size)).any(axis=1)


# -- one rule per op -------------------------------------------------------------------------------------------

def _unary(make: Callable[[Any, Any, Any], Any]) -> Rule:
    """A rule for a one-input op: ``make(opset, x, attrs)`` returns the OpenVINO node, named after the IR node."""

    def rule(lw: Lowering, node: Node) -> Any:
        y = make(lw.op, lw.value(node.inputs[0]), node.attrs)
        y.set_friendly_name(node.name)
        return y.output(0)

    return rule


def _pool(op: str) -> Rule:
    def rule(lw: Lowering, node: Node) -> Any:
        a = node.attrs
        # "ceil_torch": ceil_mode without the last window when it would start in the padding, torch's rule
        window = dict(strides=list(a.stride), pads_begin=list(a.padding), pads_end=list(a.padding),
                      kernel_shape=list(a.kernel_size), rounding_type="ceil_torch" if a.ceil_mode else "floor")
        x = lw.value(node.inputs[0])
        (h, w), (oh, ow) = lw.graph.types[node.inputs[0]].shape[2:], lw.graph.types[node.name].shape[2:]
        if op == "max":
            return _max_pool(lw, node, x, window, (h, w), (oh, ow))
        # count_include_pad divides a ceil_mode window that runs past the padding by its size clipped to the padded
        # input (torch); OpenVINO, once there is any padding, counts the part past it too. There: divide by the real
        # elements (exclude_pad), then rescale each output position by real / torch's divisor (constants).
        axes = list(zip((h, w), (oh, ow), a.kernel_size, a.stride, a.padding, strict=True))
        rescale = (a.count_include_pad and any(a.padding)
                   and any((o - 1) * s - p + k > n + p for n, o, k, s, p in axes))
        # dilations always explicit: AvgPool-16 without them crashes the CPU plugin's compile (2026.4)
        y = lw.op.avg_pool(x, exclude_pad=rescale or not a.count_include_pad, dilations=[1, 1], **window,
                           name=f"{node.name}/real" if rescale else node.name).output(0)
        if not rescale:
            return y
        real, clipped = (np.outer(*(divisor(*axis, include_pad=inc) for axis in axes)) for inc in (False, True))
        return lw.op.multiply(y, lw.const(real / clipped, f"{node.name}/rescale"), name=node.name).output(0)

    return rule


def _max_pool(lw: Lowering, node: Node, x: Any, window: dict, hw: tuple[int, int], out: tuple[int, int]) -> Any:
    """max_pool2d; a window whose (dilated) taps all read padding is −∞, as in torch, where OpenVINO gives the
    lowest finite float: those positions are known here and set."""
    a = node.attrs
    rows, cols = (_dead(*axis) for axis in zip(hw, a.kernel_size, a.stride, a.padding, a.dilation, out, strict=True))
    dead = rows.any() or cols.any()
    y = lw.op.max_pool(x, dilations=list(a.dilation), **window, name=f"{node.name}/pool" if dead else node.name)
    if not dead:
        return y.output(0)
    mask = (rows[:, None] | cols[None, :]).reshape(1, 1, *out)
    return lw.op.select(lw.const(mask, f"{node.name}/dead", bool), lw.const(-np.inf, f"{node.name}/minus_inf"),
                        y.output(0), name=node.name).output(0)


def _batch_norm(lw: Lowering, node: Node) -> Any:
    x, rank = lw.value(node.inputs[0]), lw.graph.types[node.inputs[0]].rank
    stats = [lw.param(i) for i in node.inputs[1:]]
    if any(s is None for s in stats):  # statistics computed by the graph: OpenVINO's own op
        return lw.op.batch_norm_inference(x, *(lw.value(i) for i in node.inputs[1:]), node.attrs.eps,
                                          name=node.name).output(0)
    scale, shift = scale_shift(node.attrs.eps, *(s.astype(np.float64) for s in stats))
    bcast = (1, -1) + (1,) * (rank - 2)
    y = lw.op.multiply(x, lw.const(scale.reshape(bcast), f"{node.name}/scale"), name=f"{node.name}/mul")
    return lw.op.add(y, lw.const(shift.reshape(bcast), f"{node.name}/shift"), name=node.name).output(0)


def _lrn(lw: Lowering, node: Node) -> Any:
    a, x = node.attrs, lw.value(node.inputs[0])
    if a.size % 2:  # odd: OpenVINO's window is centred like the IR's (alpha/size · Σ, one axis)
        axes = lw.const([1], f"{node.name}/axes", np.int64)
        return lw.op.lrn(x, axes, a.alpha, a.beta, a.k, a.size, name=node.name).output(0)
    # even: OpenVINO centres the window one channel later; the IR's (size//2 before) as a mean over channels
    n, c, h, w = lw.graph.types[node.inputs[0]].shape
    sq = lw.op.multiply(x, x, name=f"{node.name}/square")
    rows = lw.op.reshape(sq, lw.const([n, 1, c, h * w], f"{node.name}/rows", np.int64), False,
                         name=f"{node.name}/as_rows")
    mean = lw.op.avg_pool(rows, [1, 1], [a.size // 2, 0], [(a.size - 1) // 2, 0], [a.size, 1], exclude_pad=False,
                          dilations=[1, 1], name=f"{node.name}/window")
    mean = lw.op.reshape(mean, lw.const([n, c, h, w], f"{node.name}/back", np.int64), False,
                         name=f"{node.name}/mean")
    scaled = lw.op.multiply(mean, lw.const(a.alpha, f"{node.name}/alpha"), name=f"{node.name}/scale")
    den = lw.op.power(lw.op.add(scaled, lw.const(a.k, f"{node.name}/k"), name=f"{node.name}/plus_k"),
                      lw.const(a.beta, f"{node.name}/beta"), name=f"{node.name}/pow")
    return lw.op.divide(x, den, name=node.name).output(0)


def _add(lw: Lowering, node: Node) -> Any:
    y = lw.value(node.inputs[0])
    for k, i in enumerate(node.inputs[1:], 1):
        last = k == len(node.inputs) - 1
        y = lw.op.add(y, lw.value(i), name=node.name if last else f"{node.name}/{k}").output(0)
    return y


def _clip(lw: Lowering, node: Node) -> Any:
    # max then min, as the reference: min > max gives max everywhere (OpenVINO's Clamp wants min ≤ max)
    y, a = lw.value(node.inputs[0]), node.attrs
    if a.min is not None:
        last = a.max is None
        y = lw.op.maximum(y, lw.const(a.min, f"{node.name}/min"), name=node.name if last else f"{node.name}/lower")
    if a.max is not None:
        y = lw.op.minimum(y, lw.const(a.max, f"{node.name}/max"), name=node.name)
    return y if a.min is None and a.max is None else y.output(0)


def _pad(lw: Lowering, node: Node) -> Any:
    top, left, bottom, right = node.attrs.pads
    begin, end = (lw.const([0, 0, *p], f"{node.name}/{k}", np.int64) for k, p in (("begin", (top, left)),
                                                                                    ("end", (bottom, right))))
    return lw.op.pad(lw.value(node.inputs[0]), begin, end, "constant", lw.const(node.attrs.value, f"{node.name}/value"),
                     name=node.name).output(0)


def _reshape(lw: Lowering, node: Node) -> Any:
    shape = lw.const(list(lw.graph.types[node.name].shape), f"{node.name}/shape", np.int64)
    return lw.op.reshape(lw.value(node.inputs[0]), shape, False, name=node.name).output(0)


def _quantize_linear(lw: Lowering, node: Node) -> Any:
    """q = saturate(round(x / s) + z) as OpenVINO's ONNX frontend writes QuantizeLinear: a FakeQuantize whose input
    range is the dtype's range in real units, (lo − z)·s … (hi − z)·s, and whose output range is lo … hi (levels
    256), then a Convert to u8/i8: the int8 pattern its low-precision transformations recognise. FakeQuantize rounds
    half away from zero where the reference rounds half to even: they differ only on exact ties."""
    a, rank = node.attrs, lw.graph.types[node.inputs[0]].rank
    lo, hi = QDTYPES[a.dtype]
    s, z = (v.astype(np.float64) for v in a.broadcast(rank, np.float64))
    dtype = a.dtype
    if as_uint8(lw.graph, node.name):  # the same real values as u8 codes, which AMX's int8 convolutions take
        lo, hi, z, dtype = 0, 255, z + 128, "uint8"
    bounds = [lw.const((v - z) * s, f"{node.name}/{k}") for k, v in (("in_low", lo), ("in_high", hi))]
    out = [lw.const(v, f"{node.name}/{k}") for k, v in (("out_low", lo), ("out_high", hi))]
    fq = lw.op.fake_quantize(lw.value(node.inputs[0]), *bounds, *out, hi - lo + 1, name=f"{node.name}/fq")
    return lw.op.convert(fq, {"int8": "i8", "uint8": "u8"}[dtype], name=node.name).output(0)


def _dequantize_linear(lw: Lowering, node: Node) -> Any:
    """y = (q − z)·s as Convert(f32) → Subtract(z) → Multiply(s), the dequantization OpenVINO folds into its int8
    convolutions and matmuls. A quantized weight is an int8/u8 constant (parameters may hold the integers in
    floats: cast_params); an int32 bias is dequantized here, in float64 (its readers take a float bias)."""
    a, name = node.attrs, node.inputs[0]
    s, z = a.broadcast(lw.graph.types[name].rank, np.float64)
    if as_uint8(lw.graph, name):  # codes `_quantize_linear` holds as u8: their zero point is 128 more
        z = z + 128
    codes = lw.param(name)
    if codes is not None and a.dtype == "int32":
        return lw.const((np.asarray(codes, np.float64) - z) * s, node.name)
    q = lw.const(codes, name, getattr(np, a.dtype)) if codes is not None else lw.value(name)
    y = lw.op.convert(q, "f32", name=f"{node.name}/convert")
    if np.any(z != 0):
        y = lw.op.subtract(y, lw.const(z, f"{node.name}/zero_point"), name=f"{node.name}/shift")
    return lw.op.multiply(y, lw.const(s, f"{node.name}/scale"), name=node.name).output(0)


LOWERINGS: dict[str, Rule] = {
    "conv2d": lambda lw, n: lw.conv(n, n.attrs, len(n.inputs) > 2),
    "fused_conv2d": lambda lw, n: lw.epilogue(n, lw.conv(n, n.attrs.conv, n.attrs.bias)),
    "linear": lambda lw, n: lw.linear(n, len(n.inputs) > 2),
    "fused_linear": lambda lw, n: lw.epilogue(n, lw.linear(n, n.attrs.bias)),
    "batch_norm": _batch_norm,
    "max_pool2d": _pool("max"),
    "avg_pool2d": _pool("avg"),
    "adaptive_avg_pool2d": lambda lw, n: lw.op.adaptive_avg_pool(
        lw.value(n.inputs[0]), lw.const(list(n.attrs.output_size), f"{n.name}/size", np.int64),
        name=n.name).output(0),
    "relu": _unary(lambda op, x, a: op.relu(x)),
    "relu6": _unary(lambda op, x, a: op.clamp(x, 0.0, 6.0)),
    "leaky_relu": lambda lw, n: lw.op.prelu(
        lw.value(n.inputs[0]), lw.const([n.attrs.negative_slope], f"{n.name}/slope"), name=n.name).output(0),
    "sigmoid": _unary(lambda op, x, a: op.sigmoid(x)),
    "tanh": _unary(lambda op, x, a: op.tanh(x)),
    "elu": _unary(lambda op, x, a: op.elu(x, a.alpha)),
    "clip": _clip,
    "hardsigmoid": _unary(lambda op, x, a: op.hsigmoid(x)),  # min(max(x + 3, 0), 6) / 6: torch's definition
    "hardswish": _unary(lambda op, x, a: op.hswish(x)),
    "silu": _unary(lambda op, x, a: op.swish(x)),  # x · sigmoid(β·x), β = 1
    "softmax": _unary(lambda op, x, a: op.softmax(x, a.axis)),
    "lrn": _lrn,
    "add": _add,
    "mul": lambda lw, n: lw.op.multiply(lw.value(n.inputs[0]), lw.value(n.inputs[1]), name=n.name).output(0),
    "concat": lambda lw, n: lw.op.concat([lw.value(i) for i in n.inputs], n.attrs.axis, name=n.name).output(0),
    "flatten": _reshape,
    "reshape": _reshape,
    "pad": _pad,
    "dropout": lambda lw, n: lw.value(n.inputs[0]),  # the identity at inference: no node
    "quantize_linear": _quantize_linear,
    "dequantize_linear": _dequantize_linear,
}
Lowering.rules = LOWERINGS
