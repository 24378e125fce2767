"""The Triton lowering of int8 QDQ graphs (ir/passes/quantize.py), merged into `lower.LOWERINGS`.

- A conv2d whose input is a per-tensor int8 or uint8 dequantize_linear read by nothing else and whose weight is
  a symmetric int8 dequantize_linear of a parameter (what the quantization pass makes of every conv) runs as an
  int8 conv (`kernels.triton.conv2d.conv2d_int8`: the activation codes × the weight codes in an int32
  ``tl.dot``; a depthwise one sums its integer products in float32, exact below 2^24):
  `ir.passes.int8_patterns.int8_convs` finds them before the weights are folded, the lowering absorbs their
  input's dequantize_linear (no launch: the conv reads the codes) and gives the codes' release to the conv.
- Every other quantize_linear and dequantize_linear is an elementwise launch of their exact arithmetic
  (`kernels.triton.quant`), the codes integers held in float32 as the reference holds them; linears and adds run
  in float32 on the dequantized values, the dequantized weights folded into float32 parameters once by `build`
  (``fold_constants(dequantize=True)``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ...ir.graph import Node
from ...ir.ops.quantize_linear import QDTYPES
from ...ir.passes.int8_patterns import CONVS, Int8Conv, int8_convs

__all__ = ["CONVS", "QUANT_RULES", "Int8Conv", "int8_conv", "int8_convs", "warning"]

if TYPE_CHECKING:
    from .lower import Lowering
    from .plan import Step


def warning(int8: int, convs: int) -> str:
    return (f"triton backend: int8: {int8} of {convs} convolutions run on the int8 codes (int8 tl.dot kernels; "
            f"depthwise ones as exact integer sums carried in float32); linears and adds run in float32 on the "
            f"dequantized values (the QDQ graph's exact arithmetic)")


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
