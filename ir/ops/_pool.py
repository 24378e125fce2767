"""Window helpers shared by max_pool2d and avg_pool2d (torch's pooling index arithmetic)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import IRError, ShapeError
from ..graph import TensorType
from ._base import Types, pair, require_rank, window_out


@dataclass(frozen=True)
class PoolAttrs:
    """Attributes of max_pool2d and avg_pool2d; ``stride`` defaults to the kernel, as in torch."""

    kernel_size: tuple[int, int]
    stride: tuple[int, int] | None = None
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    ceil_mode: bool = False
    count_include_pad: bool = True  # avg_pool2d only

    def __post_init__(self) -> None:
        k = pair(self.kernel_size, "kernel_size")
        object.__setattr__(self, "kernel_size", k)
        object.__setattr__(self, "stride", pair(self.stride if self.stride is not None else k, "stride"))
        object.__setattr__(self, "padding", pair(self.padding, "padding"))
        object.__setattr__(self, "dilation", pair(self.dilation, "dilation"))
        object.__setattr__(self, "ceil_mode", bool(self.ceil_mode))
        object.__setattr__(self, "count_include_pad", bool(self.count_include_pad))
        if min(k) < 1 or min(self.stride) < 1 or min(self.dilation) < 1:
            raise IRError(f"pool: kernel_size, stride and dilation must be ≥ 1, got {self}")
        if any(p < 0 or p > kk // 2 for p, kk in zip(self.padding, k, strict=True)):
            raise IRError(f"pool: padding {self.padding} must be between 0 and half the kernel {k}")


def infer(attrs: PoolAttrs, ins: Types) -> TensorType:
    x = ins[0]
    require_rank(x, 4)
    n, c, h, w = x.shape
    oh = window_out(h, attrs.kernel_size[0], attrs.stride[0], attrs.padding[0], attrs.dilation[0], attrs.ceil_mode)
    ow = window_out(w, attrs.kernel_size[1], attrs.stride[1], attrs.padding[1], attrs.dilation[1], attrs.ceil_mode)
    if oh < 1 or ow < 1:
        raise ShapeError(f"pooling leaves no output for input {x.shape}")
    return TensorType((n, c, oh, ow), x.dtype)


def overhang(attrs: PoolAttrs, hw: tuple[int, int], out_hw: tuple[int, int]) -> tuple[int, int]:
    """Rows and columns past the bottom/right padding that ceil_mode's last windows reach."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = attrs.kernel_size, attrs.stride, attrs.padding, attrs.dilation
    (h, w), (oh, ow) = hw, out_hw
    return (max(0, (oh - 1) * sh + dh * (kh - 1) + 1 - (h + 2 * ph)),
            max(0, (ow - 1) * sw + dw * (kw - 1) + 1 - (w + 2 * pw)))


def pad_windows(attrs: PoolAttrs, x: np.ndarray, fill: float, out_hw: tuple[int, int]) -> np.ndarray:
    """``x`` padded with ``fill`` on every side, and past the end for ceil_mode: every window lies inside it."""
    (ph, pw) = attrs.padding
    extra_h, extra_w = overhang(attrs, x.shape[2:], out_hw)
    if ph or pw or extra_h or extra_w:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph + extra_h), (pw, pw + extra_w)), constant_values=fill)
    return x


def taps(attrs: PoolAttrs, out_hw: tuple[int, int]) -> Iterator[tuple[slice, slice]]:
    """For each kernel offset (row-major, torch's scan order), the strided slice of the padded input that holds
    that offset's element of every window."""
    (kh, kw), (sh, sw), (dh, dw) = attrs.kernel_size, attrs.stride, attrs.dilation
    oh, ow = out_hw
    for i in range(kh):
        for j in range(kw):
            yield slice(i * dh, i * dh + (oh - 1) * sh + 1, sh), slice(j * dw, j * dw + (ow - 1) * sw + 1, sw)


def reduce_windows(attrs: PoolAttrs, x: np.ndarray, fill: float, combine: np.ufunc,
                   out_hw: tuple[int, int]) -> np.ndarray:
    """Combine (np.maximum or np.add) every window, padding with ``fill`` (and past the end for ceil_mode).

    One strided slice per kernel offset, combined in place: KH·KW passes over an output-sized array, ~20×
    faster than reducing the trailing axes of a sliding-window view, whose inner loop is only KW long.
    """
    x = pad_windows(attrs, x, fill, out_hw)
    acc = None
    for rows, cols in taps(attrs, out_hw):
        tap = x[:, :, rows, cols]
        if acc is None:
            acc = tap.copy()
        else:
            combine(acc, tap, out=acc)
    return acc


def scatter_windows(attrs: PoolAttrs, x_shape: tuple[int, ...], parts: Callable[[slice, slice], np.ndarray],
                    dtype: Any) -> np.ndarray:
    """The transpose of a window reduction: ``parts(rows, cols)`` (output-shaped) added back at each kernel
    offset onto the padded input, then the padding cropped. Positions within one offset are distinct."""
    n, c, h, w = x_shape
    (ph, pw) = attrs.padding
    out_hw = infer(attrs, [TensorType((1, 1, h, w), "float64")]).shape[2:]
    extra_h, extra_w = overhang(attrs, (h, w), out_hw)
    dx = np.zeros((n, c, h + 2 * ph + extra_h, w + 2 * pw + extra_w), dtype=dtype)
    for rows, cols in taps(attrs, out_hw):
        dx[:, :, rows, cols] += parts(rows, cols)
    return dx[:, :, ph : ph + h, pw : pw + w]


def output_hw(attrs: PoolAttrs, x: np.ndarray) -> tuple[int, int]:
    out = infer(attrs, [TensorType(x.shape, "float64")])
    return out.shape[2], out.shape[3]


def unit_window(attrs: PoolAttrs, ins: Types, out: TensorType) -> bool:
    """``noop`` of the pools: a 1×1 window at stride 1 without padding returns its input."""
    return attrs.kernel_size == (1, 1) and attrs.stride == (1, 1) and attrs.padding == (0, 0)
