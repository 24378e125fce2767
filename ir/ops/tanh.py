"""tanh. FLOPs: 5 per element (two exps, add, subtract, divide; how tanh is usually evaluated)."""

from __future__ import annotations

import numpy as np

from ._base import NoAttrs, OpDef, first_input, per_element, same_type


def reference(attrs: NoAttrs, x: np.ndarray) -> np.ndarray:
    return np.tanh(x)


OP = OpDef(name="tanh", attrs_type=NoAttrs, inputs=("x",),
           traits={"elementwise", "activation"}, overwrites=first_input, infer=same_type, flops=per_element(5),
           reference=reference, flop_rule="5 per element (2 exp, add, subtract, divide)")
