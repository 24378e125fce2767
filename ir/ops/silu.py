"""silu (swish): x · sigmoid(x) (torch.nn.functional.silu; EfficientNet's activation).

FLOPs: 5 per element (sigmoid's 4, then a multiply).
VJP: dy·s·(1 + x·(1 − s)), s = sigmoid(x) recomputed from the input. Backward: 9 per element.
"""

from __future__ import annotations

import numpy as np

from . import sigmoid
from ._base import NoAttrs, OpDef, first_input, per_element, per_element_backward, same_type, saves_input


def reference(attrs: NoAttrs, x: np.ndarray) -> np.ndarray:
    return x * sigmoid.reference(attrs, x)  # sigmoid's overflow-free form


def vjp(attrs: NoAttrs, ins, out, dy: np.ndarray, wrt: int) -> np.ndarray:
    x = ins[0]
    s = sigmoid.reference(attrs, x)
    return dy * s * (1 + x * (1 - s))


OP = OpDef(name="silu", attrs_type=NoAttrs, inputs=("x",),
           traits={"elementwise", "activation"}, overwrites=first_input, infer=same_type, flops=per_element(5),
           reference=reference, flop_rule="5 per element (sigmoid's 4 + multiply)",
           vjp=vjp, saves=saves_input, backward_flops=per_element_backward(9),
           backward_flop_rule="9 per element (sigmoid's 4 recomputed, 1 − s, x·(1 − s), + 1, 2 multiplies)")
