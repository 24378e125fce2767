"""The Triton lowering of int8 QDQ graphs (ir/passes/quantize.py), merged into `lower.LOWERINGS`.

- A conv2d whose input is a per-tensor int8 or uint8 dequantize_linear read by nothing else and whose weight is
  a symmetric int8 dequantize_linear of a parameter (what the quantization pass makes of every conv) runs as an
  int8 conv (`kernels.triton.conv2d.conv2d_int8`: the activation codes × the weight codes in an int32
  ``tl.dot``; a depthwise one sums its integer products in float32, exact below 2^24):
  `ir.passes.int8_patterns.int8_convs` finds them before the weights are folded, the lowering absorbs their
  input's dequantize_linear (no launch: the conv reads the codes) and gives the codes' release to the conv.
- A linear or fused_linear of the same pattern (`int8_patterns.int8_linears`: per-channel axis 0 or per-tensor
  weight) runs alike as an int8 linear (`kernels.triton.linear.linear_int8`: the int8 conv kernel on the 1×1
  view, one launch: x_scale · w_scale[o] · Σ (q_x − z_x) q_w + bias, then residual and activation as the float
  linear's epilogue), its input's dequantize_linear absorbed. `Lowering.run` sends every node of either kind
  to `int8_rule`.
- Every other quantize_linear and dequantize_linear is an elementwise launch of their exact arithmetic
  (`kernels.triton.quant`), the codes integers held in float32 as the reference holds them; the other linears
  and the adds run in float32 on the dequantized values, the dequantized weights folded into float32 parameters
  once by `build` (``fold_constants(dequantize=True)``).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from ...ir.graph import Graph, Node
from ...ir.ops.quantize_linear import QDTYPES
from ...ir.passes.int8_patterns import CONVS, LINEARS, Int8Conv, Int8Linear, int8_convs, int8_linears

__all__ = ["CONVS", "LINEARS", "QUANT_RULES", "Int8Conv", "Int8Linear", "int8_conv", "int8_convs", "int8_linear",
           "int8_linears", "int8_rule", "warning"]

if TYPE_CHECKING:
    from .lower import Lowering
    from .plan import Step


def warning(int8: Mapping[str, Int8Conv], graph: Graph) -> str:
    """What ran how in ``graph`` (a QDQ graph, lowered with the int8 convs and linears ``int8``)."""
    convs = sum(n.op in CONVS for n in graph.nodes)
    linears = sum(n.op in LINEARS for n in graph.nodes)
    on_codes = sum(isinstance(q, Int8Linear) for q in int8.values())
    return (f"triton backend: int8: {len(int8) - on_codes} of {convs} convolutions and {on_codes} of {linears} "
            f"linears run on the int8 codes (int8 tl.dot kernels with int32 accumulation; depthwise convs as exact "
            f"integer sums carried in float32); the other linears and the adds run in float32 on the dequantized "
            f"values (the QDQ graph's exact arithmetic)")


def int8_rule(lw: Lowering, node: Node) -> Step:
    """The launch of a node ``lw.int8`` holds: the int8 linear's or the int8 conv's."""
    q = lw.int8[node.name]
    return int8_linear(lw, node, q) if isinstance(q, Int8Linear) else int8_conv(lw, node, q)


def int8_conv(lw: Lowering, node: Node, q: Int8Conv) -> Step:
    """The int8 conv's launch: the codes in, the conv's float32 output (+ bias, residual, activation) out."""
    import torch

    from ...kernels.triton import conv2d as k_conv
    from ...kernels.triton import runtime
    from .lower import _operands  # lower imports this module: resolved when a graph lowers
    from .plan import weight_reader

    a = node.attrs
    _, b, residual, _, _ = _operands(lw, node, len(node.inputs) > 2)  # weight and bias are parameters by now
    bias = lw.tensor(b, torch.float32) if b else None  # the real bias, dequantized once (`build`)
    codes = torch.from_numpy(q.weight_codes).to(runtime.DEVICE)
    packed = k_conv.pack_int8(codes, torch.from_numpy(q.weight_scale).to(runtime.DEVICE), q.x_scale, q.x_zero,
                              bias, a.groups, q.x_dtype)
    x = lw.value(q.codes)
    rv = lw.value(residual) if residual else None
    output, act, (alpha, beta) = lw.epilogue(node)

    def run(env, out):
        return k_conv.conv2d_int8(x(env), packed, stride=a.stride, padding=a.padding, dilation=a.dilation,
                                  residual=rv(env) if rv else None, activation=act, alpha=alpha, beta=beta, out=out)

    o, cg, kh, kw = q.weight_codes.shape
    covers = (q.dequantize, *lw.covers(output, weight_reader(lw.original, node.inputs[1])))
    kind = "/depthwise" if cg == 1 and a.groups > 1 else f"/g{a.groups}" if a.groups > 1 else ""
    text = (f"{output}: conv2d int8 {kh}×{kw}/s{a.stride[0]}/p{a.padding[0]}{kind} {cg * a.groups}→{o} on the codes of "
            f"{q.codes}" + (" +bias" if b else "") + (f" +residual({residual})" if residual else "")
            + (f" {act}" if act else "") + f"  [{', '.join(covers)}]")
    return lw.step(output, "conv2d_int8", run, text, covers)


def int8_linear(lw: Lowering, node: Node, q: Int8Linear) -> Step:
    """The int8 linear's launch: the codes in (their leading axes flattened), the linear's float32 output (+ bias,
    residual, activation) out."""
    import torch

    from ...kernels.triton import linear as k_linear
    from ...kernels.triton import runtime
    from .lower import _operands
    from .plan import weight_reader

    _, b, residual, _, _ = _operands(lw, node, True)  # weight and bias are parameters by now
    bias = lw.tensor(b, torch.float32) if b else None  # the real bias, dequantized once (`build`)
    codes = torch.from_numpy(q.weight_codes).to(runtime.DEVICE)
    packed = k_linear.pack_int8(codes, torch.from_numpy(q.weight_scale).to(runtime.DEVICE), q.x_scale, q.x_zero,
                                bias, q.x_dtype)
    x = lw.logical(q.codes)  # the kernel flattens the leading axes: an NHWC 4-D input is copied to NCHW first
    rv = lw.logical(residual) if residual else None
    output, act, (alpha, beta) = lw.epilogue(node)

    def run(env, out):
        return k_linear.linear_int8(x(env), packed, residual=rv(env) if rv else None, activation=act, alpha=alpha,
                                    beta=beta, out=out)

    o, i = q.weight_codes.shape
    covers = (q.dequantize, *lw.covers(output, weight_reader(lw.original, node.inputs[1])))
    text = (f"{output}: linear int8 {i}→{o} on the codes of {q.codes}" + (" +bias" if b else "")
            + (f" +residual({residual})" if residual else "") + (f" {act}" if act else "")
            + f"  [{', '.join(covers)}]")
    return lw.step(output, "linear_int8", run, text, covers)


def _qdq(lw: Lowering, node: Node) -> Step:
    import torch

    from ...kernels.triton import quant as k_quant
    from ...kernels.triton import runtime

    a, name = node.attrs, node.inputs[0]
    x = lw.value(name, dense=True)
    rank = lw.graph.types[name].rank
    axis = a.axis % rank if a.per_channel else None
    scale = torch.tensor(a.scale, dtype=torch.float32, device=runtime.DEVICE)
    zero = torch.tensor(a.zero_point, dtype=torch.float32, device=runtime.DEVICE)
    dequantize = node.op == "dequantize_linear"
    codes = QDTYPES[a.dtype]

    def run(env, out):
        return k_quant.qdq(x(env), scale, zero, dequantize=dequantize, code_range=codes, axis=axis, out=out)

    how = f"per channel (axis {axis})" if axis is not None else f"scale {a.scale[0]:.4g} zero {a.zero_point[0]}"
    return lw.step(node.name, node.op, run, f"{node.name}: {node.op} {a.dtype} {how}", (node.name,))


QUANT_RULES: dict[str, Callable[[Lowering, Node], Step]] = {"quantize_linear": _qdq, "dequantize_linear": _qdq}
