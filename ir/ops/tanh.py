"""tanh. FLOPs: 5 per element (two exps, add, subtract, divide; how tanh is usually evaluated).

VJP: dy·(1 − y²), from the output. Backward: 3 per element."""

from __future__ import annotations

import numpy as np

from ._base import NoAttrs, OpDef, first_input, per_element, per_element_backward, same_type, saves_output


def reference(attrs: NoAttrs, x: np.ndarray) -> np.ndarray:
    return np.tanh(x)


def vjp(attrs: NoAttrs, ins, out: np.ndarray, dy: np.ndarray, wrt: int) -> np.ndarray:
    return dy * (1 - out * out)


OP = OpDef(name="tanh", attrs_type=NoAttrs, inputs=("x",),
           traits={"elementwise", "activation"}, overwrites=first_input, infer=same_type, flops=per_element(5),
           reference=reference, flop_rule="5 per element (2 exp, add, subtract, divide)",
           vjp=vjp, saves=saves_output, backward_flops=per_element_backward(3),
           backward_flop_rule="3 per element (square, subtract from 1, multiply)")
