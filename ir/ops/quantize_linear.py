"""quantize_linear: q = saturate(round_half_even(x / scale) + zero_point), ONNX QuantizeLinear (opset ≥ 13).

Scale and zero point are **attributes** here, not inputs as in ONNX: every QDQ graph convbench makes has them as
compile-time constants (the calibration pass computes them), and as attributes they survive what happens to
parameters (``cast_params`` would cast a float32 scale to bfloat16 and an int8 zero point to float) and keep the
node self-describing. The ONNX exporter writes them as the float32 scale / int8|uint8 zero-point initializers
ONNX wants; the importer reads constant ones back into attributes.

Per-tensor when ``scale`` has one entry; per-channel along ``axis`` (ONNX's default 1; conv/linear weights use 0)
when it has ``x.shape[axis]`` entries. ``dtype`` is "int8" ([-128, 127]) or "uint8" ([0, 255]); the output's IR
type is that dtype ("int32" exists for dequantize_linear only: quantized biases). Scales are rounded to float32
on construction, so the IR and the exported model hold the same number.

Reference: the quantized integers held in the input's floating dtype (integers up to 255 are exact in every float
type), so the float64 oracle evaluates an int8 engine's arithmetic exactly and the arena/planner need no integer
buffers; `dequantize_linear` reads them back. Division is in the input's dtype (float32 for a float32 engine),
rounding half to even (np.rint), then the zero point is added and the result saturated, as ONNX specifies.
FLOPs: 4 per element (divide, round, add zero point, saturate). No VJP: rounding has zero gradient almost
everywhere; training through it (straight-through estimators) is out of scope, a declared gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..errors import IRError, ShapeError
from ..graph import TensorType
from ._base import OpDef, Types

# saturation range per dtype; int32 only for dequantize_linear (quantized biases: ONNX DequantizeLinear takes
# int32 from opset 10, QuantizeLinear makes int32 only from opset 21)
QDTYPES: dict[str, tuple[int, int]] = {"int8": (-128, 127), "uint8": (0, 255), "int32": (-2**31, 2**31 - 1)}
FLOATS = ("float32", "float64", "float16", "bfloat16")


@dataclass(frozen=True)
class QuantAttrs:
    """Shared by quantize_linear and dequantize_linear (the pair must agree, as in an ONNX QDQ pair)."""

    scale: tuple[float, ...]
    zero_point: tuple[int, ...] = (0,)
    axis: int = 1
    dtype: Literal["int8", "uint8", "int32"] = "int8"

    def __post_init__(self) -> None:
        scale = tuple(float(np.float32(s)) for s in np.atleast_1d(np.asarray(self.scale, dtype=np.float64)))
        zp = tuple(int(z) for z in np.atleast_1d(np.asarray(self.zero_point)))
        if self.dtype not in QDTYPES:
            raise IRError(f"quantize: dtype must be one of {sorted(QDTYPES)}, got {self.dtype!r}")
        if not scale or not all(np.isfinite(s) and s > 0 for s in scale):
            raise IRError(f"quantize: every scale must be finite and > 0 (after rounding to float32), got "
                          f"{scale[:8]}")
        if len(zp) == 1 and len(scale) > 1:
            zp = zp * len(scale)  # one zero point for every channel (symmetric weights: 0)
        if len(zp) != len(scale):
            raise IRError(f"quantize: zero_point has {len(zp)} entries but scale has {len(scale)}")
        lo, hi = QDTYPES[self.dtype]
        if not all(lo <= z <= hi for z in zp):
            raise IRError(f"quantize: zero points must lie in {self.dtype}'s range [{lo}, {hi}], got {zp[:8]}")
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "zero_point", zp)
        object.__setattr__(self, "axis", int(self.axis))

    @property
    def per_channel(self) -> bool:
        return len(self.scale) > 1

    def check(self, t: TensorType) -> None:
        """Raise ShapeError unless a per-channel attrs' axis exists in ``t`` with one scale per channel."""
        if not self.per_channel:
            return
        if not -t.rank <= self.axis < t.rank:
            raise ShapeError(f"axis {self.axis} is out of range for rank {t.rank}")
        if t.shape[self.axis] != len(self.scale):
            raise ShapeError(f"{len(self.scale)} per-channel scales along axis {self.axis}, but the input has "
                             f"{t.shape[self.axis]} there (shape {t.shape})")

    def broadcast(self, ndim: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        """(scale, zero point) as arrays of ``dtype`` shaped to broadcast against an ``ndim``-D value."""
        shape = [1] * ndim
        if self.per_channel:
            shape[self.axis % ndim] = len(self.scale)
        s = np.asarray(self.scale, dtype=dtype).reshape(shape if self.per_channel else ())
        z = np.asarray(self.zero_point, dtype=dtype).reshape(shape if self.per_channel else ())
        return s, z


def compute_dtype(x: np.ndarray) -> np.dtype:
    """The dtype the reference computes in: the value's own floating dtype, float64 for integer arrays."""
    return x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)


def infer(attrs: QuantAttrs, ins: Types) -> TensorType:
    (x,) = ins
    if x.dtype not in FLOATS:
        raise ShapeError(f"quantize_linear takes a floating input ({', '.join(FLOATS)}), got {x.dtype}")
    if attrs.dtype == "int32":
        raise ShapeError("quantize_linear makes int8 or uint8 (int32 is for dequantized biases only)")
    attrs.check(x)
    return TensorType(x.shape, attrs.dtype)


def reference(attrs: QuantAttrs, x: np.ndarray) -> np.ndarray:
    dt = compute_dtype(x)
    s, z = attrs.broadcast(x.ndim, dt)
    lo, hi = QDTYPES[attrs.dtype]
    return np.clip(np.rint(np.asarray(x, dtype=dt) / s) + z, lo, hi).astype(dt, copy=False)


OP = OpDef(name="quantize_linear", attrs_type=QuantAttrs, inputs=("x",), traits={"elementwise"}, infer=infer,
           flops=lambda attrs, ins, out: 4 * out.numel, reference=reference,
           flop_rule="4 per element: divide by the scale, round half to even, add the zero point, saturate")

QDQ_OPS = ("quantize_linear", "dequantize_linear")
