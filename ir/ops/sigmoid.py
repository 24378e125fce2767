"""sigmoid: 1 / (1 + exp(−x)). FLOPs: 4 per element (negate, exp, add, divide)."""

from __future__ import annotations

import numpy as np

from ._base import NoAttrs, OpDef, first_input, per_element, same_type


def reference(attrs: NoAttrs, x: np.ndarray) -> np.ndarray:
    # exp of a negative argument only, so large |x| neither overflows nor loses precision
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


OP = OpDef(name="sigmoid", attrs_type=NoAttrs, inputs=("x",),
           traits={"elementwise", "activation"}, overwrites=first_input, infer=same_type, flops=per_element(4),
           reference=reference, flop_rule="4 per element (negate, exp, add, divide)")
