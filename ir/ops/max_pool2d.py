"""max_pool2d (torch.nn.functional.max_pool2d): padding counts as −∞; ceil_mode keeps a last partial window.

Shape: as conv2d's rule (with ceil instead of floor under ceil_mode). FLOPs: KH·KW − 1 comparisons per output.
VJP through the argmax mask: each window's dy goes to the first element (in torch's row-major scan of the window)
equal to its maximum, found again from the saved input and output; the same padding, dilation and ceil_mode
overhang as the forward, then cropped. Backward: KH·KW comparisons + 1 add per output element.
"""

from __future__ import annotations

import numpy as np

from ._base import OUT, OpDef, Types
from ._pool import PoolAttrs, infer, output_hw, pad_windows, reduce_windows, taps, unit_window


def flops(attrs: PoolAttrs, ins: Types, out) -> int:
    kh, kw = attrs.kernel_size
    return out.numel * (kh * kw - 1)


def reference(attrs: PoolAttrs, x: np.ndarray) -> np.ndarray:
    return reduce_windows(attrs, x, -np.inf, np.maximum, output_hw(attrs, x))


def vjp(attrs: PoolAttrs, ins, out: np.ndarray, dy: np.ndarray, wrt: int) -> np.ndarray:
    x = ins[0]
    h, w = x.shape[2:]
    xp = pad_windows(attrs, x, -np.inf, out.shape[2:])
    dx = np.zeros(xp.shape, dtype=dy.dtype)
    taken = np.zeros(out.shape, dtype=bool)  # windows whose maximum was already found at an earlier offset
    for rows, cols in taps(attrs, out.shape[2:]):
        hit = (xp[:, :, rows, cols] == out) & ~taken
        dx[:, :, rows, cols] += np.where(hit, dy, 0)
        taken |= hit
    ph, pw = attrs.padding
    return dx[:, :, ph : ph + h, pw : pw + w]


def backward_flops(attrs: PoolAttrs, ins, out, wrt: int) -> int:
    kh, kw = attrs.kernel_size
    return out.numel * (kh * kw + 1)


OP = OpDef(name="max_pool2d", attrs_type=PoolAttrs, inputs=("x",),
           traits={"window"}, noop=unit_window, infer=infer, flops=flops,
           reference=reference, flop_rule="KH·KW − 1 comparisons per output element",
           vjp=vjp, saves=lambda attrs, wrt, n: (0, OUT), backward_flops=backward_flops,
           backward_flop_rule="KH·KW comparisons (the argmax found again) + 1 add per output element")
