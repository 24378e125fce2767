"""The torch lowering rules of the int8 QDQ ops (ir/ops/quantize_linear.py, dequantize_linear.py), merged into
`lowering.LOWERINGS`: torch's ``quantized_decomposed`` ops, the representation PT2E's ``convert_pt2e`` produces.

Eagerly (with ``prepack``: CPU, channels_last), each conv of the int8 pattern (`ir.passes.int8_patterns`, the one
Triton's int8 kernel runs) is one oneDNN u8×s8 call on the activation codes (`QConv2d`: ``onednn.qconv_prepack``
once, ``onednn.qconv2d_pointwise`` per call, float32 out, ReLU/ReLU6 as its post-op); its input's and weight's
dequantize_linear disappear. The other quantize/dequantize ops are exact float32 arithmetic, and a conv outside
the pattern runs in float32 on its dequantized weights.

Under ``torch.compile`` with freezing, inductor's quantization passes (torch/_inductor/fx_passes/quantization.py)
match ``dequantize → conv/linear → quantize`` into the same oneDNN u8×s8 kernels (onednn.qconv_pointwise,
qlinear_pointwise: ``brg_conv_fwd:avx512_core_vnni`` in ONEDNN_VERBOSE on a Zen 4). EfficientNet-Lite0's QDQ graph:
all 49 convolutions and the classifier matched (``TorchDetails.int8_convs``/``int8_linears``), ~1 min of inductor
compile on 2 loaded cores. PT2E's own flow (``prepare_pt2e``/``convert_pt2e`` with ``X86InductorQuantizer``) would
calibrate again with torch's observers; lowering the IR's QDQ graph to the same ops keeps one calibration, the
IR's, for every backend.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ...ir.graph import Graph, Node
from ...ir.ops.quantize_linear import QDTYPES
from ...ir.passes.int8_patterns import Int8Conv, as_uint8, int8_convs

try:  # loads without torch: the rules only run when a graph lowers
    import torch
    import torch.ao.quantization.fx._decomposed
    from torch import nn

    # torch 2.13 deprecates quantized tensors ("will be removed in a future PyTorch release"), which `QAdd` wraps
    # its codes in for one call: the pin keeps them, and the warning would say nothing the user can act on
    warnings.filterwarnings("ignore", message="torch.quantize_per_tensor, torch.quantize_per_channel and other "
                            "quantized tensor creation functions", category=UserWarning)
except ImportError:  # pragma: no cover - exercised by the registry test with torch hidden
    torch = None  # type: ignore[assignment]
    nn = None  # type: ignore[assignment]

if TYPE_CHECKING:
    import torch.fx

    from .lowering import Lowering


def held(attrs) -> tuple[float, int]:
    """(scale, zero point) of per-tensor codes as torch holds them: uint8, an int8 zero point + 128 (`as_uint8`)."""
    return attrs.scale[0], attrs.zero_point[0] + (128 if attrs.dtype == "int8" else 0)


def _qdq_args(lw: Lowering, node: Node, value: str) -> tuple:
    """(scale, zero point[, axis]), quant_min, quant_max, dtype for the quantized ``value`` (the node's output or
    input): the arguments of torch's ``quantized_decomposed`` ops, PT2E's reference representation of QDQ, which
    inductor's int8 passes (fx_passes/quantization.py) match into oneDNN int8 kernels. Per-channel scales and zero
    points are buffers (those ops take tensors)."""
    from .lowering import _ident  # lowering imports this module: resolved when a graph lowers

    a = node.attrs
    lo, hi = QDTYPES[a.dtype]
    if as_uint8(lw.graph, value):
        return (*held(a), 0, 255, torch.uint8)
    if not a.per_channel:
        return (a.scale[0], a.zero_point[0], lo, hi, getattr(torch, a.dtype))
    scale = lw.attach("_qparams." + _ident(node.name) + "_scale", torch.tensor(a.scale, dtype=torch.float32))
    zp = lw.attach("_qparams." + _ident(node.name) + "_zero_point", torch.tensor(a.zero_point, dtype=torch.int64))
    axis = a.axis % lw.graph.types[node.inputs[0]].rank
    return (lw.fx.get_attr(scale), lw.fx.get_attr(zp), axis, lo, hi, getattr(torch, a.dtype))


def _quantize_linear(lw: Lowering, node: Node) -> torch.fx.Node:
    """x → int8/uint8 tensor. torch multiplies by 1/scale where the reference divides: the two differ only
    where x/scale is within a float32 ulp of a rounding tie (one quantization step, rarely)."""
    args = _qdq_args(lw, node, node.name)
    fn = torch.ops.quantized_decomposed.quantize_per_channel if len(args) == 6 else \
        torch.ops.quantized_decomposed.quantize_per_tensor
    return lw.call(node, fn.default, lw.value(node.inputs[0]), *args)


def _dequantize_linear(lw: Lowering, node: Node) -> torch.fx.Node:
    """int8/uint8 → float32 (a QDQ graph runs at dtype float32: `TorchBackend.build` checks). A quantized weight
    (an int8 parameter, which may arrive as integers held in floats: cast_params) becomes a real int8 buffer, so
    ``dequantize → conv`` is the pattern inductor packs for oneDNN; an int32 bias becomes its float32 value (what
    torch's conv adds)."""
    from .lowering import _ident

    name, a = node.inputs[0], node.attrs
    if name in lw.params and (a.dtype == "int32" or lw.prepack):
        # a bias (its readers add a float one), or eagerly any quantized weight: a constant, dequantized once in
        # float64 and rounded (ResNet-50's classifier weight was 5.8 ms of a 22 ms int8 call, dequantized per call);
        # under compile the dequantize stays an op, the pattern inductor packs into its int8 kernels
        value = _dequantized_param(lw, node)
        return lw.fx.get_attr(lw.attach("_params." + _ident(node.name), lw.tensor(value.astype(np.float32))))
    if name in lw.params and name not in lw.env:
        ints = np.asarray(lw.params[name]).astype(getattr(np, a.dtype))
        lw.env[name] = lw.fx.get_attr(lw.attach("_params." + _ident(name), torch.from_numpy(ints).to(lw.device)))
    args = _qdq_args(lw, node, name)
    fn = torch.ops.quantized_decomposed.dequantize_per_channel if len(args) == 6 else \
        torch.ops.quantized_decomposed.dequantize_per_tensor
    return lw.call(node, fn.default, lw.value(name), *args)


def plan_int8(graph: Graph, params: dict[str, np.ndarray], fallback: tuple[str, ...]) -> dict[str, Int8Conv]:
    """The convs `QConv2d` runs: the int8 pattern, whose codes torch holds as uint8 (oneDNN's x86 int8 convolution
    takes u8 activations only: `as_uint8`) and whose bias, if any, is a parameter or its dequantize_linear. conv2d
    only: a fused_conv2d's residual and activation are its own rule's (`lowering._fused`)."""
    found = {}
    for name, q in int8_convs(graph, params, fallback).items():
        node = graph.node_by_name[name]
        if node.op != "conv2d":
            continue
        bias = node.inputs[2] if len(node.inputs) > 2 else None
        source = graph.node_by_name.get(bias) if bias else None
        if (q.x_dtype == "uint8" or as_uint8(graph, q.codes)) and (
                bias is None or bias in params or (source is not None and source.op == "dequantize_linear"
                                                   and source.inputs[0] in params)):
            found[name] = q
    return found


# ops whose output codes are their input's, exactly (ir/passes/quantize.SHARED quantizes them so): a pad with 0
# writes the zero point, the code of 0.0; max commutes with the monotone dequantize
SHARED_OPS = ("pad", "max_pool2d")


@dataclass
class Int8Plan:
    """What runs on the codes (with prepack): the int8 convs (`plan_int8`), the adds of two codes (`QAdd`), the
    zero pads and max pools whose output codes are their input's (``shared``: `QPad`, `QMaxPool`), the
    quantize_linear nodes one of those computes as its output (``requant``), and the dequantize_linear nodes
    nothing reads any more (``unread``)."""

    convs: dict[str, Int8Conv] = field(default_factory=dict)
    adds: dict[str, tuple[tuple[str, float, int], tuple[str, float, int]]] = field(default_factory=dict)
    requant: dict[str, tuple[str, ...]] = field(default_factory=dict)
    relus: dict[str, str] = field(default_factory=dict)  # add -> the ReLU it applies
    shared: dict[str, tuple[str, float, int]] = field(default_factory=dict)  # pad/max pool -> (codes, scale, zero)
    unread: set[str] = field(default_factory=set)

    def lowers(self, name: str) -> bool:
        """Whether `lower_int8` lowers node ``name``."""
        return name in self.convs or name in self.adds or name in self.shared

    def absorbed(self) -> dict[str, str]:
        """node -> the conv or add that computes it: its quantize_linear readers, an add's ReLU."""
        out = {q: producer for producer, qs in self.requant.items() for q in qs}
        out.update({relu: add for add, relu in self.relus.items()})
        return out


def plan(graph: Graph, convs: dict[str, Int8Conv], post_ops: dict[str, Node], fallback: tuple[str, ...] = ()
         ) -> Int8Plan:
    """The `Int8Plan` around ``convs``, once their post-ops are known; nodes in ``fallback`` keep their own rule."""
    p = Int8Plan(convs)
    for name in convs:
        value = post_ops[name].name if name in post_ops else name
        if (readers := _requantized(graph, value, fallback)) is not None:
            p.requant[name] = readers
        node = graph.node_by_name[name]
        p.unread.update(v for v in (convs[name].dequantize, convs[name].weight_dequantize, *node.inputs[2:3])
                        if _dequantize_only_for(graph, v, node))
    for node in graph.nodes:  # dequantize → zero pad or max pool → quantize alike: the same op on the codes
        if node.op in SHARED_OPS and node.name not in fallback and (node.op != "pad" or node.attrs.value == 0.0) \
                and (x := _codes(graph, node.inputs[0])) is not None \
                and _dequantize_only_for(graph, node.inputs[0], node) \
                and (readers := _requantized(graph, node.name, fallback)) is not None \
                and graph.node_by_name[readers[0]].attrs == graph.node_by_name[node.inputs[0]].attrs:
            p.shared[node.name], p.requant[node.name] = x, readers
            p.unread.add(node.inputs[0])
    for node in graph.nodes:
        codes = [_codes(graph, v) for v in node.inputs]
        if node.op != "add" or node.name in fallback or len(codes) != 2 or None in codes or not all(
                _dequantize_only_for(graph, v, node) for v in node.inputs):
            continue
        relu = graph.sole_reader(node.name)
        relu = relu.name if relu is not None and relu.op == "relu" and relu.name not in fallback else None
        if (readers := _requantized(graph, relu or node.name, fallback)) is not None:
            p.adds[node.name], p.requant[node.name] = (codes[0], codes[1]), readers
            p.unread.update(node.inputs)
            if relu:
                p.relus[node.name] = relu
    return p


def _dequantize_only_for(graph: Graph, value: str, node: Node) -> bool:
    source = graph.node_by_name.get(value)
    return source is not None and source.op == "dequantize_linear" and graph.sole_reader(value) is node


def _codes(graph: Graph, value: str) -> tuple[str, float, int] | None:
    """(codes, scale, zero point as held in torch) of a per-tensor dequantize_linear of uint8-held codes."""
    dq = graph.node_by_name.get(value)
    if dq is None or dq.op != "dequantize_linear" or dq.attrs.per_channel or dq.inputs[0] in graph.params:
        return None
    if not (dq.attrs.dtype == "uint8" or as_uint8(graph, dq.inputs[0])):
        return None
    return dq.inputs[0], *held(dq.attrs)


def _requantized(graph: Graph, value: str, fallback: tuple[str, ...]) -> tuple[str, ...] | None:
    """The quantize_linear nodes reading ``value``, when they are all its readers, per-tensor, to the same
    uint8-held codes: a kernel that writes those codes need not write ``value``."""
    readers = [graph.node_by_name[r] for r in graph.users.get(value, ())]
    if (value not in graph.outputs and readers and all(r.op == "quantize_linear" and r.name not in fallback
                                                        for r in readers)
            and len({r.attrs for r in readers}) == 1 and not readers[0].attrs.per_channel
            and all(as_uint8(graph, r.name) or r.attrs.dtype == "uint8" for r in readers)):
        return tuple(r.name for r in readers)
    return None


def _bias(lw: Lowering, value: str) -> np.ndarray:
    """A conv's float bias: a parameter, or the dequantized int32 codes, (q − z) · s in float64."""
    if value in lw.params:
        return np.asarray(lw.params[value], np.float64)
    return _dequantized_param(lw, lw.graph.node_by_name[value])


def _dequantized_param(lw: Lowering, node: Node) -> np.ndarray:
    """A dequantize_linear of a parameter, (q − z) · s in float64."""
    s, z = node.attrs.broadcast(lw.graph.types[node.inputs[0]].rank, np.float64)
    return (np.asarray(lw.params[node.inputs[0]], np.float64) - z) * s


class QConv2d(nn.Module if nn else object):  # type: ignore[misc]
    """conv2d (+ ReLU/ReLU6) as one oneDNN u8×s8 call: uint8 activation codes in, float32 out. The int32
    accumulation is exact; x_scale · w_scale[o] and the bias are applied in float32 by oneDNN. Weights are packed
    once for the input shape, a plain attribute (``.to(memory_format=...)`` must not touch it)."""

    def __init__(self, q: Int8Conv, x_zero: int, bias: np.ndarray | None, attrs, input_shape: tuple[int, ...],
                 activation: str | None, output: tuple[float, int] | None = None):
        from .layers import POST_OPS

        super().__init__()
        o = q.weight_codes.shape[0]
        self.x_scale, self.x_zero = q.x_scale, x_zero
        self.w_scale = torch.from_numpy(np.broadcast_to(q.weight_scale, (o,)).astype(np.float32))
        self.w_zero = torch.zeros(o, dtype=torch.int64)
        self.bias = None if bias is None else torch.from_numpy(bias.astype(np.float32))
        self.window = (list(attrs.stride), list(attrs.padding), list(attrs.dilation), attrs.groups)
        self.post_op, self.scalars = POST_OPS[activation]
        self.activation = activation
        # (scale, zero point) of the uint8 codes it writes (`Int8Plan.requant`), or float32 out
        self.output = (output[0], output[1], torch.uint8) if output else (1.0, 0, torch.float32)
        self.packed = torch.ops.onednn.qconv_prepack(torch.from_numpy(q.weight_codes), self.w_scale, q.x_scale,
                                                     x_zero, *self.window, list(input_shape))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return torch.ops.onednn.qconv2d_pointwise(codes, self.x_scale, self.x_zero, self.packed, self.w_scale,
                                                  self.w_zero, self.bias, *self.window, *self.output,
                                                  self.post_op, self.scalars, "")

    def extra_repr(self) -> str:
        stride, padding, dilation, groups = self.window
        return (f"int8 weight={tuple(self.w_scale.shape)}+, x_scale={self.x_scale:.4g}, x_zero={self.x_zero}, "
                f"stride={stride}, padding={padding}, dilation={dilation}, groups={groups}, "
                f"activation={self.activation}, output={self.output}")


def int8_conv(lw: Lowering, node: Node, q: Int8Conv) -> torch.fx.Node:
    """The `QConv2d` of an int8 conv: it reads the codes of its input (uint8, zero point + 128 where `as_uint8`)."""
    _, x_zero = held(lw.graph.node_by_name[q.dequantize].attrs)
    bias = _bias(lw, node.inputs[2]) if len(node.inputs) > 2 else None
    act = lw.post_ops.get(node.name)
    conv = QConv2d(q, x_zero, bias, node.attrs, lw.graph.types[q.dequantize].shape, act.op if act else None,
                   _output(lw, node))
    return lw.module(node, conv, lw.value(q.codes))


def _output(lw: Lowering, node: Node) -> tuple[float, int] | None:
    """(scale, zero point as held in torch) of the uint8 codes ``node`` writes, or None: it writes float32."""
    if node.name not in lw.int8.requant:
        return None
    return held(lw.graph.node_by_name[lw.int8.requant[node.name][0]].attrs)


class QAdd(nn.Module if nn else object):  # type: ignore[misc]
    """add (+ ReLU) of two uint8 codes into the codes of the sum, one pass (torch's quantized add kernel):
    (a − z_a)·s_a + (b − z_b)·s_b in float32, then round(· / s) + z, ties to even; the ReLU clamps at z,
    which is the quantized max(·, 0)."""

    def __init__(self, a: tuple[float, int], b: tuple[float, int], output: tuple[float, int], relu: bool):
        super().__init__()
        self.a, self.b, self.output, self.relu = a, b, output, relu
        # the one pass over the codes eager torch has (ResNet-50 b1 on Zen 5: 26.4 ms a call against 29.7 with
        # the add as float32 dequantize/add/quantize ops)
        self.op = torch.ops.quantized.add_relu if relu else torch.ops.quantized.add

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        qa = torch._make_per_tensor_quantized_tensor(a, *self.a)
        qb = torch._make_per_tensor_quantized_tensor(b, *self.b)
        return self.op(qa, qb, *self.output).int_repr()

    def extra_repr(self) -> str:
        return f"a={self.a}, b={self.b}, output={self.output}, relu={self.relu}"


class QPad(nn.Module if nn else object):  # type: ignore[misc]
    """pad with 0 of uint8 codes: the new cells get the zero point (the code of 0.0), channels_last kept (F.pad
    would hand the next conv an NCHW buffer to reorder: EfficientNet-Lite0's int8 at batch 8 ran 387 ms a call
    on the float dequantize/pad/quantize ops, against 21 for OpenVINO's whole network)."""

    def __init__(self, pads: tuple[int, int, int, int], zero: int):
        super().__init__()
        self.pads, self.zero = pads, zero

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        top, left, bottom, right = self.pads
        n, c, h, w = codes.shape
        out = torch.empty((n, c, h + top + bottom, w + left + right), dtype=codes.dtype, device=codes.device,
                          memory_format=torch.channels_last).fill_(self.zero)
        out[:, :, top:top + h, left:left + w] = codes
        return out

    def extra_repr(self) -> str:
        return f"pads={self.pads}, zero={self.zero}"


class QMaxPool(nn.Module if nn else object):  # type: ignore[misc]
    """max_pool2d of uint8 codes, channels_last kept: torch's quantized max pool on the codes viewed as a quint8
    tensor (F.max_pool2d has no uint8 kernel; padding is never the max, as in float). ResNet-50's stem pooled
    dequantized float32 and quantized it again before."""

    def __init__(self, attrs, scale: float, zero: int):
        super().__init__()
        self.window = (attrs.kernel_size, attrs.stride, attrs.padding, attrs.dilation, attrs.ceil_mode)
        self.scale, self.zero = scale, zero

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        q = torch._make_per_tensor_quantized_tensor(codes, self.scale, self.zero)
        return torch.nn.functional.max_pool2d(q, *self.window).int_repr()

    def extra_repr(self) -> str:
        return f"window={self.window}, zero={self.zero}"


def lower_int8(lw: Lowering, node: Node) -> torch.fx.Node:
    """The rule for a node `Int8Plan.lowers`: an int8 conv, an add of two codes, a zero pad or max pool of codes."""
    if node.name in lw.int8.convs:
        return int8_conv(lw, node, lw.int8.convs[node.name])
    if node.name in lw.int8.shared:
        codes, scale, zero = lw.int8.shared[node.name]
        module = QPad(node.attrs.pads, zero) if node.op == "pad" else QMaxPool(node.attrs, scale, zero)
        return lw.module(node, module, lw.value(codes))
    (a, sa, za), (b, sb, zb) = lw.int8.adds[node.name]
    module = QAdd((sa, za), (sb, zb), _output(lw, node), node.name in lw.int8.relus)
    return lw.module(node, module, lw.value(a), lw.value(b))


QUANT_RULES: dict[str, Callable[[Lowering, Node], torch.fx.Node]] = {
    "quantize_linear": _quantize_linear, "dequantize_linear": _dequantize_linear,
}
