"""elu: x if x > 0 else alpha·(exp(x) − 1). FLOPs: 4 per element (compare, exp, subtract, multiply).

VJP: dy where x > 0, else alpha·exp(x)·dy (torch's elu_backward on the input). Backward: 4 per element."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._base import OpDef, first_input, per_element, per_element_backward, same_type, saves_input


@dataclass(frozen=True)
class EluAttrs:
    alpha: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", float(self.alpha))


def reference(attrs: EluAttrs, x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, x.dtype.type(attrs.alpha) * np.expm1(np.minimum(x, 0)))


def vjp(attrs: EluAttrs, ins, out, dy: np.ndarray, wrt: int) -> np.ndarray:
    x = ins[0]
    return np.where(x > 0, dy, dy * dy.dtype.type(attrs.alpha) * np.exp(np.minimum(x, 0)))


OP = OpDef(name="elu", attrs_type=EluAttrs, inputs=("x",),
           traits={"elementwise", "activation"}, overwrites=first_input, infer=same_type, flops=per_element(4),
           reference=reference, flop_rule="4 per element (compare, exp, subtract, multiply)",
           vjp=vjp, saves=saves_input, backward_flops=per_element_backward(4),
           backward_flop_rule="4 per element (compare, exp, 2 multiplies)")
