"""reshape to a static ``shape`` (every dimension given, positive; torch.reshape, ONNX Reshape after the importer
resolved its 0 and −1 entries). A view: 0 FLOPs, stated. Flatten at any axis and a Reshape that is not a
flatten of the trailing axes import as this. VJP: dy reshaped back to the input's shape (0 FLOPs).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import numpy as np

from ..errors import IRError, ShapeError
from ..graph import TensorType
from ._base import OpDef, Types, no_backward_flops, same_shape, saves_nothing


@dataclass(frozen=True)
class ReshapeAttrs:
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        shape = tuple(self.shape) if isinstance(self.shape, tuple | list) else None
        if not shape or not all(isinstance(d, int | np.integer) and not isinstance(d, bool) and d > 0
                                for d in shape):
            raise IRError(f"reshape: shape must be one or more positive integers, got {self.shape!r}")
        object.__setattr__(self, "shape", tuple(int(d) for d in shape))


def infer(attrs: ReshapeAttrs, ins: Types) -> TensorType:
    x = ins[0]
    if prod(attrs.shape) != x.numel:
        raise ShapeError(f"cannot reshape {x.shape} ({x.numel} elements) to {attrs.shape} "
                         f"({prod(attrs.shape)} elements)")
    return TensorType(attrs.shape, x.dtype)


def reference(attrs: ReshapeAttrs, x: np.ndarray) -> np.ndarray:
    return x.reshape(attrs.shape)


def vjp(attrs: ReshapeAttrs, ins, out, dy: np.ndarray, wrt: int) -> np.ndarray:
    return dy.reshape(ins[0].shape)


OP = OpDef(name="reshape", attrs_type=ReshapeAttrs, inputs=("x",), traits={"view"}, noop=same_shape, infer=infer,
           flops=lambda attrs, ins, out: 0, reference=reference, flop_rule="0 (a reshape)",
           vjp=vjp, saves=saves_nothing, backward_flops=no_backward_flops, backward_flop_rule="0 (dy reshaped back)")
