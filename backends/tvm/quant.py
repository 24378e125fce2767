"""The TVM lowering rules of the int8 QDQ ops (ir/ops/quantize_linear.py, dequantize_linear.py), merged into
`lower.RULES`: an int8 QDQ graph runs its exact quantize/dequantize arithmetic, with the convolutions and matmuls
in float32 on the dequantized weights, under the same hand-written schedules as a float32 graph.

Why not int8 kernels: TVM 0.27's Relax lowers ``conv2d(int8, int8, out_dtype="int32")`` to plain TIR loops, which
neither the backend's hand-written x86 schedules nor a shipped database cover (no VNNI ``vpdpbusd`` tensorization
here), so an integer conv would be far slower than the float32 one; the compile report says so (`WARNING`).

Like the reference (`quantize_linear.reference`), the quantized codes are integers held in float32: exact for
int8/uint8, and for the int32 bias codes below 2^24 that the calibration pass guarantees. ``q = clip(round(x /
scale) + zero_point)``: TVM's ``round`` lowers to LLVM's ``nearbyint``, round half to even as ONNX specifies
(a test pins a tie). A dequantized parameter (an int8 weight, an int32 bias) is computed once here in float64 and
becomes a float32 constant, so no dequantize runs per call.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ...ir.graph import Node
from ...ir.ops.quantize_linear import QDTYPES

if TYPE_CHECKING:
    from .lower import _Lowering

WARNING = ("tvm backend: int8 runs the QDQ graph's exact quantize/dequantize arithmetic with float32 convolutions "
           "on the dequantized weights: TVM 0.27 has no int8 (VNNI) conv schedule here, so no int8 kernels run")


def _scale_zero(lo: _Lowering, node: Node, value: str) -> tuple[Any, Any]:
    """The node's scale and zero point as float32 constants broadcasting against ``value``."""
    from .lower import relax

    s, z = node.attrs.broadcast(lo.g.types[value].rank, np.float32)
    return relax.const(np.ascontiguousarray(s), "float32"), relax.const(np.ascontiguousarray(z), "float32")


def _quantize_linear(lo: _Lowering, node: Node) -> Any:
    from .lower import relax

    x = lo.arg(node.inputs[0])
    s, z = _scale_zero(lo, node, node.inputs[0])
    low, high = QDTYPES[node.attrs.dtype]
    q = lo.bb.emit(relax.op.add(relax.op.round(relax.op.divide(x, s)), z))
    return relax.op.clip(q, low, high)


def _dequantize_linear(lo: _Lowering, node: Node) -> Any:
    from .lower import relax

    name, a = node.inputs[0], node.attrs
    if name in lo.params and name not in lo.values:  # an int8 weight or int32 bias: its float value, once
        s, z = a.broadcast(lo.g.types[name].rank, np.float64)
        return lo.weight(node.name, (np.asarray(lo.params[name], np.float64) - z) * s)
    s, z = _scale_zero(lo, node, name)
    return relax.op.multiply(relax.op.subtract(lo.arg(name), z), s)


QUANT_RULES: dict[str, Callable[[_Lowering, Node], Any]] = {
    "quantize_linear": _quantize_linear, "dequantize_linear": _dequantize_linear,
}
