"""softmax along one axis, max-shifted, for any contiguous tensor.

The tensor is seen as (outer, L, inner) with L the softmax axis; a row is one (outer, inner) pair, whose L
elements sit ``inner`` apart. A program takes BLOCK_R rows and sweeps L in BLOCK_L chunks twice: first the
running max and the running sum of exp(x − max) (rescaled whenever the max grows: the online softmax), then
the normalised outputs. So any L works, in fixed on-chip memory.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import runtime
from .runtime import check


def _gpu_configs() -> list[triton.Config]:
    return runtime.warp_configs(("BLOCK_R", "BLOCK_L"), ((1, 1024, 4), (4, 256, 4), (16, 64, 4), (1, 4096, 8),
                                                        (64, 16, 4)))


# Under the interpreter a program takes up to TILE elements (rows × columns), whole rows when they fit.
INTERPRETER_CAPS = {"BLOCK_L": 1 << 13, "TILE": 1 << 16}
_interpreter_blocks = runtime.rows_by_cols(INTERPRETER_CAPS, lambda a: a["L"], "BLOCK_L")


@runtime.tuned(_gpu_configs, key=["R", "L", "INNER"], interpreter=_interpreter_blocks)
@triton.jit
def softmax_kernel(x_ptr, out_ptr, R, L, INNER, BLOCK_R: tl.constexpr, BLOCK_L: tl.constexpr):
    offs_r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    mask_r = offs_r < R
    row = (offs_r // INNER) * L * INNER + offs_r % INNER  # offset of element 0 of each row
    m = tl.full((BLOCK_R,), float("-inf"), tl.float32)
    s = tl.zeros((BLOCK_R,), tl.float32)
    for l0 in range(0, L, BLOCK_L):
        offs_l = l0 + tl.arange(0, BLOCK_L).to(tl.int64)
        mask = mask_r[:, None] & (offs_l < L)[None, :]
        x = tl.load(x_ptr + row[:, None] + (offs_l * INNER)[None, :], mask=mask, other=float("-inf"))
        m_new = tl.maximum(m, tl.max(x.to(tl.float32), axis=1))
        shift = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows with nothing loaded yet: no −∞ − −∞
        s = s * tl.exp(m - shift) + tl.sum(tl.exp(x.to(tl.float32) - shift[:, None]), axis=1)
        m = m_new
    shift = tl.where(m == float("-inf"), 0.0, m)
    scale = 1.0 / tl.where(s == 0.0, 1.0, s)
    for l0 in range(0, L, BLOCK_L):
        offs_l = l0 + tl.arange(0, BLOCK_L).to(tl.int64)
        mask = mask_r[:, None] & (offs_l < L)[None, :]
        offs = row[:, None] + (offs_l * INNER)[None, :]
        x = tl.load(x_ptr + offs, mask=mask, other=float("-inf")).to(tl.float32)
        y = tl.exp(x - shift[:, None]) * scale[:, None]
        tl.store(out_ptr + offs, y.to(out_ptr.dtype.element_ty), mask=mask)


def softmax(x: torch.Tensor, axis: int = 1, out: torch.Tensor | None = None) -> torch.Tensor:
    """softmax of a contiguous tensor along ``axis``; a channels-last 4-D tensor is its contiguous NHWC
    permutation (the axis mapped onto it), and so is the output."""
    check(x.dim() >= 1 and -x.dim() <= axis < x.dim(), f"softmax: axis {axis} out of range for shape "
                                                       f"{tuple(x.shape)}")
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        if out is None:
            out = torch.empty_like(x, memory_format=torch.channels_last)
        nhwc = (0, 2, 3, 1)
        softmax(x.permute(*nhwc), nhwc.index(axis % 4), out.permute(*nhwc))
        return out
    check(x.is_contiguous(), f"softmax: input must be contiguous, got strides {x.stride()}")
    axis %= x.dim()
    length = x.shape[axis]
    inner = x.numel() // (x.shape[:axis].numel() * length)
    if out is None:
        out = torch.empty_like(x)
    check(out.shape == x.shape and out.dtype == x.dtype and out.is_contiguous(),
          f"softmax: out must be a contiguous {x.dtype} tensor of shape {tuple(x.shape)}")
    rows = x.numel() // length
    softmax_kernel[lambda meta: (triton.cdiv(rows, meta["BLOCK_R"]),)](x, out, rows, length, inner)
    return out
