"""dequantize_linear: y = (q − zero_point) · scale, ONNX DequantizeLinear (opset ≥ 13).

Attributes are `QuantAttrs` (ir/ops/quantize_linear.py: scale, zero_point, per-tensor or per-channel along
``axis``, "int8" or "uint8"), the same as the quantize_linear it undoes; the input's IR type must be that dtype
and the output is float32 (ONNX: the scale's type).

Reference: the quantized integers arrive held in a floating dtype (what quantize_linear's reference returns; an
int8/uint8 array is read as float64), and the result is computed in that dtype: in float64 it is exact
((q − z) has ≤ 9 bits, the float32 scale 24), which makes the float64 interpreter the oracle of an int8 engine.
FLOPs: 2 per element (subtract the zero point, multiply by the scale). No VJP (a quantized graph is inference
only: see quantize_linear).
"""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..graph import TensorType
from ._base import OpDef, Types
from .quantize_linear import QuantAttrs, compute_dtype


def infer(attrs: QuantAttrs, ins: Types) -> TensorType:
    (q,) = ins
    if q.dtype != attrs.dtype:
        raise ShapeError(f"dequantize_linear of {attrs.dtype} takes a {attrs.dtype} input, got {q.dtype}")
    attrs.check(q)
    return TensorType(q.shape, "float32")


def reference(attrs: QuantAttrs, q: np.ndarray) -> np.ndarray:
    dt = compute_dtype(q)
    s, z = attrs.broadcast(q.ndim, dt)
    return (np.asarray(q, dtype=dt) - z) * s


OP = OpDef(name="dequantize_linear", attrs_type=QuantAttrs, inputs=("q",), traits={"elementwise"}, infer=infer,
           flops=lambda attrs, ins, out: 2 * out.numel, reference=reference,
           flop_rule="2 per element: subtract the zero point, multiply by the scale")
