"""relu6: min(max(x, 0), 6) (torch.nn.ReLU6, MobileNetV2's activation). FLOPs: 2 comparisons per element.

VJP: dy where 0 < y < 6 (the same set as torch's 0 < x < 6, read from the output). Backward: 2 per element."""

from __future__ import annotations

import numpy as np

from ._base import NoAttrs, OpDef, first_input, per_element, per_element_backward, same_type, saves_output


def reference(attrs: NoAttrs, x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0, 6)


def vjp(attrs: NoAttrs, ins, out: np.ndarray, dy: np.ndarray, wrt: int) -> np.ndarray:
    return np.where((out > 0) & (out < 6), dy, 0).astype(dy.dtype, copy=False)


OP = OpDef(name="relu6", attrs_type=NoAttrs, inputs=("x",),
           traits={"elementwise", "activation"}, overwrites=first_input, infer=same_type, flops=per_element(2),
           reference=reference, flop_rule="2 per element (max with 0, min with 6)",
           vjp=vjp, saves=saves_output, backward_flops=per_element_backward(2),
           backward_flop_rule="2 per element (two comparisons of y select dy)")
