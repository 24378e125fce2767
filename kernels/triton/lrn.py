"""Local response normalisation across channels (AlexNet 2012):
b_c = a_c / (k + alpha/size · Σ_{j ∈ window(c)} a_j²)^beta, the window running from c − size//2 to
c + (size−1)//2, clipped to the channels that exist.

A program takes a (BLOCK_R (n, c) planes × BLOCK_P pixels) tile and visits the ``size`` neighbouring channels
in a static loop. The power is exp(beta·log(·)): libdevice's pow is absent under the interpreter, and the base
is ≥ k > 0.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import runtime
from .runtime import check


def _gpu_configs() -> list[triton.Config]:
    return runtime.warp_configs(("BLOCK_R", "BLOCK_P"), ((1, 256, 4), (4, 64, 4), (16, 32, 4)))


# Under the interpreter a program takes up to TILE elements (rows × columns), whole rows when they fit.
INTERPRETER_CAPS = {"BLOCK_P": 1 << 12, "TILE": 1 << 16}
_interpreter_blocks = runtime.rows_by_cols(INTERPRETER_CAPS, lambda a: a["P"])


@runtime.tuned(_gpu_configs, key=["R", "P", "SIZE"], interpreter=_interpreter_blocks)
@triton.jit
def lrn_kernel(x_ptr, out_ptr, R, C, P, W, stride_xn, stride_xc, stride_xh, stride_xw,
               stride_on, stride_oc, stride_oh, stride_ow, alpha_over_size, beta, k,
               SIZE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_P: tl.constexpr):
    offs_r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    offs_p = tl.program_id(1).to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)
    mask_r = offs_r < R
    mask_p = offs_p < P
    n = offs_r // C
    c = offs_r % C
    pix = (offs_p // W) * stride_xh + (offs_p % W) * stride_xw
    x_rows = x_ptr + n * stride_xn
    total = tl.zeros((BLOCK_R, BLOCK_P), tl.float32)
    for j in tl.static_range(SIZE):
        cj = c + (j - SIZE // 2)
        mask = (mask_r & (cj >= 0) & (cj < C))[:, None] & mask_p[None, :]
        a = tl.load((x_rows + cj * stride_xc)[:, None] + pix[None, :], mask=mask, other=0.0).to(tl.float32)
        total += a * a
    mask = mask_r[:, None] & mask_p[None, :]
    x = tl.load((x_rows + c * stride_xc)[:, None] + pix[None, :], mask=mask, other=0.0).to(tl.float32)
    y = x * tl.exp(-beta * tl.log(k + alpha_over_size * total))
    o_pix = (offs_p // W) * stride_oh + (offs_p % W) * stride_ow
    tl.store((out_ptr + n * stride_on + c * stride_oc)[:, None] + o_pix[None, :], y.to(out_ptr.dtype.element_ty),
             mask=mask)


def lrn(x: torch.Tensor, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0,
        out: torch.Tensor | None = None) -> torch.Tensor:
    """Local response normalisation of NCHW ``x`` (any strides) across channels."""
    check(x.dim() == 4, f"lrn input must be NCHW (rank 4), got shape {tuple(x.shape)}")
    check(size >= 1 and k > 0, f"lrn: size must be ≥ 1 and k > 0, got size={size}, k={k}")
    nb, c, h, w = x.shape
    if out is None:
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
    check(out.shape == x.shape and out.dtype == x.dtype, f"lrn: out must be {x.dtype} {tuple(x.shape)}")
    r, p = nb * c, h * w
    grid = lambda meta: (triton.cdiv(r, meta["BLOCK_R"]), triton.cdiv(p, meta["BLOCK_P"]))  # noqa: E731
    lrn_kernel[grid](x, out, r, c, p, w, *x.stride(), *out.stride(), alpha / size, beta, k, SIZE=size)
    return out
