"""lrn, local response normalisation across channels (torch.nn.functional.local_response_norm):

b_c = a_c / (k + alpha/size · Σ a_j²)^beta, j over a window of ``size`` channels centred on c (zero padded
size//2 before and (size−1)//2 after). FLOPs: 2·size + 3 per element (square and sum the window, scale,
add k, power, divide).
VJP: with d_c = k + α/n·Σ_window a_j², dx_c = dy_c·d_c^−β − (2αβ/n)·x_c·Σ_{j : c ∈ window(j)} dy_j·x_j·d_j^(−β−1),
the second sum over the transposed window (size−1)//2 before and size//2 after; d is recomputed from the input.
Backward: 2·size + 11 per element.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import IRError
from ..graph import TensorType
from ._base import OpDef, Types, require_rank, saves_input


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


def window_sum(v: np.ndarray, size: int, before: int, after: int) -> np.ndarray:
    """Σ over channels [c − before, c + after] of ``v`` (zero outside), as differences of a running sum."""
    c = v.shape[1]
    csum = np.cumsum(np.pad(v, ((0, 0), (before + 1, after), (0, 0), (0, 0))), axis=1)
    return csum[:, size : size + c] - csum[:, :c]


def reference(attrs: LrnAttrs, x: np.ndarray) -> np.ndarray:
    window = window_sum(x * x, attrs.size, attrs.size // 2, (attrs.size - 1) // 2)
    t = x.dtype.type
    return x / (t(attrs.k) + t(attrs.alpha / attrs.size) * window) ** t(attrs.beta)


def vjp(attrs: LrnAttrs, ins, out, dy: np.ndarray, wrt: int) -> np.ndarray:
    x = ins[0]
    t = x.dtype.type
    n, beta = attrs.size, t(attrs.beta)
    d = t(attrs.k) + t(attrs.alpha / n) * window_sum(x * x, n, n // 2, (n - 1) // 2)
    back = window_sum(dy * x * d ** (-beta - 1), n, (n - 1) // 2, n // 2)  # the transposed window
    return dy * d ** -beta - t(2 * attrs.alpha * attrs.beta / n) * x * back


OP = OpDef(name="lrn", attrs_type=LrnAttrs, inputs=("x",),
           traits={"normalization"}, infer=infer, flops=flops, reference=reference,
           flop_rule="2·size + 3 per element",
           vjp=vjp, saves=saves_input, backward_flops=lambda attrs, ins, out, wrt: out.numel * (2 * attrs.size + 11),
           backward_flop_rule="2·size + 11 per element (d recomputed: size + 3; two powers; dy·x·d^(−β−1): 2; its "
                              "transposed window sum: size; combine: 4)")
