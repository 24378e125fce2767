"""softmax along ``axis`` (default 1, the class axis of (N, classes) logits), computed max-shifted.

FLOPs: 5 per element (max, subtract, exp, sum, divide).
VJP: y·(dy − Σ dy·y) along the axis, from the output. Backward: 4 per element (multiply, sum, subtract, multiply).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ShapeError
from ..graph import TensorType
from ._base import OpDef, Types, per_element, per_element_backward, saves_output


@dataclass(frozen=True)
class SoftmaxAttrs:
    axis: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "axis", int(self.axis))


def infer(attrs: SoftmaxAttrs, ins: Types) -> TensorType:
    if not -ins[0].rank <= attrs.axis < ins[0].rank:
        raise ShapeError(f"axis {attrs.axis} is out of range for shape {ins[0].shape}")
    return ins[0]


def reference(attrs: SoftmaxAttrs, x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=attrs.axis, keepdims=True))
    return e / e.sum(axis=attrs.axis, keepdims=True)


def vjp(attrs: SoftmaxAttrs, ins, out: np.ndarray, dy: np.ndarray, wrt: int) -> np.ndarray:
    return out * (dy - (dy * out).sum(axis=attrs.axis, keepdims=True))


OP = OpDef(name="softmax", attrs_type=SoftmaxAttrs, inputs=("x",),
           traits={"normalization"}, infer=infer, flops=per_element(5),
           reference=reference, flop_rule="5 per element (max, subtract, exp, sum, divide)",
           vjp=vjp, saves=saves_output, backward_flops=per_element_backward(4),
           backward_flop_rule="4 per element (dy·y, its sum, subtract, multiply by y)")
