"""avg_pool2d (torch.nn.functional.avg_pool2d, no divisor_override).

The divisor of each window is its size clipped to the padded input (count_include_pad=True) or the number
of real input elements it covers (count_include_pad=False); windows past the padding under ceil_mode are
clipped in both cases, as torch does. FLOPs: KH·KW − 1 adds and 1 divide per output element.
VJP: dy divided by each window's divisor (the same count_include_pad and ceil_mode clipping), added back at
every position of the window, the padding cropped. Backward: 1 divide + KH·KW adds per output element.
"""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..graph import TensorType
from ._base import OpDef, Types, saves_nothing
from ._pool import PoolAttrs, output_hw, reduce_windows, scatter_windows, unit_window
from ._pool import infer as window_infer


def divisor(size: int, out: int, k: int, s: int, p: int, include_pad: bool) -> np.ndarray:
    start = np.arange(out) * s - p
    end = np.minimum(start + k, size + p)
    if not include_pad:
        start, end = np.maximum(start, 0), np.minimum(end, size)
    return (end - start).astype(np.float64)


def infer(attrs: PoolAttrs, ins: Types) -> TensorType:
    if attrs.dilation != (1, 1):
        raise ShapeError(f"avg_pool2d has no dilation, got {attrs.dilation}")
    return window_infer(attrs, ins)


def reference(attrs: PoolAttrs, x: np.ndarray) -> np.ndarray:
    oh, ow = output_hw(attrs, x)
    total = reduce_windows(attrs, x, 0.0, np.add, (oh, ow))
    (kh, kw), (sh, sw), (ph, pw) = attrs.kernel_size, attrs.stride, attrs.padding
    dh = divisor(x.shape[2], oh, kh, sh, ph, attrs.count_include_pad)
    dw = divisor(x.shape[3], ow, kw, sw, pw, attrs.count_include_pad)
    return (total / np.outer(dh, dw).astype(x.dtype)).astype(x.dtype, copy=False)


def vjp(attrs: PoolAttrs, ins, out, dy: np.ndarray, wrt: int) -> np.ndarray:
    x_shape = ins[0].shape
    oh, ow = dy.shape[2:]
    (kh, kw), (sh, sw), (ph, pw) = attrs.kernel_size, attrs.stride, attrs.padding
    dh = divisor(x_shape[2], oh, kh, sh, ph, attrs.count_include_pad)
    dw = divisor(x_shape[3], ow, kw, sw, pw, attrs.count_include_pad)
    share = dy / np.outer(dh, dw).astype(dy.dtype)
    return scatter_windows(attrs, x_shape, lambda rows, cols: share, dy.dtype)


def backward_flops(attrs: PoolAttrs, ins: Types, out, wrt: int) -> int:
    kh, kw = attrs.kernel_size
    return out.numel * (kh * kw + 1)


def flops(attrs: PoolAttrs, ins: Types, out) -> int:
    kh, kw = attrs.kernel_size
    return out.numel * kh * kw


OP = OpDef(name="avg_pool2d", attrs_type=PoolAttrs, inputs=("x",),
           traits={"window"}, noop=unit_window, infer=infer, flops=flops,
           reference=reference, flop_rule="KH·KW − 1 adds + 1 divide per output element",
           vjp=vjp, saves=saves_nothing, backward_flops=backward_flops,
           backward_flop_rule="1 divide + KH·KW adds per output element (dy shared over its window)")
