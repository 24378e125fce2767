"""The shared op corpus: every registered op, every attribute, and the edge cases backends get wrong.

Shapes have every dimension distinct (N=2, C=3, H=7, W=5 …) so a transposed axis cannot pass by accident.
Edge cases: 1×1 spatial inputs, kernel = input size, stride > kernel, padding ≥ kernel, ceil_mode remainders
(including torch's rule that drops a last window starting in the padding), rectangular kernels/strides,
grouped and depthwise convs, channel counts that are not multiples of a tile (19, 33), broadcasting-free
variadic ops, asymmetric padding of each side alone, mul's one broadcast (the (N, C, 1, 1) gate), the mobile
activations across their break points (fused into conv/linear too), and multi-node patterns a lowering may
rewrite (conv+BN folding, a conv whose output is also read elsewhere so it must not be folded, residual blocks,
two graph outputs, squeeze-and-excitation, TensorFlow's "SAME" stride-2 padding).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

import numpy as np

from ..ir import ops as ir_ops
from ..ir.builder import GraphBuilder
from ..ir.graph import Graph, Node, TensorType
from ..ir.ops._base import pair
from ..ir.ops._pool import PoolAttrs
from ..ir.ops.adaptive_avg_pool2d import AdaptivePoolAttrs
from ..ir.ops.batch_norm import BatchNormAttrs
from ..ir.ops.clip import ClipAttrs
from ..ir.ops.concat import ConcatAttrs
from ..ir.ops.conv2d import Conv2dAttrs
from ..ir.ops.dropout import DropoutAttrs
from ..ir.ops.elu import EluAttrs
from ..ir.ops.flatten import FlattenAttrs
from ..ir.ops.fused_conv2d import FusedConv2dAttrs
from ..ir.ops.fused_linear import FusedLinearAttrs
from ..ir.ops.leaky_relu import LeakyReluAttrs
from ..ir.ops.lrn import LrnAttrs
from ..ir.ops.pad import PadAttrs
from ..ir.ops.quantize_linear import QuantAttrs
from ..ir.ops.reshape import ReshapeAttrs
from ..ir.ops.softmax import SoftmaxAttrs
from ..ir.passes.quantize import host_weight_bits, weight_max
from .cases import OpCase, make_case, node_case, pair_tag

X = (2, 3, 7, 5)  # the default activation: N, C, H, W all distinct


def conv_case(n: int, c: int, h: int, w: int, o: int, k, stride=1, padding=0, dilation=1, groups: int = 1,
              bias: bool = True, tag: str = "", prefix: str = "conv2d") -> OpCase:
    a = Conv2dAttrs(stride, padding, dilation, groups)
    kh, kw = pair(k, "kernel_size")
    case_id = (f"{prefix}-k{pair_tag((kh, kw))}-s{pair_tag(a.stride)}-p{pair_tag(a.padding)}"
               f"-d{pair_tag(a.dilation)}-g{groups}" + ("" if bias else "-nobias") + (f"-{tag}" if tag else ""))
    params = [("weight", (o, c // groups, kh, kw))] + ([("bias", (o,))] if bias else [])
    tags = ["dilation"] if a.dilation != (1, 1) else []
    return node_case(case_id, "conv2d", a, [(n, c, h, w)], params, tags=tags)


def pool_case(op: str, shape, k, stride=None, padding=0, dilation=1, ceil_mode=False, count_include_pad=True,
              tag: str = "", prefix: str = "") -> OpCase:
    a = PoolAttrs(k, stride, padding, dilation, ceil_mode, count_include_pad)
    case_id = (f"{prefix or op}-k{pair_tag(a.kernel_size)}-s{pair_tag(a.stride)}-p{pair_tag(a.padding)}"
               + (f"-d{pair_tag(a.dilation)}" if a.dilation != (1, 1) else "") + ("-ceil" if ceil_mode else "")
               + ("" if count_include_pad or op != "avg_pool2d" else "-nopad") + (f"-{tag}" if tag else ""))
    tags = (["ceil_mode"] if ceil_mode else []) + (["dilation"] if a.dilation != (1, 1) else [])
    return node_case(case_id, op, a, [shape], tags=tags)


def _conv_cases() -> list[OpCase]:
    return [
        conv_case(2, 3, 7, 5, 4, 3),
        conv_case(2, 3, 7, 5, 4, 3, padding=1, bias=False),
        conv_case(2, 3, 7, 5, 4, 1),
        conv_case(2, 6, 7, 5, 4, 1, stride=2, tag="downsample"),
        conv_case(2, 3, 9, 7, 4, 3, stride=2, padding=1),
        conv_case(2, 3, 8, 6, 5, (3, 2), stride=(2, 1), padding=(1, 0), tag="rect"),
        conv_case(2, 3, 9, 8, 4, 3, dilation=2),
        conv_case(2, 3, 9, 8, 4, 3, padding=2, dilation=2),
        conv_case(2, 3, 9, 8, 4, (2, 3), padding=(1, 2), dilation=(3, 2), tag="rect"),
        conv_case(2, 6, 9, 8, 9, 3, stride=2, padding=1, dilation=2, groups=3),
        conv_case(2, 4, 7, 5, 6, 3, padding=1, groups=2),
        conv_case(2, 5, 7, 6, 5, 3, padding=1, groups=5, tag="depthwise"),
        conv_case(2, 3, 9, 7, 6, 3, stride=2, padding=1, groups=3, tag="depthwise-x2"),
        conv_case(2, 3, 8, 7, 4, 2, stride=3, tag="stride-gt-kernel"),
        conv_case(2, 3, 7, 5, 4, (7, 5), tag="kernel-eq-input"),
        conv_case(2, 3, 1, 1, 4, 1, tag="in1x1"),
        conv_case(2, 3, 1, 1, 4, 3, padding=1, tag="in1x1"),
        conv_case(2, 3, 6, 5, 4, 2, padding=3, tag="pad-gt-kernel"),
        conv_case(1, 3, 13, 11, 5, 7, stride=2, padding=3, bias=False, tag="stem"),
        conv_case(2, 19, 6, 10, 33, 3, padding=1, tag="wide"),
        conv_case(2, 8, 17, 15, 16, 3, padding=1, tag="large"),
        # shapes differential fuzzing found oneDNN's NHWC convolution getting wrong (kept exactly as found):
        # one strided output column (garbage), padding as wide as the dilated kernel, dilation on a 1-tap axis
        # (segfaults)
        conv_case(3, 1, 7, 2, 1, 3, stride=(1, 2), padding=(2, 1), dilation=(2, 1), tag="regress-out1-strided"),
        conv_case(3, 3, 11, 1, 1, (3, 2), stride=2, padding=(1, 3), dilation=(3, 2), tag="regress-pad-ge-span"),
        conv_case(3, 3, 3, 1, 3, 1, stride=(3, 2), padding=(3, 1), dilation=(1, 2), tag="regress-dilated-1tap"),
    ]


def _pool_cases() -> list[OpCase]:
    out = []
    for op in ("max_pool2d", "avg_pool2d"):
        out += [
            pool_case(op, (2, 3, 8, 6), 2),
            pool_case(op, (2, 3, 9, 7), 3, 2, 1),
            pool_case(op, (2, 3, 8, 6), 3, 2, ceil_mode=True),
            pool_case(op, (2, 3, 5, 4), 2, 2, 1, ceil_mode=True, tag="drop-last"),  # H: last window in padding
            pool_case(op, (2, 3, 7, 5), 3, 1, 1, ceil_mode=True),
            pool_case(op, (2, 3, 8, 6), (3, 2), (2, 1), (1, 0), tag="rect"),
            pool_case(op, (2, 3, 8, 7), 2, 3, tag="stride-gt-kernel"),
            pool_case(op, (2, 3, 7, 5), (7, 5), tag="kernel-eq-input"),
            pool_case(op, (2, 3, 1, 1), 1, tag="in1x1"),
            pool_case(op, (2, 4, 3, 5), 2, 2, ceil_mode=True, tag="odd"),
        ]
    out += [
        pool_case("max_pool2d", (2, 3, 9, 8), 3, 1, dilation=2),
        pool_case("max_pool2d", (2, 3, 9, 8), 3, 2, 1, dilation=(2, 1), ceil_mode=True),
        pool_case("avg_pool2d", (2, 3, 9, 7), 3, 2, 1, count_include_pad=False),
        pool_case("avg_pool2d", (2, 3, 8, 6), 3, 2, 1, ceil_mode=True, count_include_pad=False),
        pool_case("avg_pool2d", (2, 3, 5, 4), 2, 2, 1, ceil_mode=True, count_include_pad=False, tag="drop-last"),
    ]
    return out


def _adaptive_cases() -> list[OpCase]:
    def case(shape, size, tag=""):
        a = AdaptivePoolAttrs(size)
        return node_case(f"adaptive_avg_pool2d-o{pair_tag(a.output_size)}" + (f"-{tag}" if tag else ""),
                         "adaptive_avg_pool2d", a, [shape])

    return [case(X, 1), case(X, (2, 3), "uneven"), case((2, 3, 6, 4), (3, 2), "even"),
            case((2, 3, 1, 4), (6, 5), "upsample"), case((2, 3, 1, 1), 1, "in1x1")]


def _linear_cases() -> list[OpCase]:
    def case(x, out, bias=True, tag=""):
        params = [("weight", (out, x[-1]))] + ([("bias", (out,))] if bias else [])
        return node_case(f"linear-{'x'.join(map(str, x))}-o{out}" + ("" if bias else "-nobias")
                         + (f"-{tag}" if tag else ""), "linear", None, [x], params)

    return [case((2, 7), 5), case((2, 7), 5, bias=False), case((1, 9), 3), case((2, 3, 7), 5, tag="rank3"),
            case((3, 67), 33, tag="wide")]


def _elementwise_cases() -> list[OpCase]:
    def case(op, attrs, shape=X, tag="", scale=1.0):
        return node_case(f"{op}-{'x'.join(map(str, shape))}" + (f"-{tag}" if tag else ""), op, attrs, [shape],
                         scale=scale)

    return [
        case("relu", None), case("relu", None, (3, 10)), case("relu6", None, X, "wide", scale=8.0),
        case("leaky_relu", LeakyReluAttrs()), case("leaky_relu", LeakyReluAttrs(0.2), (3, 10), "slope0.2"),
        case("sigmoid", None), case("sigmoid", None, (3, 10), "wide", scale=20.0),
        case("tanh", None), case("tanh", None, (3, 10), "wide", scale=20.0),
        case("elu", EluAttrs()), case("elu", EluAttrs(0.5), (3, 10), "alpha0.5", scale=3.0),
        case("dropout", DropoutAttrs(0.5)), case("dropout", DropoutAttrs(0.2), (3, 10), "p0.2"),
        case("softmax", SoftmaxAttrs(1), (3, 10)), case("softmax", SoftmaxAttrs(1), X, "axis1"),
        case("softmax", SoftmaxAttrs(-1), X, "axis-1"), case("softmax", SoftmaxAttrs(0), (3, 10), "axis0"),
        case("softmax", SoftmaxAttrs(1), (3, 10), "large", scale=50.0),
        case("flatten", FlattenAttrs(1)), case("flatten", FlattenAttrs(2), X, "start2"),
        case("flatten", FlattenAttrs(0), X, "start0"), case("flatten", FlattenAttrs(3), X, "start3"),
    ]


def _mobile_cases() -> list[OpCase]:
    """pad (each side alone, all four unequal, a fill value, none at all), mul (same shape, the (N, C, 1, 1) gate,
    a parameter gate), the mobile activations across their break points (±3), clip and reshape."""

    def pad(shape, pads, value=0.0, tag=""):
        return node_case(f"pad-{'-'.join(map(str, pads))}-{'x'.join(map(str, shape))}" + (f"-{tag}" if tag else ""),
                         "pad", PadAttrs(pads, value), [shape])

    def mul(shapes, params=(), tag=""):
        return node_case(f"mul-{'-'.join('x'.join(map(str, s)) for s in shapes)}" + (f"-{tag}" if tag else ""),
                         "mul", None, shapes, params)

    def unary(op, attrs=None, shape=X, tag="", scale=4.0):
        return node_case(f"{op}-{'x'.join(map(str, shape))}" + (f"-{tag}" if tag else ""), op, attrs, [shape],
                         scale=scale)

    return [
        pad(X, (1, 0, 0, 0)), pad(X, (0, 1, 0, 0)), pad(X, (0, 0, 1, 0)), pad(X, (0, 0, 0, 1)),
        pad(X, (0, 0, 1, 1), tag="tf-same"), pad(X, (1, 2, 3, 4)), pad((2, 3, 1, 1), (2, 1, 0, 3), tag="in1x1"),
        pad(X, (2, 0, 1, 3), -1.5, tag="value"), pad(X, (0, 0, 0, 0), tag="none"),
        mul([X, X]), mul([X, (2, 3, 1, 1)], tag="gate-in1x1"), mul([(3, 10), (3, 10)]),
        mul([X], [("y", (2, 3, 1, 1))], tag="param-gate"),
        unary("hardswish"), unary("hardswish", shape=(3, 10), tag="wide", scale=8.0),
        unary("hardsigmoid"), unary("hardsigmoid", shape=(3, 10), tag="wide", scale=8.0),
        unary("silu"), unary("silu", shape=(3, 10), tag="wide", scale=20.0),
        unary("clip", ClipAttrs(-1.0, 0.5), tag="both"), unary("clip", ClipAttrs(None, 0.25), (3, 10), "max"),
        unary("clip", ClipAttrs(-0.5, None), tag="min"), unary("clip", ClipAttrs(1.0, -1.0), (3, 10), "min-gt-max"),
        # not flattens of the trailing axes (those are flatten's: an ONNX round trip gives them back as flatten)
        unary("reshape", ReshapeAttrs((2, 15, 7)), tag="to-2x15x7"),
        unary("reshape", ReshapeAttrs((6, 35)), tag="to-6x35"),
        unary("reshape", ReshapeAttrs((1, 2, 105)), tag="to-1x2x105"),
    ]


def _norm_cases() -> list[OpCase]:
    def bn(shape, eps, tag=""):
        c = shape[1]
        roles = [(r, (c,)) for r in ("weight", "bias", "running_mean", "running_var")]
        return node_case(f"batch_norm-{'x'.join(map(str, shape))}" + (f"-{tag}" if tag else ""), "batch_norm",
                         BatchNormAttrs(eps), [shape], roles)

    def lrn(shape, attrs, tag=""):
        return node_case(f"lrn-n{attrs.size}-{'x'.join(map(str, shape))}" + (f"-{tag}" if tag else ""), "lrn",
                         attrs, [shape])

    return [bn(X, 1e-5), bn((4, 6), 1e-3, "eps1e-3"), bn((2, 5, 1, 1), 1e-5, "in1x1"),
            bn((2, 4, 3, 5), 0.1, "eps0.1"),  # large enough that an ignored or misplaced eps shows
            lrn((2, 7, 5, 4), LrnAttrs()), lrn((2, 6, 5, 4), LrnAttrs(3)), lrn((2, 5, 4, 3), LrnAttrs(2), "even"),
            lrn(X, LrnAttrs(7), "size-gt-c"), lrn((2, 8, 3, 5), LrnAttrs(4, 1e-3, 0.5, 1.0), "attrs")]


def _variadic_cases() -> list[OpCase]:
    def add(shapes, tag=""):
        return node_case(f"add-{len(shapes)}x-{'x'.join(map(str, shapes[0]))}" + (f"-{tag}" if tag else ""),
                         "add", None, shapes)

    def cat(shapes, axis, tag=""):
        return node_case(f"concat-axis{axis}-{len(shapes)}in" + (f"-{tag}" if tag else ""), "concat",
                         ConcatAttrs(axis), shapes)

    return [add([X, X]), add([X, X, X]), add([(3, 10), (3, 10)]),
            cat([X, (2, 4, 7, 5)], 1), cat([(2, 1, 7, 5), X, (2, 6, 7, 5)], 1), cat([X, (2, 3, 7, 4)], -1),
            cat([X, (1, 3, 7, 5)], 0), cat([X], 1, "single")]


def _fused_cases() -> list[OpCase]:
    """fused_conv2d / fused_linear (what passes.fuse emits): inputs (x, weight[, bias][, residual])."""

    def case(op, attrs, x, weight, out, tag):
        inputs = {"x": TensorType(x), **({"residual": TensorType(out)} if attrs.residual else {})}
        params = {f"{op}.weight": TensorType(weight)}
        if attrs.bias:
            params[f"{op}.bias"] = TensorType((weight[0],))
        node = Node(op, op, ("x", *params, *(("residual",) if attrs.residual else ())), attrs)
        return make_case(f"{op}-{tag}", Graph(inputs, (node,), (op,), params))

    conv, lin = FusedConv2dAttrs, FusedLinearAttrs
    return [
        case("fused_conv2d", conv(padding=1, activation="relu"), X, (4, 3, 3, 3), (2, 4, 7, 5), "relu"),
        case("fused_conv2d", conv(stride=2, padding=1, residual=True, activation="relu"), (2, 3, 9, 7),
             (6, 3, 3, 3), (2, 6, 5, 4), "s2-residual-relu"),
        case("fused_conv2d", conv(dilation=2, padding=2, bias=False, activation="tanh"), (2, 3, 9, 8), (4, 3, 3, 3),
             (2, 4, 9, 8), "d2-nobias-tanh"),
        case("fused_conv2d", conv(groups=3, activation="sigmoid"), (2, 6, 7, 5), (9, 2, 1, 1), (2, 9, 7, 5),
             "g3-sigmoid"),
        case("fused_conv2d", conv(padding=1, groups=5, residual=True, activation="relu6"), (2, 5, 7, 6),
             (5, 1, 3, 3), (2, 5, 7, 6), "depthwise-residual-relu6"),
        case("fused_conv2d", conv(residual=True), X, (4, 3, 1, 1), (2, 4, 7, 5), "residual"),
        case("fused_conv2d", conv(padding=1, activation="hardswish"), X, (4, 3, 3, 3), (2, 4, 7, 5), "hardswish"),
        case("fused_conv2d", conv(stride=2, residual=True, activation="hardsigmoid"), (2, 3, 9, 7), (6, 3, 1, 1),
             (2, 6, 5, 4), "s2-residual-hardsigmoid"),
        case("fused_conv2d", conv(padding=1, groups=5, bias=False, activation="silu"), (2, 5, 7, 6), (5, 1, 3, 3),
             (2, 5, 7, 6), "depthwise-nobias-silu"),
        case("fused_linear", lin(activation="relu"), (2, 7), (5, 7), (2, 5), "relu"),
        case("fused_linear", lin(bias=False, residual=True, activation="tanh"), (3, 9), (4, 9), (3, 4),
             "nobias-residual-tanh"),
        case("fused_linear", lin(activation="hardswish"), (2, 7), (5, 7), (2, 5), "hardswish"),
        case("fused_linear", lin(residual=True, activation="silu"), (3, 9), (4, 9), (3, 4), "residual-silu"),
    ]


# -- multi-node patterns ----------------------------------------------------------------------------------------

def _pattern(name: str, shape: tuple[int, ...], body: Callable[[GraphBuilder, str], str | tuple[str, ...]],
             tags: Iterable[str] = ()) -> OpCase:
    b = GraphBuilder(f"pattern-{name}", shape, input_name="x")
    return make_case(f"pattern-{name}", b.build(body(b, b.input)), tags=tags)


def _patterns() -> list[OpCase]:
    def conv_bn(b, x, bias=False, stride=1):
        return b.batch_norm(b.conv2d(x, 4, 3, stride=stride, padding=1, bias=bias, name="conv"), name="bn")

    def shared(b, x):  # the conv output has a second reader: folding BN into it would change that reader
        y = b.conv2d(x, 4, 3, padding=1, name="conv")
        return b.add(b.batch_norm(y, name="bn"), y, name="add")

    def residual(b, x):
        y = b.relu(b.batch_norm(b.conv2d(x, 3, 3, padding=1, bias=False, name="conv1"), name="bn1"))
        y = b.batch_norm(b.conv2d(y, 3, 3, padding=1, bias=False, name="conv2"), name="bn2")
        return b.relu(b.add(y, x, name="add"))

    def downsample(b, x):
        y = b.relu(conv_bn(b, x, stride=2))
        skip = b.batch_norm(b.conv2d(x, 4, 1, stride=2, bias=False, name="down"), name="down_bn")
        return b.relu(b.add(y, skip))

    def inception(b, x):
        b1 = b.relu(b.conv2d(x, 2, 1, name="b1"))
        b2 = b.relu(b.conv2d(b.relu(b.conv2d(x, 4, 1, name="b2r")), 5, 3, padding=1, name="b2"))
        b3 = b.conv2d(b.max_pool2d(x, 3, 1, 1, ceil_mode=True), 6, 1, name="b3")
        return b.concat([b1, b2, b3])

    def classifier(b, x):
        y = b.relu(b.conv2d(x, 4, 3, padding=1, name="conv"))
        y = b.flatten(b.adaptive_avg_pool2d(y, (2, 3)))
        return b.softmax(b.linear(b.dropout(y), 5, name="fc"))

    def conv_flatten(b, x):  # flatten straight after a conv: channels_last layouts must flatten in NCHW order
        return b.linear(b.flatten(b.relu(b.conv2d(x, 4, 3, name="conv"))), 6, name="fc")

    def squeeze_excite(b, x):  # EfficientNet's block: SiLU conv, pooled gate through two 1×1 convs, rescale
        y = b.silu(b.conv2d(x, 4, 3, padding=1, name="conv"))
        g = b.silu(b.conv2d(b.adaptive_avg_pool2d(y), 2, 1, name="se_reduce"))
        return b.mul(y, b.sigmoid(b.conv2d(g, 4, 1, name="se_expand")))

    def tf_same(b, x):  # TensorFlow "SAME" at stride 2: one more row and column at the bottom/right
        y = b.hardswish(b.conv2d(b.pad(x, (0, 0, 1, 1)), 4, 3, stride=2, name="conv"))
        return b.mul(y, b.hardsigmoid(b.adaptive_avg_pool2d(y)))

    def two_outputs(b, x):
        y = b.conv2d(x, 4, 3, padding=1, name="conv")
        return y, b.relu(b.batch_norm(y, name="bn"))

    return [
        _pattern("conv-bn", X, conv_bn),
        _pattern("conv-bias-bn-relu", X, lambda b, x: b.relu(conv_bn(b, x, bias=True))),
        _pattern("conv-bn-shared", X, shared),
        _pattern("bn-relu-conv", X, lambda b, x: b.conv2d(b.relu(b.batch_norm(x, name="bn")), 4, 3, name="conv")),
        _pattern("linear-bn", (2, 7), lambda b, x: b.batch_norm(b.linear(x, 5, name="fc"), name="bn")),
        # rank 3: BN normalises axis 1, not linear's feature axis, so it must not be folded into the weights
        _pattern("linear3d-bn", (2, 3, 7), lambda b, x: b.batch_norm(b.linear(x, 5, name="fc"), name="bn")),
        _pattern("residual", X, residual),
        _pattern("downsample", (2, 3, 9, 8), downsample),
        _pattern("inception", X, inception),
        _pattern("classifier", X, classifier),
        _pattern("conv-flatten", X, conv_flatten),
        _pattern("two-outputs", X, two_outputs),
        _pattern("squeeze-excite", X, squeeze_excite),
        _pattern("tf-same-hardswish", (2, 3, 9, 8), tf_same),
        _pattern("pad-conv", X, lambda b, x: b.conv2d(b.pad(x, (1, 1, 1, 1)), 4, 3, name="conv")),
    ]


def _quant_cases() -> list[OpCase]:
    """int8 QDQ: per-tensor and per-channel (axis 1, 3), int8 and uint8, scales small enough to saturate, then a
    quantized conv (uint8 activations, per-channel int8 weights, the output requantized) as the pass makes it."""
    def q(tag: str, attrs: QuantAttrs, shape=X) -> OpCase:
        return node_case(f"quantize_linear-{tag}", "quantize_linear", attrs, [shape], scale=2.0)

    def dq(tag: str, attrs: QuantAttrs, shape=X) -> OpCase:
        node = Node("dequantize_linear", "dequantize_linear", ("x",), attrs)
        return make_case(f"dequantize_linear-{tag}", Graph({"x": TensorType(shape, attrs.dtype)}, (node,),
                                                           (node.name,)))

    u8, per_c = QuantAttrs((0.03,), (128,), dtype="uint8"), QuantAttrs((0.01, 0.02, 0.05), (-3, 0, 5), axis=1)
    w8 = QuantAttrs((0.004, 0.002, 0.003, 0.005), axis=0)
    nodes = (Node("xq", "quantize_linear", ("x",), u8), Node("xd", "dequantize_linear", ("xq",), u8),
             Node("wd", "dequantize_linear", ("w",), w8),
             Node("conv", "conv2d", ("xd", "wd", "b"), Conv2dAttrs(stride=2, padding=1, groups=1)),
             Node("yq", "quantize_linear", ("conv",), QuantAttrs((0.05,), (120,), dtype="uint8")),
             Node("y", "dequantize_linear", ("yq",), QuantAttrs((0.05,), (120,), dtype="uint8")))
    conv = Graph({"x": TensorType((2, 3, 9, 7))}, nodes, ("y",),
                 {"w": TensorType((4, 3, 3, 3), "int8"), "b": TensorType((4,))})
    qconv = make_case("pattern-qdq-conv", conv, tags=["int8"])
    # its weight codes span what the pass makes on this machine ([-127, 127], or [-63, 63] where the CPU's int8
    # kernels saturate u8×s8 pairs: `quantize.host_weight_bits`), not int8's whole range, which no engine there
    # computes exactly
    top = weight_max(host_weight_bits())
    w = np.rint(qconv.params["w"].astype(np.float64) * top / 128).astype(np.int8)
    qconv = dataclasses.replace(qconv, params={**qconv.params, "w": w})
    return [q("int8", QuantAttrs((0.02,))), q("uint8", u8), q("int8-axis1", per_c),
            q("uint8-axis3", QuantAttrs((0.02, 0.03, 0.01, 0.04, 0.05), (0, 10, 255, 128, 3), axis=3, dtype="uint8")),
            dq("int8", QuantAttrs((0.02,), (-5,))), dq("uint8-axis1", QuantAttrs((0.01, 0.02, 0.05), (0, 128, 255),
                                                                             dtype="uint8")),
            qconv]


def op_cases(ops: Iterable[str] | None = None) -> list[OpCase]:
    """The corpus. With ``ops``, only the cases whose every node is one of those ops (unknown names raise)."""
    cases = (_conv_cases() + _pool_cases() + _adaptive_cases() + _linear_cases() + _elementwise_cases()
             + _mobile_cases() + _norm_cases() + _variadic_cases() + _fused_cases() + _patterns() + _quant_cases())
    seen: set[str] = set()
    for c in cases:
        if c.id in seen:
            raise AssertionError(f"duplicate op case id {c.id!r}")
        seen.add(c.id)
    if ops is None:
        return cases
    wanted = set(ops)
    for name in wanted:
        ir_ops.get(name)  # UnknownOpError lists the known ops
    return [c for c in cases if c.ops <= wanted]
