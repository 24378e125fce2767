"""add: elementwise sum of two or more tensors of one shape (no broadcasting; residual connections).

FLOPs: (inputs − 1) per output element.
VJP: every input's gradient is dy itself (0 FLOPs; the adds of a value with several readers are autodiff's).
"""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..graph import TensorType
from ._base import NoAttrs, OpDef, Types, no_backward_flops, saves_nothing


def infer(attrs: NoAttrs, ins: Types) -> TensorType:
    if any(t.shape != ins[0].shape for t in ins[1:]):
        raise ShapeError(f"all inputs must have one shape (no broadcasting), got {[t.shape for t in ins]}")
    return ins[0]


def flops(attrs: NoAttrs, ins: Types, out: TensorType) -> int:
    return (len(ins) - 1) * out.numel


def reference(attrs: NoAttrs, *xs: np.ndarray) -> np.ndarray:
    out = xs[0] + xs[1]
    for x in xs[2:]:
        out += x
    return out


def vjp(attrs: NoAttrs, ins, out, dy: np.ndarray, wrt: int) -> np.ndarray:
    return dy


OP = OpDef(name="add", attrs_type=NoAttrs, inputs=("x",), min_inputs=2, traits={"elementwise", "variadic"},
           overwrites=lambda attrs, n: tuple(range(n)), infer=infer,
           flops=flops, reference=reference, flop_rule="(inputs − 1) adds per output element",
           vjp=vjp, saves=saves_nothing, backward_flops=no_backward_flops, backward_flop_rule="0 (dy passed through)")
