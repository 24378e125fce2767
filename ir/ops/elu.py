"""elu: x if x > 0 else alpha·(exp(x) − 1). FLOPs: 4 per element (compare, exp, subtract, multiply)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._base import OpDef, first_input, per_element, same_type


@dataclass(frozen=True)
class EluAttrs:
    alpha: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", float(self.alpha))


def reference(attrs: EluAttrs, x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, x.dtype.type(attrs.alpha) * np.expm1(np.minimum(x, 0)))


OP = OpDef(name="elu", attrs_type=EluAttrs, inputs=("x",),
           traits={"elementwise", "activation"}, overwrites=first_input, infer=same_type, flops=per_element(4),
           reference=reference, flop_rule="4 per element (compare, exp, subtract, multiply)")
