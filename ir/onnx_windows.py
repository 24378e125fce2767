"""ONNX handlers of the windowed ops and of padding for `convbench.ir.onnx_import`: Conv, MaxPool, AveragePool,
GlobalAveragePool and Pad.

ONNX pads each side on its own (``pads`` = [top, left, bottom, right], or ``auto_pad`` SAME_UPPER/SAME_LOWER,
which pads one more at the end or the start when the total is odd); the IR's conv and pools pad symmetrically, and
its pools by at most half the kernel (torch's rule). So an ONNX node's padding is split: the symmetric part (within
that limit) stays on the conv or pool, the rest becomes a `pad` node before it, named ``<output>::pad``. A conv's
and a counted average pool's extra padding is zeros; a max pool's is the lowest float32, which never wins a
window that holds an input element. An average pool that excludes the padding from its divisor
(count_include_pad=0) cannot take explicit padding and is refused when it would need some, as is ceil_mode with
explicit padding (the pad node's cells would count as input when ceil_mode decides a last window).

A dilated AveragePool (the IR's average pool has no dilation) whose every window divides by the kernel size
imports as a depthwise conv2d with weights 1/(KH·KW), named ``<output>::mean_weight``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import onnx

from .errors import IRError
from .onnx_ops import Unsupported, attributes, f32, rank4, secondary_output_used
from .ops._pool import PoolAttrs
from .ops.adaptive_avg_pool2d import AdaptivePoolAttrs
from .ops.conv2d import Conv2dAttrs
from .ops.pad import PadAttrs

if TYPE_CHECKING:
    from .onnx_import import Importer

Pads = tuple[int, int, int, int]  # (top, left, bottom, right), ONNX's 2-D order
LOWEST = float(np.finfo(np.float32).min)  # a max pool's explicit padding


def onnx_pads(a: dict, in_hw: tuple[int, ...], kernel: tuple[int, int], stride: tuple[int, int],
              dilation: tuple[int, int]) -> Pads:
    """The node's padding per side, from ``pads`` or ``auto_pad`` (SAME_UPPER puts an odd total's extra cell at
    the end, SAME_LOWER at the start)."""
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        total = [max(0, (-(-size // s) - 1) * s + (k - 1) * d + 1 - size)
                 for size, k, s, d in zip(in_hw, kernel, stride, dilation, strict=True)]
        begin = [t // 2 if auto == "SAME_UPPER" else t - t // 2 for t in total]
        return begin[0], begin[1], total[0] - begin[0], total[1] - begin[1]
    if auto == "VALID":
        return 0, 0, 0, 0
    pads = [int(p) for p in a.get("pads", [0, 0, 0, 0])]
    if len(pads) != 4:
        raise Unsupported(f"pads {pads} are not 2-D padding [top, left, bottom, right]")
    if min(pads) < 0:
        raise Unsupported(f"negative pads {pads} crop the input; the IR only pads")
    return pads[0], pads[1], pads[2], pads[3]


def split_pads(pads: Pads, limit: tuple[int, int]) -> tuple[tuple[int, int], Pads]:
    """(symmetric padding the op keeps, at most ``limit`` per axis; the rest, per side, for a pad node)."""
    top, left, bottom, right = pads
    h = min(top, bottom, limit[0])
    w = min(left, right, limit[1])
    return (h, w), (top - h, left - w, bottom - h, right - w)


def padded_input(imp: Importer, node: onnx.NodeProto, x: str, extra: Pads, value: float) -> str:
    """``x``, or a pad node in front of the op that adds ``extra`` (the asymmetric or excess padding)."""
    if extra == (0, 0, 0, 0):
        return x
    name = f"{node.output[0]}::pad"
    imp.emit(name, "pad", [x], PadAttrs(extra, value))
    return name


# -- one handler per ONNX op ------------------------------------------------------------------------------------
def conv(imp: Importer, node: onnx.NodeProto) -> None:
    a = attributes(node)
    x = imp.value(node.input[0])
    shape = rank4(imp, x, "Conv")
    # a weight or bias computed by a DequantizeLinear (a QDQ model) is the IR value; otherwise a constant
    computed = [node.input[1] not in imp.consts, len(node.input) > 2 and node.input[2] not in imp.consts]
    w_shape = (imp.types[imp.value(node.input[1])].shape if computed[0]
               else imp.const(node.input[1], "Conv weight").shape)
    if len(w_shape) != 4:
        raise Unsupported(f"weight of shape {w_shape}: only 2-D convolutions are supported")
    kernel = tuple(a.get("kernel_shape", w_shape[2:]))
    if kernel != w_shape[2:]:
        raise Unsupported(f"kernel_shape {kernel} differs from the weight's {w_shape[2:]}")
    stride, dilation = tuple(a.get("strides", (1, 1))), tuple(a.get("dilations", (1, 1)))
    pad, extra = split_pads(onnx_pads(a, shape[2:], kernel, stride, dilation), (1 << 30, 1 << 30))
    inputs = [imp.value(node.input[1]) if computed[0] else imp.param(node.input[1], imp.consts[node.input[1]])]
    if len(node.input) > 2 and node.input[2]:
        inputs.append(imp.value(node.input[2]) if computed[1]
                      else imp.param(node.input[2], imp.const(node.input[2], "Conv bias")))
    try:
        attrs = Conv2dAttrs(stride, pad, dilation, a.get("group", 1))
    except IRError as e:
        raise Unsupported(str(e)) from None
    imp.emit(node.output[0], "conv2d", [padded_input(imp, node, x, extra, 0.0), *inputs], attrs)


def pool(op: str) -> Callable[[Importer, onnx.NodeProto], None]:
    def handle(imp: Importer, node: onnx.NodeProto) -> None:
        a = attributes(node)
        if secondary_output_used(imp, node):
            raise Unsupported("the Indices output is used; the IR's max pool returns values only")
        x = imp.value(node.input[0])
        shape = rank4(imp, x, node.op_type)
        kernel = tuple(a["kernel_shape"])
        stride, dilation = tuple(a.get("strides", (1, 1))), tuple(a.get("dilations", (1, 1)))
        ceil_mode = bool(a.get("ceil_mode", 0))
        include_pad = bool(a.get("count_include_pad", 0)) if op == "avg_pool2d" else True
        pads = onnx_pads(a, shape[2:], kernel, stride, dilation)
        if op == "avg_pool2d" and dilation != (1, 1):
            _dilated_average(imp, node, x, kernel, stride, dilation, pads, ceil_mode, include_pad)
            return
        sym, extra = split_pads(pads, (kernel[0] // 2, kernel[1] // 2))
        if extra != (0, 0, 0, 0):
            if not include_pad:
                raise Unsupported(f"pads {list(pads)} with count_include_pad=0: the IR pools pad symmetrically by "
                                  f"at most half the kernel {kernel}, and explicit padding would be counted")
            if ceil_mode:
                raise Unsupported(f"ceil_mode with pads {list(pads)} beyond the IR pool's symmetric half-kernel "
                                  f"padding: explicit padding would change which last windows ceil_mode keeps")
        try:
            attrs = PoolAttrs(kernel, stride, sym, dilation, ceil_mode, include_pad)
        except IRError as e:
            raise Unsupported(str(e)) from None
        source = padded_input(imp, node, x, extra, LOWEST if op == "max_pool2d" else 0.0)
        imp.emit(node.output[0], op, [source], attrs)

    return handle


def _dilated_average(imp: Importer, node: onnx.NodeProto, x: str, kernel: tuple[int, int],
                     stride: tuple[int, int], dilation: tuple[int, int], pads: Pads, ceil_mode: bool,
                     include_pad: bool) -> None:
    """A dilated average pool as the depthwise conv it is when every window divides by KH·KW: the padding is
    counted (or there is none) and ceil_mode adds no partial last window."""
    h, w = imp.types[x].shape[2:]
    span = [d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True)]
    sizes = (h + pads[0] + pads[2], w + pads[1] + pads[3])
    partial = ceil_mode and any((n - s) % st for n, s, st in zip(sizes, span, stride, strict=True))
    if (any(pads) and not include_pad) or partial:
        raise Unsupported(f"dilations {dilation}: the IR's average pool has none, and with "
                          + ("count_include_pad=0 and padding" if not partial else "ceil_mode's partial windows")
                          + " the divisor varies, so it is no depthwise conv either")
    c = imp.types[x].shape[1]
    dtype = np.dtype(imp.types[x].dtype)
    weight = imp.param(f"{node.output[0]}::mean_weight", np.full((c, 1, *kernel), 1 / (kernel[0] * kernel[1]), dtype))
    sym, extra = split_pads(pads, (1 << 30, 1 << 30))
    imp.emit(node.output[0], "conv2d", [padded_input(imp, node, x, extra, 0.0), weight],
             Conv2dAttrs(stride, sym, dilation, c))


def global_average_pool(imp: Importer, node: onnx.NodeProto) -> None:
    x = imp.value(node.input[0])
    rank4(imp, x, "GlobalAveragePool")
    imp.emit(node.output[0], "adaptive_avg_pool2d", [x], AdaptivePoolAttrs(1))


def pad(imp: Importer, node: onnx.NodeProto) -> None:
    """Constant Pad of H and W only (the IR's pad); pads from the input (opset ≥ 11) or the attribute, with
    opset 18's ``axes``."""
    a = attributes(node)
    mode = a.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode != "constant":
        raise Unsupported(f"mode={mode}: the IR's pad fills with a constant")
    x = imp.value(node.input[0])
    rank4(imp, x, "Pad")
    inputs = [*node.input[1:], "", "", ""]
    if imp.opset >= 11:
        pads = [int(p) for p in imp.const(inputs[0], "Pad pads")] if inputs[0] else []
        value = float(np.asarray(imp.const(inputs[1], "Pad constant_value")).reshape(-1)[0]) if inputs[1] else 0.0
        axes = [int(v) % 4 for v in imp.const(inputs[2], "Pad axes")] if inputs[2] else [0, 1, 2, 3]
    else:
        pads, value, axes = [int(p) for p in a.get("pads", [])], float(a.get("value", 0.0)), [0, 1, 2, 3]
    if len(pads) != 2 * len(axes):
        raise Unsupported(f"pads {pads} do not give a begin and an end for each of the axes {axes}")
    begin, end = [0] * 4, [0] * 4
    for k, axis in enumerate(axes):
        begin[axis], end[axis] = pads[k], pads[k + len(axes)]
    if begin[:2] != [0, 0] or end[:2] != [0, 0]:
        raise Unsupported(f"pads {pads} pad the batch or channel axis; the IR's pad pads H and W")
    if min(begin + end) < 0:
        raise Unsupported(f"negative pads {pads} crop the input; the IR only pads")
    imp.emit(node.output[0], "pad", [x], PadAttrs((begin[2], begin[3], end[2], end[3]), f32(value)))


HANDLERS: dict[str, Callable[[Importer, onnx.NodeProto], None]] = {
    "Conv": conv,
    "MaxPool": pool("max_pool2d"),
    "AveragePool": pool("avg_pool2d"),
    "GlobalAveragePool": global_average_pool,
    "Pad": pad,
}
