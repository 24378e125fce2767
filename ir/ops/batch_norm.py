"""batch_norm at inference: (x − running_mean) / sqrt(running_var + eps) · weight + bias, per channel (axis 1).

The running statistics are buffers, not parameters (torchvision does not count them).
FLOPs: 2 per element (the per-channel scale and shift, once folded).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ShapeError
from ..graph import TensorType
from ._base import OpDef, Types, first_input, per_element


@dataclass(frozen=True)
class BatchNormAttrs:
    eps: float = 1e-5

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", float(self.eps))


def infer(attrs: BatchNormAttrs, ins: Types) -> TensorType:
    x = ins[0]
    if x.rank < 2:
        raise ShapeError(f"input must have a channel axis, got shape {x.shape}")
    for role, t in zip(("weight", "bias", "running_mean", "running_var"), ins[1:], strict=True):
        if t.shape != (x.shape[1],):
            raise ShapeError(f"{role} must have shape ({x.shape[1]},), got {t.shape}")
    return x


def scale_shift(eps: float, weight, bias, mean, var) -> tuple[np.ndarray, np.ndarray]:
    """The per-channel affine map the statistics amount to: y = scale·x + shift."""
    scale = weight / np.sqrt(var + eps)
    return scale, bias - mean * scale


def reference(attrs: BatchNormAttrs, x, weight, bias, mean, var) -> np.ndarray:
    scale, shift = scale_shift(attrs.eps, weight, bias, mean, var)
    bcast = (1, -1) + (1,) * (x.ndim - 2)
    return x * scale.reshape(bcast) + shift.reshape(bcast)


OP = OpDef(name="batch_norm", attrs_type=BatchNormAttrs,
           inputs=("x", "weight", "bias", "running_mean", "running_var"),
           buffers=frozenset({"running_mean", "running_var"}),
           traits={"elementwise", "normalization"}, overwrites=first_input, infer=infer, flops=per_element(2),
           reference=reference, flop_rule="2 per element (scale and shift)")
