"""adaptive_avg_pool2d (torch.nn.functional.adaptive_avg_pool2d).

Output cell i along an axis of length L averages input [floor(i·L/out), ceil((i+1)·L/out)).
FLOPs: one add per input element of each window, + 1 divide per output element.
VJP: each output's dy divided by its window's size, added at every input position of that window.
Backward: 1 divide per output element + 1 add per input element of each window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..graph import TensorType
from ._base import OpDef, Types, pair, require_rank, same_shape, saves_nothing


@dataclass(frozen=True)
class AdaptivePoolAttrs:
    output_size: tuple[int, int] = (1, 1)

    def __post_init__(self) -> None:
        object.__setattr__(self, "output_size", pair(self.output_size, "output_size"))


def infer(attrs: AdaptivePoolAttrs, ins: Types) -> TensorType:
    x = ins[0]
    require_rank(x, 4)
    return TensorType((*x.shape[:2], *attrs.output_size), x.dtype)


def bounds(size: int, out: int) -> list[tuple[int, int]]:
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


def flops(attrs: AdaptivePoolAttrs, ins: Types, out: TensorType) -> int:
    n, c, h, w = ins[0].shape
    oh, ow = attrs.output_size
    win_h = sum(e - s for s, e in bounds(h, oh))
    win_w = sum(e - s for s, e in bounds(w, ow))
    return n * c * win_h * win_w + out.numel


def reference(attrs: AdaptivePoolAttrs, x: np.ndarray) -> np.ndarray:
    h, w = x.shape[2:]
    oh, ow = attrs.output_size
    if h % oh == 0 and w % ow == 0:  # equal windows: one reshape and a mean
        return x.reshape(*x.shape[:2], oh, h // oh, ow, w // ow).mean(axis=(3, 5))
    out = np.empty((*x.shape[:2], oh, ow), dtype=x.dtype)
    for i, (h0, h1) in enumerate(bounds(h, oh)):
        for j, (w0, w1) in enumerate(bounds(w, ow)):
            out[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    return out


def vjp(attrs: AdaptivePoolAttrs, ins, out, dy: np.ndarray, wrt: int) -> np.ndarray:
    h, w = ins[0].shape[2:]
    dx = np.zeros(ins[0].shape, dtype=dy.dtype)
    for i, (h0, h1) in enumerate(bounds(h, attrs.output_size[0])):
        for j, (w0, w1) in enumerate(bounds(w, attrs.output_size[1])):
            dx[:, :, h0:h1, w0:w1] += dy[:, :, i : i + 1, j : j + 1] / dy.dtype.type((h1 - h0) * (w1 - w0))
    return dx


OP = OpDef(name="adaptive_avg_pool2d", attrs_type=AdaptivePoolAttrs, inputs=("x",),
           traits={"window"}, noop=same_shape, infer=infer, flops=flops,
           reference=reference, flop_rule="1 add per input element of each window + 1 divide per output",
           vjp=vjp, saves=saves_nothing, backward_flops=lambda attrs, ins, out, wrt: flops(attrs, ins, out),
           backward_flop_rule="1 divide per output + 1 add per input element of each window")
