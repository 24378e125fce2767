"""mul: elementwise product x · y, y of x's shape or (N, C, 1, 1) broadcast over H, W (squeeze-and-excitation:
the gate a sigmoid/hardsigmoid computed from the pooled activation rescales every channel).

Only those two forms: NumPy broadcasting in general (a (W,) vector, a (1, C, 1, 1) constant) is refused with a
ShapeError, so every backend implements exactly these (a constant of another shape is expanded at import).
FLOPs: 1 multiply per output element. The output may overwrite x, and y when it has x's shape.
VJP: dx = dy·y; dy·x for y, summed over H, W where y is the (N, C, 1, 1) gate. Backward: 1 multiply per output
element for each input, + 1 add per output element for the gate's sum.
"""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..graph import TensorType
from ._base import NoAttrs, OpDef, Types


def broadcasts(x: TensorType, y: TensorType) -> bool:
    """Is ``y`` the (N, C, 1, 1) per-channel form of an NCHW ``x`` (rather than of its shape)?"""
    return x.rank == 4 and y.shape == (*x.shape[:2], 1, 1) and y.shape != x.shape


def infer(attrs: NoAttrs, ins: Types) -> TensorType:
    x, y = ins
    if y.shape != x.shape and not broadcasts(x, y):
        want = f"{x.shape}" + (f" or {(*x.shape[:2], 1, 1)}" if x.rank == 4 else "")
        raise ShapeError(f"the second input must have the first's shape {want} (the IR's mul broadcasts only "
                         f"(N, C, 1, 1) onto NCHW), got {y.shape}")
    if x.dtype != y.dtype:
        raise ShapeError(f"inputs must share a dtype, got {x.dtype} and {y.dtype}")
    return x


def reference(attrs: NoAttrs, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return x * y


def vjp(attrs: NoAttrs, ins, out, dy: np.ndarray, wrt: int) -> np.ndarray:
    x, y = ins
    if wrt == 0:
        return dy * y
    g = dy * x
    return g.sum(axis=(2, 3), keepdims=True) if g.shape != y.shape else g


def saves(attrs: NoAttrs, wrt: int, n_inputs: int) -> tuple[int, ...]:
    return (1 - wrt,)  # each input's gradient reads the other input


def backward_flops(attrs: NoAttrs, ins: Types, out: TensorType, wrt: int) -> int:
    return out.numel * (2 if wrt == 1 and ins[1].shape != out.shape else 1)


def overwrites(attrs: NoAttrs, n_inputs: int) -> tuple[int, ...]:
    return (0,)  # y too when it has x's shape, but the op cannot tell from attributes: x only, always safe


OP = OpDef(name="mul", attrs_type=NoAttrs, inputs=("x", "y"), traits={"elementwise"}, overwrites=overwrites,
           infer=infer, flops=lambda attrs, ins, out: out.numel, reference=reference,
           flop_rule="1 multiply per output element",
           vjp=vjp, saves=saves, backward_flops=backward_flops,
           backward_flop_rule="1 multiply per output element per input, + 1 add per output element summing the "
                              "(N, C, 1, 1) gate's gradient over H, W")
