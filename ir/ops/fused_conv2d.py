"""fused_conv2d: activation(conv2d(x, W, b) + residual), what `passes.fuse` makes of conv → add → relu chains.

Inputs: (x, weight[, bias][, residual]); the attrs say which optional inputs are present. ``activation`` is
None or an attribute-free elementwise op (relu, sigmoid, tanh). Shape and MACs: conv2d's.
FLOPs: conv2d's (bias included) + 1 per element for the residual + the activation's rule — fusion saves memory
traffic, not arithmetic. Reference: conv2d's reference, then the shared epilogue (bitwise the unfused result).
VJP and backward FLOPs: the parts' (`_fused`): the activation's, then dz for the residual and conv2d's for the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..graph import TensorType
from . import conv2d
from ._base import OpDef, Types, pair
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


def _conv_inputs(attrs: FusedConv2dAttrs, ins: Types) -> Types:
    return ins[: 2 + attrs.bias]


def infer(attrs: FusedConv2dAttrs, ins: Types) -> TensorType:
    check_arity(ins, attrs.bias, attrs.residual, "fused_conv2d")
    out = conv2d.infer(attrs.conv, _conv_inputs(attrs, ins))
    check_residual(out, ins, attrs.residual)
    return out


def macs(attrs: FusedConv2dAttrs, ins: Types, out: TensorType) -> int:
    return conv2d.macs(attrs.conv, _conv_inputs(attrs, ins), out)


def flops(attrs: FusedConv2dAttrs, ins: Types, out: TensorType) -> int:
    conv = conv2d.flops(attrs.conv, _conv_inputs(attrs, ins), out)
    return conv + epilogue_flops(out, attrs.residual, attrs.activation)


def reference(attrs: FusedConv2dAttrs, *args: np.ndarray) -> np.ndarray:
    x, w, b, r = split(args, attrs.bias, attrs.residual)
    return epilogue(conv2d.reference(attrs.conv, x, w, b), r, attrs.activation)


def vjp(attrs: FusedConv2dAttrs, ins, out: np.ndarray, dy: np.ndarray, wrt: int) -> np.ndarray:
    x, w, b, r = split(ins, attrs.bias, attrs.residual)

    def pre() -> np.ndarray:
        z = conv2d.reference(attrs.conv, x, w, b)
        return z + r if r is not None else z

    dz = epilogue_vjp(out, dy, attrs.activation, pre)
    if attrs.residual and wrt == len(ins) - 1:
        return dz
    return conv2d.vjp(attrs.conv, ins[: 2 + attrs.bias], None, dz, wrt)


def saves(attrs: FusedConv2dAttrs, wrt: int, n_inputs: int) -> tuple[int, ...]:
    head = () if attrs.residual and wrt == n_inputs - 1 else conv2d.saves(attrs.conv, wrt, 2 + attrs.bias)
    return fused_saves(head, attrs.activation, n_inputs)


def backward_flops(attrs: FusedConv2dAttrs, ins: Types, out: TensorType, wrt: int) -> int:
    parts = _conv_inputs(attrs, ins)
    head = 0 if attrs.residual and wrt == len(ins) - 1 else conv2d.backward_flops(attrs.conv, parts, out, wrt)
    recompute = conv2d.flops(attrs.conv, parts, out) + (out.numel if attrs.residual else 0)
    return head + epilogue_backward_flops(out, attrs.activation, recompute)


OP = OpDef(
    name="fused_conv2d", attrs_type=FusedConv2dAttrs, inputs=("x", "weight", "bias", "residual"), min_inputs=2,
    traits={"contraction", "window", "fused"}, overwrites=overwrites_residual,
    infer=infer, macs=macs, flops=flops, reference=reference,
    flop_rule="conv2d's (2·MACs + bias) + 1 per element for the residual + the activation's rule",
    vjp=vjp, saves=saves, backward_flops=backward_flops,
    backward_flop_rule="the activation's backward rule (+ the forward's FLOPs when z must be recomputed: "
                       "hardswish, hardsigmoid, silu), then conv2d's backward rule for x, weight and bias; 0 more "
                       "for the residual",
)
