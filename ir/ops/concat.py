"""concat along ``axis`` (default 1, channels). Data movement only: 0 FLOPs, stated.

VJP: input k's slice of dy along the axis (0 FLOPs, a slice)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ShapeError
from ..graph import TensorType
from ._base import OpDef, Types, no_backward_flops, same_shape, saves_nothing


@dataclass(frozen=True)
class ConcatAttrs:
    axis: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "axis", int(self.axis))


def infer(attrs: ConcatAttrs, ins: Types) -> TensorType:
    first = ins[0]
    axis = attrs.axis % first.rank
    for t in ins[1:]:
        others = [d for i, d in enumerate(t.shape) if i != axis]
        if t.rank != first.rank or others != [d for i, d in enumerate(first.shape) if i != axis]:
            raise ShapeError(f"shapes must agree except on axis {attrs.axis}, got {[t.shape for t in ins]}")
    shape = list(first.shape)
    shape[axis] = sum(t.shape[axis] for t in ins)
    return TensorType(tuple(shape), first.dtype)


def reference(attrs: ConcatAttrs, *xs: np.ndarray) -> np.ndarray:
    return np.concatenate(xs, axis=attrs.axis)


def vjp(attrs: ConcatAttrs, ins, out, dy: np.ndarray, wrt: int) -> np.ndarray:
    axis = attrs.axis % dy.ndim
    start = sum(x.shape[axis] for x in ins[:wrt])
    index = [slice(None)] * dy.ndim
    index[axis] = slice(start, start + ins[wrt].shape[axis])
    return dy[tuple(index)]


OP = OpDef(name="concat", attrs_type=ConcatAttrs, inputs=("x",), min_inputs=1,
           traits={"variadic"}, noop=same_shape, infer=infer,
           flops=lambda attrs, ins, out: 0, reference=reference, flop_rule="0 (data movement only)",
           vjp=vjp, saves=saves_nothing, backward_flops=no_backward_flops, backward_flop_rule="0 (a slice of dy)")
