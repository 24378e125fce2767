"""dropout: the identity at inference (``p`` is kept for the record). 0 FLOPs, stated.

Its VJP passes dy through (0 FLOPs). A train step replaces it by ``dropout_train`` (a seeded mask)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._base import OpDef, no_backward_flops, same_type, saves_nothing


@dataclass(frozen=True)
class DropoutAttrs:
    p: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "p", float(self.p))


def reference(attrs: DropoutAttrs, x: np.ndarray) -> np.ndarray:
    return x


def vjp(attrs: DropoutAttrs, ins, out, dy: np.ndarray, wrt: int) -> np.ndarray:
    return dy


OP = OpDef(name="dropout", attrs_type=DropoutAttrs, inputs=("x",), traits={"view", "identity"}, infer=same_type,
           flops=lambda attrs, ins, out: 0, reference=reference, flop_rule="0 (identity at inference)",
           vjp=vjp, saves=saves_nothing, backward_flops=no_backward_flops, backward_flop_rule="0 (dy passed through)")
