"""flatten dimensions start_dim.. into one (torch.flatten(x, 1) by default). A view: 0 FLOPs, stated.

VJP: dy reshaped to the input's shape (0 FLOPs)."""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import numpy as np

from ..errors import ShapeError
from ..graph import TensorType
from ._base import OpDef, Types, no_backward_flops, same_shape, saves_nothing


@dataclass(frozen=True)
class FlattenAttrs:
    start_dim: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "start_dim", int(self.start_dim))


def infer(attrs: FlattenAttrs, ins: Types) -> TensorType:
    x = ins[0]
    if not 0 <= attrs.start_dim < x.rank:
        raise ShapeError(f"start_dim {attrs.start_dim} is out of range for shape {x.shape}")
    return TensorType((*x.shape[: attrs.start_dim], prod(x.shape[attrs.start_dim :])), x.dtype)


def reference(attrs: FlattenAttrs, x: np.ndarray) -> np.ndarray:
    return x.reshape(*x.shape[: attrs.start_dim], -1)


def vjp(attrs: FlattenAttrs, ins, out, dy: np.ndarray, wrt: int) -> np.ndarray:
    return dy.reshape(ins[0].shape)


OP = OpDef(name="flatten", attrs_type=FlattenAttrs, inputs=("x",), traits={"view"}, noop=same_shape, infer=infer,
           flops=lambda attrs, ins, out: 0, reference=reference, flop_rule="0 (a reshape)",
           vjp=vjp, saves=saves_nothing, backward_flops=no_backward_flops, backward_flop_rule="0 (dy reshaped back)")
