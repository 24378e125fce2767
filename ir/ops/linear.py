"""linear: y = x·Wᵀ + b over the last axis (torch.nn.functional.linear); weight is (out, in).

MACs: (elements of x / in_features)·in·out (bias excluded). FLOPs: 2·MACs, + 1 per output element with a bias.
VJP: dx = dY·W, dW = dYᵀ·x (leading axes flattened), db = Σ dY. Backward FLOPs: data 2·MACs, weight 2·MACs,
bias 1 add per output element.
"""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..graph import TensorType
from ._base import NoAttrs, OpDef, Types


def infer(attrs: NoAttrs, ins: Types) -> TensorType:
    x, w = ins[0], ins[1]
    if w.rank != 2:
        raise ShapeError(f"weight must be (out_features, in_features), got {w.shape}")
    if x.shape[-1] != w.shape[1]:
        raise ShapeError(f"input has {x.shape[-1]} features (shape {x.shape}) but weight {w.shape} "
                         f"expects in_features={w.shape[1]}")
    if len(ins) > 2 and ins[2].shape != (w.shape[0],):
        raise ShapeError(f"bias must have shape ({w.shape[0]},), got {ins[2].shape}")
    return TensorType((*x.shape[:-1], w.shape[0]), x.dtype)


def macs(attrs: NoAttrs, ins: Types, out: TensorType) -> int:
    return out.numel * ins[1].shape[1]


def flops(attrs: NoAttrs, ins: Types, out: TensorType) -> int:
    return 2 * macs(attrs, ins, out) + (out.numel if len(ins) > 2 else 0)


def reference(attrs: NoAttrs, x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    y = x @ w.T
    if b is not None:
        y += b
    return y


def vjp(attrs: NoAttrs, ins, out, dy: np.ndarray, wrt: int) -> np.ndarray:
    x, w = ins[0], ins[1]
    if wrt == 0:
        return dy @ w
    rows = dy.reshape(-1, dy.shape[-1])
    return rows.T @ x.reshape(-1, x.shape[-1]) if wrt == 1 else rows.sum(axis=0)


def saves(attrs: NoAttrs, wrt: int, n_inputs: int) -> tuple[int, ...]:
    return {0: (1,), 1: (0,)}.get(wrt, ())


def backward_flops(attrs: NoAttrs, ins: Types, out: TensorType, wrt: int) -> int:
    return 2 * macs(attrs, ins, out) if wrt < 2 else out.numel


OP = OpDef(name="linear", attrs_type=NoAttrs, inputs=("x", "weight", "bias"), min_inputs=2, traits={"contraction"},
           infer=infer,
           macs=macs, flops=flops, reference=reference,
           flop_rule="2·MACs, + 1 per output element for the bias",
           vjp=vjp, saves=saves, backward_flops=backward_flops,
           backward_flop_rule="data 2·MACs (dY·W), weight 2·MACs (dYᵀ·x), bias 1 add per output element")
