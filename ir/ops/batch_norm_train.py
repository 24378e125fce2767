"""batch_norm_train: batch normalisation in training mode, with the batch's own statistics (torch's
``F.batch_norm(x, running_mean, running_var, weight, bias, training=True)`` for its output).

y = (x − μ_B)/sqrt(σ²_B + eps)·γ + β, μ_B and σ²_B (biased) the mean and variance of x over every axis but 1.
Inputs (x, weight, bias): the running statistics play no part in the output; their momentum update is the
separate ``running_stat`` op, one node per statistic (an IR node has one value).

Why a separate op rather than a ``training`` attribute on batch_norm: the two compute different functions, and
an attribute a lowering forgets to read would silently give inference BN in a train step. As its own op it is a
declared gap on every backend that has not implemented it (tests/test_coverage.py) and no inference pass
(fold_batch_norm folds only "batch_norm") can fold batch statistics into a conv. Like torch, it refuses a channel
with one value (no variance to normalise by).

FLOPs: 6 per element (mean 1; variance: subtract, square, add; normalise: scale, shift with γ folded in).
VJP, with x̂ = (x − μ_B)/σ_B and M values per channel: dβ = Σ dy; dγ = Σ dy·x̂; dx = γ/σ_B·(dy − mean(dy)
− x̂·mean(dy·x̂)) — the batch statistics' own gradients included. Backward: data 9 per element (x̂ recomputed 2,
the two reductions 3, the combination 4), weight 4 (x̂ 2, product and sum 2), bias 1 (sum).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ShapeError
from ..graph import TensorType
from ._base import OpDef, Types, first_input, per_element


@dataclass(frozen=True)
class BatchNormTrainAttrs:
    eps: float = 1e-5

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", float(self.eps))


def infer(attrs: BatchNormTrainAttrs, ins: Types) -> TensorType:
    x = ins[0]
    if x.rank < 2:
        raise ShapeError(f"input must have a channel axis, got shape {x.shape}")
    for role, t in zip(("weight", "bias"), ins[1:], strict=True):
        if t.shape != (x.shape[1],):
            raise ShapeError(f"{role} must have shape ({x.shape[1]},), got {t.shape}")
    if x.numel // x.shape[1] < 2:
        raise ShapeError(f"training-mode batch_norm needs more than 1 value per channel, got input shape {x.shape}")
    return x


def _axes(x: np.ndarray) -> tuple[int, ...]:
    return tuple(a for a in range(x.ndim) if a != 1)


def _sum(a: np.ndarray, axes: tuple[int, ...], keepdims: bool = False) -> np.ndarray:
    """Σ over ``axes``, accumulated in float64 and rounded once to ``a``'s dtype, as torch's CPU batch norm does
    (its accumulation type for float32 is double). Summed in float32, the M values per channel, amplified by 1/σ_B of
    a small batch, put the NumPy float32 train step of MobileNet-V2 (batch 4, 64 px, on a Zen 5) 0.00786 off the
    float64 step where the bound is 0.0033; accumulated in float64 it is 0.00135 off, torch's 0.00074."""
    return a.sum(axis=axes, keepdims=keepdims, dtype=np.float64).astype(a.dtype, copy=False)


def _mean(a: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    return _sum(a, axes, keepdims=True) / a.dtype.type(np.prod([a.shape[i] for i in axes]))


def normalized(attrs: BatchNormTrainAttrs, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x̂, 1/σ_B) with the batch statistics, keepdims-shaped for broadcasting."""
    axes = _axes(x)
    centred = x - _mean(x, axes)
    inv_std = 1 / np.sqrt(_mean(centred * centred, axes) + x.dtype.type(attrs.eps))
    return centred * inv_std, inv_std


def reference(attrs: BatchNormTrainAttrs, x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    xhat, _ = normalized(attrs, x)
    bcast = (1, -1) + (1,) * (x.ndim - 2)
    return xhat * weight.reshape(bcast) + bias.reshape(bcast)


def vjp(attrs: BatchNormTrainAttrs, ins, out, dy: np.ndarray, wrt: int) -> np.ndarray:
    axes = _axes(dy)
    if wrt == 2:
        return _sum(dy, axes)
    x, weight = ins[0], ins[1]
    xhat, inv_std = normalized(attrs, x)
    if wrt == 1:
        return _sum(dy * xhat, axes)
    bcast = (1, -1) + (1,) * (x.ndim - 2)
    mean_dy, mean_dy_xhat = _mean(dy, axes), _mean(dy * xhat, axes)
    return weight.reshape(bcast) * inv_std * (dy - mean_dy - xhat * mean_dy_xhat)


def saves(attrs: BatchNormTrainAttrs, wrt: int, n_inputs: int) -> tuple[int, ...]:
    return {0: (0, 1), 1: (0,)}.get(wrt, ())  # torch saves μ_B and 1/σ_B too: C values each, recomputed here


def backward_flops(attrs: BatchNormTrainAttrs, ins: Types, out: TensorType, wrt: int) -> int:
    return out.numel * {0: 9, 1: 4}.get(wrt, 1)


OP = OpDef(name="batch_norm_train", attrs_type=BatchNormTrainAttrs, inputs=("x", "weight", "bias"),
           traits={"normalization", "training"}, overwrites=first_input, infer=infer, flops=per_element(6),
           reference=reference, flop_rule="6 per element (mean 1, variance 3, scale and shift 2)",
           vjp=vjp, saves=saves, backward_flops=backward_flops,
           backward_flop_rule="data 9 per element (x̂ 2, two reductions 3, combination 4), weight 4 (x̂ 2, "
                              "product and sum 2), bias 1 (sum)")
