"""Fold an inference batch_norm into the conv2d (or linear) before it: the BN layer disappears at runtime.

``fold_conv_bn_weights`` is the math, a pure array function; backends that fold at lowering call it directly.
"""

from __future__ import annotations

import numpy as np


def fold_conv_bn_weights(weight: np.ndarray, bias: np.ndarray | None, gamma: np.ndarray, beta: np.ndarray,
                         mean: np.ndarray, var: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights and bias of the conv (OIHW) or linear (OI) whose output equals BN(conv(x)).

    BN(z) = scale·z + shift with scale = γ/√(σ²+ε), shift = β − μ·scale; conv is linear in its weight, so
    W' = W·scale (per output channel) and b' = b·scale + shift. Computed in float64, returned in W's dtype.
    """
    scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
    shift = beta.astype(np.float64) - mean.astype(np.float64) * scale
    w = weight.astype(np.float64) * scale.reshape(-1, *([1] * (weight.ndim - 1)))
    b = shift if bias is None else bias.astype(np.float64) * scale + shift
    return w.astype(weight.dtype), b.astype(weight.dtype)
