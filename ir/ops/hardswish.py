"""hardswish: x · relu6(x + 3) / 6 (torch.nn.functional.hardswish; MobileNetV3's activation, ONNX HardSwish).

FLOPs: 5 per element (add, max, min, multiply, divide).
VJP (torch's hardswish_backward, its boundaries included): 0 where x < −3, dy·(x/3 + 1/2) where x ≤ 3, dy above.
Backward: 4 per element.
"""

from __future__ import annotations

import numpy as np

from ._base import NoAttrs, OpDef, first_input, per_element, per_element_backward, same_type, saves_input


def reference(attrs: NoAttrs, x: np.ndarray) -> np.ndarray:
    return x * np.clip(x + 3, 0, 6) / 6


def vjp(attrs: NoAttrs, ins, out, dy: np.ndarray, wrt: int) -> np.ndarray:
    x = ins[0]
    return np.where(x < -3, 0, np.where(x <= 3, dy * (x / 3 + 0.5), dy)).astype(dy.dtype, copy=False)


OP = OpDef(name="hardswish", attrs_type=NoAttrs, inputs=("x",),
           traits={"elementwise", "activation"}, overwrites=first_input, infer=same_type, flops=per_element(5),
           reference=reference, flop_rule="5 per element (add, max, min, multiply, divide)",
           vjp=vjp, saves=saves_input, backward_flops=per_element_backward(4),
           backward_flop_rule="4 per element (2 comparisons, x/3 + 1/2, multiply)")
