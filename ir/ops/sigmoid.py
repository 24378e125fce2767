"""sigmoid: 1 / (1 + exp(−x)). FLOPs: 4 per element (negate, exp, add, divide).

VJP: dy·y·(1 − y), from the output. Backward: 3 per element."""

from __future__ import annotations

import numpy as np

from ._base import NoAttrs, OpDef, first_input, per_element, per_element_backward, same_type, saves_output


def reference(attrs: NoAttrs, x: np.ndarray) -> np.ndarray:
    # exp of a negative argument only, so large |x| neither overflows nor loses precision
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def vjp(attrs: NoAttrs, ins, out: np.ndarray, dy: np.ndarray, wrt: int) -> np.ndarray:
    return dy * out * (1 - out)


OP = OpDef(name="sigmoid", attrs_type=NoAttrs, inputs=("x",),
           traits={"elementwise", "activation"}, overwrites=first_input, infer=same_type, flops=per_element(4),
           reference=reference, flop_rule="4 per element (negate, exp, add, divide)",
           vjp=vjp, saves=saves_output, backward_flops=per_element_backward(3),
           backward_flop_rule="3 per element (1 − y, two multiplies)")
