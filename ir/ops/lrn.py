"""lrn, local response normalisation across channels (torch.nn.functional.local_response_norm):

b_c = a_c / (k + alpha/size · Σ a_j²)^beta, j over a window of ``size`` channels centred on c (zero padded
size//2 before and (size−1)//2 after). FLOPs: 2·size + 3 per element (square and sum the window, scale,
add k, power, divide).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import IRError
from ..graph import TensorType
from ._base import OpDef, Types, require_rank


@dataclass(frozen=True)
class LrnAttrs:
    size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 2.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", int(self.size))
        for f in ("alpha", "beta", "k"):
            object.__setattr__(self, f, float(getattr(self, f)))
        if self.size < 1:
            raise IRError(f"lrn: size must be ≥ 1, got {self.size}")


def infer(attrs: LrnAttrs, ins: Types) -> TensorType:
    require_rank(ins[0], 4)
    return ins[0]


def flops(attrs: LrnAttrs, ins: Types, out: TensorType) -> int:
    return out.numel * (2 * attrs.size + 3)


def reference(attrs: LrnAttrs, x: np.ndarray) -> np.ndarray:
    c = x.shape[1]
    sq = np.pad(x * x, ((0, 0), (attrs.size // 2 + 1, (attrs.size - 1) // 2), (0, 0), (0, 0)))
    csum = np.cumsum(sq, axis=1)  # window sums as differences of a running sum over channels
    window = csum[:, attrs.size : attrs.size + c] - csum[:, :c]
    t = x.dtype.type
    return x / (t(attrs.k) + t(attrs.alpha / attrs.size) * window) ** t(attrs.beta)


OP = OpDef(name="lrn", attrs_type=LrnAttrs, inputs=("x",),
           traits={"normalization"}, infer=infer, flops=flops, reference=reference,
           flop_rule="2·size + 3 per element")
