"""fused_linear: activation(x·Wᵀ + b [+ residual]), what `passes.fuse` makes of linear → relu chains.

Inputs: (x, weight[, bias][, residual]); the attrs say which optional inputs are present. Shape and MACs:
linear's. FLOPs: linear's (bias included) + 1 per element for the residual + the activation's rule.
Reference: linear's reference, then the shared epilogue (bitwise the unfused result).
VJP and backward FLOPs: the parts' (`_fused`): the activation's, then dz for the residual and linear's for the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..graph import TensorType
from . import linear
from ._base import NoAttrs, OpDef, Types
from ._fused import (
    check_activation,
    check_arity,
    check_residual,
    epilogue,
    epilogue_backward_flops,
    epilogue_flops,
    epilogue_vjp,
    fused_saves,
    overwrites_residual,
    split,
)


@dataclass(frozen=True)
class FusedLinearAttrs:
    bias: bool = True
    residual: bool = False
    activation: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "bias", bool(self.bias))
        object.__setattr__(self, "residual", bool(self.residual))
        check_activation(self.activation)


def infer(attrs: FusedLinearAttrs, ins: Types) -> TensorType:
    check_arity(ins, attrs.bias, attrs.residual, "fused_linear")
    out = linear.infer(NoAttrs(), ins[: 2 + attrs.bias])
    check_residual(out, ins, attrs.residual)
    return out


def macs(attrs: FusedLinearAttrs, ins: Types, out: TensorType) -> int:
    return linear.macs(NoAttrs(), ins, out)


def flops(attrs: FusedLinearAttrs, ins: Types, out: TensorType) -> int:
    base = linear.flops(NoAttrs(), ins[: 2 + attrs.bias], out)
    return base + epilogue_flops(out, attrs.residual, attrs.activation)


def reference(attrs: FusedLinearAttrs, *args: np.ndarray) -> np.ndarray:
    x, w, b, r = split(args, attrs.bias, attrs.residual)
    return epilogue(linear.reference(NoAttrs(), x, w, b), r, attrs.activation)


def vjp(attrs: FusedLinearAttrs, ins, out: np.ndarray, dy: np.ndarray, wrt: int) -> np.ndarray:
    x, w, b, r = split(ins, attrs.bias, attrs.residual)

    def pre() -> np.ndarray:
        z = linear.reference(NoAttrs(), x, w, b)
        return z + r if r is not None else z

    dz = epilogue_vjp(out, dy, attrs.activation, pre)
    if attrs.residual and wrt == len(ins) - 1:
        return dz
    return linear.vjp(NoAttrs(), ins[: 2 + attrs.bias], None, dz, wrt)


def saves(attrs: FusedLinearAttrs, wrt: int, n_inputs: int) -> tuple[int, ...]:
    head = () if attrs.residual and wrt == n_inputs - 1 else linear.saves(NoAttrs(), wrt, 2 + attrs.bias)
    return fused_saves(head, attrs.activation, n_inputs)


def backward_flops(attrs: FusedLinearAttrs, ins: Types, out: TensorType, wrt: int) -> int:
    parts = ins[: 2 + attrs.bias]
    head = 0 if attrs.residual and wrt == len(ins) - 1 else linear.backward_flops(NoAttrs(), parts, out, wrt)
    recompute = linear.flops(NoAttrs(), parts, out) + (out.numel if attrs.residual else 0)
    return head + epilogue_backward_flops(out, attrs.activation, recompute)


OP = OpDef(
    name="fused_linear", attrs_type=FusedLinearAttrs, inputs=("x", "weight", "bias", "residual"), min_inputs=2,
    traits={"contraction", "fused"}, overwrites=overwrites_residual,
    infer=infer, macs=macs, flops=flops, reference=reference,
    flop_rule="linear's (2·MACs + bias) + 1 per element for the residual + the activation's rule",
    vjp=vjp, saves=saves, backward_flops=backward_flops,
    backward_flop_rule="the activation's backward rule (+ the forward's FLOPs when z must be recomputed: "
                       "hardswish, hardsigmoid, silu), then linear's backward rule for x, weight and bias; 0 more "
                       "for the residual",
)
