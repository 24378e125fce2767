"""relu: max(x, 0). FLOPs: 1 comparison per element."""

from __future__ import annotations

import numpy as np

from ._base import NoAttrs, OpDef, first_input, per_element, same_type


def reference(attrs: NoAttrs, x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


OP = OpDef(name="relu", attrs_type=NoAttrs, inputs=("x",),
           traits={"elementwise", "activation"}, overwrites=first_input, infer=same_type, flops=per_element(1),
           reference=reference, flop_rule="1 per element (max with 0)")
