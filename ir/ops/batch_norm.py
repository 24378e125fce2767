"""batch_norm at inference: (x − running_mean) / sqrt(running_var + eps) · weight + bias, per channel (axis 1).

The running statistics are buffers, not parameters (torchvision does not count them).
FLOPs: 2 per element (the per-channel scale and shift, once folded).
VJP (inference mode, the statistics fixed: BN frozen while the rest trains): dx = dy·γ/σ, dγ = Σ dy·(x − μ)/σ,
dβ = Σ dy over every axis but 1; the running statistics are buffers, without a gradient. Backward: data 1,
weight 4, bias 1 per element. A train step uses ``batch_norm_train`` (batch statistics) instead.
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


def vjp(attrs: BatchNormAttrs, ins, out, dy: np.ndarray, wrt: int) -> np.ndarray:
    x, weight, _, mean, var = ins
    bcast = (1, -1) + (1,) * (dy.ndim - 2)
    axes = tuple(a for a in range(dy.ndim) if a != 1)
    inv_std = 1 / np.sqrt(var + var.dtype.type(attrs.eps))
    if wrt == 0:
        return dy * (weight * inv_std).reshape(bcast)
    if wrt == 1:
        return (dy * ((x - mean.reshape(bcast)) * inv_std.reshape(bcast))).sum(axis=axes)
    return dy.sum(axis=axes)


def saves(attrs: BatchNormAttrs, wrt: int, n_inputs: int) -> tuple[int, ...]:
    return {0: (1, 4), 1: (0, 3, 4)}.get(wrt, ())  # γ, μ and σ² are parameters: nothing extra stays alive for them


def backward_flops(attrs: BatchNormAttrs, ins: Types, out, wrt: int) -> int:
    return out.numel * (4 if wrt == 1 else 1)


OP = OpDef(name="batch_norm", attrs_type=BatchNormAttrs,
           inputs=("x", "weight", "bias", "running_mean", "running_var"),
           buffers=frozenset({"running_mean", "running_var"}),
           traits={"elementwise", "normalization"}, overwrites=first_input, infer=infer, flops=per_element(2),
           reference=reference, flop_rule="2 per element (scale and shift)",
           vjp=vjp, saves=saves, backward_flops=backward_flops,
           backward_flop_rule="data 1 per element (dy·γ/σ), weight 4 (subtract, 2 multiplies, sum), bias 1 (sum)")
