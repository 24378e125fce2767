"""concat without a copy where the layout allows: the output is allocated once and each input is written
into its slice (`slices`). A producer that takes an ``out=`` argument (conv2d, pooling, …) writes there
directly; what remains (a graph input, a value that something else also reads) is moved by `copy`, a strided
copy kernel.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton
import triton.language as tl

from . import runtime
from .runtime import check


def _gpu_configs() -> list[triton.Config]:
    return runtime.warp_configs(("BLOCK_R", "BLOCK_P"), ((1, 1024, 4), (4, 256, 4), (32, 32, 4), (256, 4, 4)))


# Under the interpreter a program takes up to TILE elements (rows × columns), whole rows when they fit.
INTERPRETER_CAPS = {"BLOCK_P": 1 << 14, "TILE": 1 << 17}
_interpreter_blocks = runtime.rows_by_cols(INTERPRETER_CAPS, lambda a: a["P"])


@runtime.tuned(_gpu_configs, key=["R", "P"], interpreter=_interpreter_blocks)
@triton.jit
def copy_kernel(src_ptr, dst_ptr, R, D1, P, D3,
                stride_s0, stride_s1, stride_s2, stride_s3, stride_d0, stride_d1, stride_d2, stride_d3,
                BLOCK_R: tl.constexpr, BLOCK_P: tl.constexpr):
    """dst[i0, i1, i2, i3] = src[i0, i1, i2, i3] for 4-D views of one shape, rows (i0, i1) × columns (i2, i3)."""
    offs_r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    offs_p = tl.program_id(1).to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)
    i0 = offs_r // D1
    i1 = offs_r % D1
    i2 = offs_p // D3
    i3 = offs_p % D3
    mask = (offs_r < R)[:, None] & (offs_p < P)[None, :]
    src = (src_ptr + i0 * stride_s0 + i1 * stride_s1)[:, None] + (i2 * stride_s2 + i3 * stride_s3)[None, :]
    dst = (dst_ptr + i0 * stride_d0 + i1 * stride_d1)[:, None] + (i2 * stride_d2 + i3 * stride_d3)[None, :]
    tl.store(dst, tl.load(src, mask=mask), mask=mask)


def _as4d(t: torch.Tensor) -> torch.Tensor:
    check(1 <= t.dim() <= 4, f"copy: tensors of rank 1 to 4 only, got shape {tuple(t.shape)}")
    return t[(None,) * (4 - t.dim())]


def copy(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """dst[...] = src for two tensors of one shape and dtype, any strides (e.g. dst a slice of a concat)."""
    check(src.shape == dst.shape and src.dtype == dst.dtype,
          f"copy: shapes/dtypes differ: {src.dtype} {tuple(src.shape)} → {dst.dtype} {tuple(dst.shape)}")
    s, d = _as4d(src), _as4d(dst)
    d0, d1, d2, d3 = s.shape
    r, p = d0 * d1, d2 * d3
    grid = lambda meta: (triton.cdiv(r, meta["BLOCK_R"]), triton.cdiv(p, meta["BLOCK_P"]))  # noqa: E731
    copy_kernel[grid](s, d, r, d1, p, d3, *s.stride(), *d.stride())
    return dst


def slices(out: torch.Tensor, sizes: Sequence[int], axis: int) -> list[torch.Tensor]:
    """The views of ``out`` that the concatenated inputs occupy, in order."""
    check(sum(sizes) == out.shape[axis], f"concat: sizes {list(sizes)} do not add up to {out.shape[axis]}")
    views, start = [], 0
    for size in sizes:
        views.append(out.narrow(axis, start, size))
        start += size
    return views


def concat(xs: Sequence[torch.Tensor], axis: int = 1, out: torch.Tensor | None = None) -> torch.Tensor:
    """Concatenate tensors of one dtype, equal except along ``axis``, by copying each into its slice."""
    check(len(xs) >= 1, "concat needs at least one tensor")
    first = xs[0]
    axis %= first.dim()
    same = all(x.dim() == first.dim() and x.dtype == first.dtype
               and all(x.shape[i] == first.shape[i] for i in range(first.dim()) if i != axis) for x in xs)
    check(same, f"concat: shapes must agree except on axis {axis}, got {[tuple(x.shape) for x in xs]}")
    shape = list(first.shape)
    shape[axis] = sum(x.shape[axis] for x in xs)
    if out is None:
        out = torch.empty(shape, dtype=first.dtype, device=first.device)
    check(list(out.shape) == shape and out.dtype == first.dtype, f"concat: out must be {first.dtype} {shape}")
    for x, view in zip(xs, slices(out, [x.shape[axis] for x in xs], axis), strict=True):
        copy(x, view)
    return out
