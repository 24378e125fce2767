"""fused_linear: activation(x·Wᵀ + b [+ residual]), what `passes.fuse` makes of linear → relu chains.

Inputs: (x, weight[, bias][, residual]); the attrs say which optional inputs are present. Shape and MACs:
linear's. FLOPs: linear's (bias included) + 1 per element for the residual + the activation's rule.
Reference: linear's reference, then the shared epilogue (bitwise the unfused result).
VJP and backward FLOPs: the parts' (`_fused.fused_op`): the activation's, then dz for the residual and linear's
for the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import linear
from ._base import NoAttrs
from ._fused import check_activation, fused_op


@dataclass(frozen=True)
class FusedLinearAttrs:
    bias: bool = True
    residual: bool = False
    activation: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "bias", bool(self.bias))
        object.__setattr__(self, "residual", bool(self.residual))
        check_activation(self.activation)


OP = fused_op("fused_linear", linear, lambda attrs: NoAttrs(), FusedLinearAttrs, traits=set())
