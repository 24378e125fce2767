"""fused_conv2d: activation(conv2d(x, W, b) + residual), what `passes.fuse` makes of conv → add → relu chains.

Inputs: (x, weight[, bias][, residual]); the attrs say which optional inputs are present. ``activation`` is
None or an attribute-free elementwise op (relu, sigmoid, tanh). Shape and MACs: conv2d's.
FLOPs: conv2d's (bias included) + 1 per element for the residual + the activation's rule — fusion saves memory
traffic, not arithmetic. Reference: conv2d's reference, then the shared epilogue (bitwise the unfused result).
VJP and backward FLOPs: the parts' (`_fused.fused_op`): the activation's, then dz for the residual and conv2d's
for the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from . import conv2d
from ._base import pair
from ._fused import check_activation, fused_op


@dataclass(frozen=True)
class FusedConv2dAttrs:
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    bias: bool = True
    residual: bool = False
    activation: str | None = None

    def __post_init__(self) -> None:
        # validate the conv part once, through conv2d's own attrs
        conv2d.Conv2dAttrs(self.stride, self.padding, self.dilation, self.groups)
        object.__setattr__(self, "stride", pair(self.stride, "stride"))
        object.__setattr__(self, "padding", pair(self.padding, "padding"))
        object.__setattr__(self, "dilation", pair(self.dilation, "dilation"))
        object.__setattr__(self, "groups", int(self.groups))
        object.__setattr__(self, "bias", bool(self.bias))
        object.__setattr__(self, "residual", bool(self.residual))
        check_activation(self.activation)

    @cached_property  # built once: the reference runs per call
    def conv(self) -> conv2d.Conv2dAttrs:
        return conv2d.Conv2dAttrs(self.stride, self.padding, self.dilation, self.groups)


OP = fused_op("fused_conv2d", conv2d, lambda attrs: attrs.conv, FusedConv2dAttrs, traits={"window"})
