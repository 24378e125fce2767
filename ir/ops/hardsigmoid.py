"""hardsigmoid: relu6(x + 3) / 6, torch's definition (torch.nn.functional.hardsigmoid; ONNX HardSigmoid with
alpha = 1/6, beta = 1/2 — ONNX's default alpha 0.2 is another function). MobileNetV3's squeeze-and-excitation gate.

FLOPs: 4 per element (add, max, min, divide).
VJP: dy/6 where −3 < x < 3, else 0 (torch's hardsigmoid_backward). Backward: 3 per element.
"""

from __future__ import annotations

import numpy as np

from ._base import NoAttrs, OpDef, first_input, per_element, per_element_backward, same_type, saves_input


def reference(attrs: NoAttrs, x: np.ndarray) -> np.ndarray:
    return np.clip(x + 3, 0, 6) / 6


def vjp(attrs: NoAttrs, ins, out, dy: np.ndarray, wrt: int) -> np.ndarray:
    x = ins[0]
    return np.where((x > -3) & (x < 3), dy / 6, 0).astype(dy.dtype, copy=False)


OP = OpDef(name="hardsigmoid", attrs_type=NoAttrs, inputs=("x",),
           traits={"elementwise", "activation"}, overwrites=first_input, infer=same_type, flops=per_element(4),
           reference=reference, flop_rule="4 per element (add, max, min, divide)",
           vjp=vjp, saves=saves_input, backward_flops=per_element_backward(3),
           backward_flop_rule="3 per element (2 comparisons, divide)")
