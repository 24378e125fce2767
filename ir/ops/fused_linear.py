"""fused_linear: activation(x·Wᵀ + b [+ residual]), what `passes.fuse` makes of linear → relu chains.

Inputs: (x, weight[, bias][, residual]); the attrs say which optional inputs are present. Shape and MACs:
linear's. FLOPs: linear's (bias included) + 1 per element for the residual + the activation's rule.
Reference: linear's reference, then the shared epilogue (bitwise the unfused result).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..graph import TensorType
from . import linear
from ._base import NoAttrs, OpDef, Types
from ._fused import check_activation, check_arity, check_residual, epilogue, epilogue_flops, overwrites_residual, split


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


OP = OpDef(
    name="fused_linear", attrs_type=FusedLinearAttrs, inputs=("x", "weight", "bias", "residual"), min_inputs=2,
    traits={"contraction", "fused"}, overwrites=overwrites_residual,
    infer=infer, macs=macs, flops=flops, reference=reference,
    flop_rule="linear's (2·MACs + bias) + 1 per element for the residual + the activation's rule",
)
