"""pad: constant padding of the spatial axes of an NCHW tensor, one pass over the output.

Every output element is written once: a cell that maps inside the input (oh − top, ow − left) reads it, any other
takes ``value``; so there is no zero-fill pass before a copy. Input and output may have any strides (the output
is contiguous unless an ``out`` is given: the backend's channels-last plan passes one).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import runtime
from .runtime import check


def _gpu_configs() -> list[triton.Config]:
    return runtime.warp_configs(("BLOCK_R", "BLOCK_P"), ((1, 1024, 4), (4, 256, 4), (32, 32, 4)))


# Under the interpreter a program takes up to TILE elements (rows × columns), whole rows when they fit.
INTERPRETER_CAPS = {"BLOCK_P": 1 << 14, "TILE": 1 << 17}
_interpreter_blocks = runtime.rows_by_cols(INTERPRETER_CAPS, lambda a: a["OH"] * a["OW"])


@runtime.tuned(_gpu_configs, key=["R", "OH", "OW"], interpreter=_interpreter_blocks)
@triton.jit
def pad_kernel(x_ptr, out_ptr, R, C, H, W, OH, OW, top, left, value,
               stride_xn, stride_xc, stride_xh, stride_xw, stride_on, stride_oc, stride_oh, stride_ow,
               BLOCK_R: tl.constexpr, BLOCK_P: tl.constexpr):
    """Rows r = (n, c), columns p = (oh, ow) of the output; out[r, p] = x[n, c, oh − top, ow − left] or value."""
    offs_r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    offs_p = tl.program_id(1).to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)
    mask_r = offs_r < R
    mask_p = offs_p < OH * OW
    ih = offs_p // OW - top
    iw = offs_p % OW - left
    inside = (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
    n, c = offs_r // C, offs_r % C
    x_rows = x_ptr + (n * stride_xn + c * stride_xc)
    x = tl.load(x_rows[:, None] + (ih * stride_xh + iw * stride_xw)[None, :],
                mask=mask_r[:, None] & (mask_p & inside)[None, :], other=value)
    o_rows = out_ptr + (n * stride_on + c * stride_oc)
    o_pix = (offs_p // OW) * stride_oh + (offs_p % OW) * stride_ow
    tl.store(o_rows[:, None] + o_pix[None, :], x.to(out_ptr.dtype.element_ty), mask=mask_r[:, None] & mask_p[None, :])


def pad(x: torch.Tensor, pads: tuple[int, int, int, int], value: float = 0.0,
        out: torch.Tensor | None = None) -> torch.Tensor:
    """``x`` (N, C, H, W) padded by ``pads`` = (top, left, bottom, right) ≥ 0 with ``value``; ``out`` any
    strides (contiguous if not given)."""
    check(x.dim() == 4, f"pad: input must be NCHW (rank 4), got shape {tuple(x.shape)}")
    check(len(pads) == 4 and min(pads) >= 0, f"pad: pads must be 4 non-negative ints, got {pads}")
    n, c, h, w = x.shape
    top, left, bottom, right = pads
    shape = (n, c, h + top + bottom, w + left + right)
    if out is None:
        out = torch.empty(shape, dtype=x.dtype, device=x.device)
    check(tuple(out.shape) == shape and out.dtype == x.dtype,
          f"pad: out must be a {x.dtype} tensor of shape {shape}, got {out.dtype} {tuple(out.shape)}")
    r, oh, ow = n * c, shape[2], shape[3]
    grid = lambda meta: (triton.cdiv(r, meta["BLOCK_R"]), triton.cdiv(oh * ow, meta["BLOCK_P"]))  # noqa: E731
    pad_kernel[grid](x, out, r, c, h, w, oh, ow, top, left, float(value), *x.stride(), *out.stride())
    return out
