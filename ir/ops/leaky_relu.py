"""leaky_relu: x if x ≥ 0 else negative_slope·x. FLOPs: 2 per element (compare, multiply).

VJP: dy where x > 0, else negative_slope·dy (torch's leaky_relu_backward, also at 0). Backward: 2 per element."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._base import OpDef, first_input, per_element, per_element_backward, same_type, saves_input


@dataclass(frozen=True)
class LeakyReluAttrs:
    negative_slope: float = 0.01

    def __post_init__(self) -> None:
        object.__setattr__(self, "negative_slope", float(self.negative_slope))


def reference(attrs: LeakyReluAttrs, x: np.ndarray) -> np.ndarray:
    return np.where(x >= 0, x, x * x.dtype.type(attrs.negative_slope))


def vjp(attrs: LeakyReluAttrs, ins, out, dy: np.ndarray, wrt: int) -> np.ndarray:
    return np.where(ins[0] > 0, dy, dy * dy.dtype.type(attrs.negative_slope))


OP = OpDef(name="leaky_relu", attrs_type=LeakyReluAttrs, inputs=("x",),
           traits={"elementwise", "activation"}, overwrites=first_input, infer=same_type, flops=per_element(2),
           reference=reference, flop_rule="2 per element (compare, multiply)",
           vjp=vjp, saves=saves_input, backward_flops=per_element_backward(2),
           backward_flop_rule="2 per element (compare x, multiply dy by the slope)")
