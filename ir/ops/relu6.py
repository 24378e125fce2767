"""relu6: min(max(x, 0), 6) (torch.nn.ReLU6, MobileNetV2's activation). FLOPs: 2 comparisons per element."""

from __future__ import annotations

import numpy as np

from ._base import NoAttrs, OpDef, first_input, per_element, same_type


def reference(attrs: NoAttrs, x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0, 6)


OP = OpDef(name="relu6", attrs_type=NoAttrs, inputs=("x",),
           traits={"elementwise", "activation"}, overwrites=first_input, infer=same_type, flops=per_element(2),
           reference=reference, flop_rule="2 per element (max with 0, min with 6)")
