"""dropout: the identity at inference (``p`` is kept for the record). 0 FLOPs, stated."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._base import OpDef, same_type


@dataclass(frozen=True)
class DropoutAttrs:
    p: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "p", float(self.p))


def reference(attrs: DropoutAttrs, x: np.ndarray) -> np.ndarray:
    return x


OP = OpDef(name="dropout", attrs_type=DropoutAttrs, inputs=("x",), traits={"view", "identity"}, infer=same_type,
           flops=lambda attrs, ins, out: 0, reference=reference, flop_rule="0 (identity at inference)")
