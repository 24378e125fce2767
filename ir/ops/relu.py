"""relu: max(x, 0). FLOPs: 1 comparison per element.

VJP: dy where y > 0, else 0 (from the output, as torch's threshold_backward). Backward: 1 per element."""

from __future__ import annotations

import numpy as np

from ._base import NoAttrs, OpDef, first_input, per_element, per_element_backward, same_type, saves_output


def reference(attrs: NoAttrs, x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def vjp(attrs: NoAttrs, ins, out: np.ndarray, dy: np.ndarray, wrt: int) -> np.ndarray:
    return np.where(out > 0, dy, 0).astype(dy.dtype, copy=False)


OP = OpDef(name="relu", attrs_type=NoAttrs, inputs=("x",),
           traits={"elementwise", "activation"}, overwrites=first_input, infer=same_type, flops=per_element(1),
           reference=reference, flop_rule="1 per element (max with 0)",
           vjp=vjp, saves=saves_output, backward_flops=per_element_backward(1),
           backward_flop_rule="1 per element (select dy where y > 0)")
