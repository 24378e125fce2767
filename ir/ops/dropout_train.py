"""dropout_train: dropout in training mode with a seeded mask, x·mask/(1 − p) (torch's F.dropout(training=True)
up to which elements are dropped).

The mask keeps an element where ``np.random.default_rng(seed).random(x.shape) ≥ p``: a function of (seed, shape)
only, so every backend can reproduce it bit for bit (compute it once with NumPy and feed it as a constant) and the
backward regenerates it instead of saving it. One train step therefore uses one mask every time it runs; a new
``seed`` (``ir.train.train_step(seed=…)`` derives one per node) gives another. p = 0 keeps everything.

FLOPs: 1 multiply per element (by the scaled mask; drawing the mask is not counted as FLOPs).
VJP: dy·mask/(1 − p), the mask regenerated (nothing saved). Backward: 1 per element.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import IRError
from ._base import OpDef, first_input, per_element, per_element_backward, same_type, saves_nothing


@dataclass(frozen=True)
class DropoutTrainAttrs:
    p: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "p", float(self.p))
        object.__setattr__(self, "seed", int(self.seed))
        if not 0.0 <= self.p < 1.0:
            raise IRError(f"dropout_train: p must be in [0, 1), got {self.p}")
        if self.seed < 0:
            raise IRError(f"dropout_train: seed must be ≥ 0, got {self.seed}")


def scaled_mask(attrs: DropoutTrainAttrs, shape: tuple[int, ...], dtype) -> np.ndarray:
    """mask/(1 − p) as ``dtype``: 1/(1 − p) where an element is kept, 0 where it is dropped."""
    keep = np.random.default_rng(attrs.seed).random(shape) >= attrs.p
    return keep.astype(dtype) * np.dtype(dtype).type(1 / (1 - attrs.p))


def reference(attrs: DropoutTrainAttrs, x: np.ndarray) -> np.ndarray:
    return x * scaled_mask(attrs, x.shape, x.dtype)


def vjp(attrs: DropoutTrainAttrs, ins, out, dy: np.ndarray, wrt: int) -> np.ndarray:
    return dy * scaled_mask(attrs, dy.shape, dy.dtype)


OP = OpDef(name="dropout_train", attrs_type=DropoutTrainAttrs, inputs=("x",),
           traits={"elementwise", "training"}, overwrites=first_input, infer=same_type, flops=per_element(1),
           reference=reference, flop_rule="1 multiply per element (by the scaled mask)",
           vjp=vjp, saves=saves_nothing, backward_flops=per_element_backward(1),
           backward_flop_rule="1 multiply per element (the mask regenerated from the seed, not saved)")
