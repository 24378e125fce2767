"""Depthwise conv2d (groups = C, one input channel per group, any channel multiplier) as a direct convolution,
with conv2d's fused epilogue: out = activation(conv(x, W) + bias + residual).

A depthwise conv has no reduction over channels, so the implicit GEMM of `conv2d` would be a (pixels × taps) ·
(taps × multiplier) product per channel: tiny tiles and one program per channel. Instead a program takes a
(BLOCK_R (n, o) planes × BLOCK_P output pixels) tile and visits the KH·KW taps in a static loop, multiplying
each shifted input tile by the per-plane tap weight (the MobileNet kernel).

It reads the weight in `conv2d.pack_weight`'s layout, (groups, KH·KW, multiplier), so a conv2d call routes
here without packing anew.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import runtime
from .elementwise import activate


def _gpu_configs() -> list[triton.Config]:
    return runtime.warp_configs(("BLOCK_R", "BLOCK_P"), ((1, 256, 4), (4, 64, 4), (16, 16, 4), (8, 128, 8),
                                                        (32, 32, 4)))


# Under the interpreter a program takes up to TILE elements (rows × columns), whole rows when they fit.
INTERPRETER_CAPS = {"BLOCK_P": 1 << 12, "TILE": 1 << 16}
_interpreter_blocks = runtime.rows_by_cols(INTERPRETER_CAPS, lambda a: a["OH"] * a["OW"])


@runtime.tuned(_gpu_configs, key=["R", "OH", "OW", "KH", "KW"], interpreter=_interpreter_blocks)
@triton.jit
def depthwise_conv2d_kernel(
    x_ptr, w_ptr, bias_ptr, res_ptr, out_ptr,
    R, O, MULT, H, W, OH, OW,
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    stride_xn, stride_xc, stride_xh, stride_xw,
    stride_wg, stride_wk, stride_wm,
    stride_rn, stride_rc, stride_rh, stride_rw,
    stride_on, stride_oc, stride_oh, stride_ow,
    alpha, beta, scale_ptr, x_zero,
    KH: tl.constexpr, KW: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr, ACTIVATION: tl.constexpr, QUANT: tl.constexpr,
    BLOCK_R: tl.constexpr, BLOCK_P: tl.constexpr,
):
    # 64-bit index vectors (large tensors; no interpreter overflow checks), as in conv2d.
    offs_r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    offs_p = tl.program_id(1).to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)
    mask_r = offs_r < R
    mask_p = offs_p < OH * OW
    n = offs_r // O
    o = offs_r % O
    c = o // MULT  # the input channel (= the group) output channel o reads
    oh = offs_p // OW
    ow = offs_p % OW
    h0 = oh * stride_h - pad_h
    w0 = ow * stride_w - pad_w
    x_rows = x_ptr + (n * stride_xn + c * stride_xc)
    w_rows = w_ptr + (c * stride_wg + (o % MULT) * stride_wm)

    acc = tl.zeros((BLOCK_R, BLOCK_P), tl.float32)
    for kh in tl.static_range(KH):
        ih = h0 + kh * dil_h
        in_h = mask_p & (ih >= 0) & (ih < H)
        for kw in tl.static_range(KW):
            iw = w0 + kw * dil_w
            valid = in_h & (iw >= 0) & (iw < W)
            w = tl.load(w_rows + (kh * KW + kw) * stride_wk, mask=mask_r, other=0)
            if QUANT:  # codes: (q - z)·w are integers, and so is their sum while below 2^24 (`conv2d.pack_int8`)
                x = tl.load(x_rows[:, None] + (ih * stride_xh + iw * stride_xw)[None, :],
                            mask=mask_r[:, None] & valid[None, :], other=x_zero)
                acc += (x - x_zero) * w.to(tl.float32)[:, None]
            else:
                x = tl.load(x_rows[:, None] + (ih * stride_xh + iw * stride_xw)[None, :],
                            mask=mask_r[:, None] & valid[None, :], other=0.0)
                acc += x.to(tl.float32) * w.to(tl.float32)[:, None]

    mask = mask_r[:, None] & mask_p[None, :]
    if QUANT:  # the exact integer sum, then s_x·s_w[o]
        acc = acc * tl.load(scale_ptr + o, mask=mask_r, other=0.0)[:, None]
    if HAS_BIAS:
        acc += tl.load(bias_ptr + o, mask=mask_r, other=0.0).to(tl.float32)[:, None]
    if HAS_RESIDUAL:
        r_rows = res_ptr + (n * stride_rn + o * stride_rc)
        acc += tl.load(r_rows[:, None] + (oh * stride_rh + ow * stride_rw)[None, :], mask=mask,
                       other=0.0).to(tl.float32)
    acc = activate(acc, ACTIVATION, alpha, beta)
    o_rows = out_ptr + (n * stride_on + o * stride_oc)
    tl.store(o_rows[:, None] + (oh * stride_oh + ow * stride_ow)[None, :], acc.to(out_ptr.dtype.element_ty),
             mask=mask)


def launch(x: torch.Tensor, weight, out: torch.Tensor, residual: torch.Tensor | None, stride: tuple[int, int],
           padding: tuple[int, int], dilation: tuple[int, int], activation: str | None, alpha: float,
           beta: float, quant=None) -> None:
    """Launch for `conv2d.conv2d`, which has checked the arguments and allocated ``out``; ``weight`` is its
    `PackedConv` with one input channel per group. ``quant`` (a `conv2d.Int8Conv`, `conv2d.conv2d_int8`): ``x``
    holds activation codes and the weight int8 codes."""
    nb, _, h, w = x.shape
    _, o, oh, ow = out.shape
    kh, kw = weight.kernel
    res = residual if residual is not None else out
    r = nb * o
    grid = lambda meta: (triton.cdiv(r, meta["BLOCK_R"]), triton.cdiv(oh * ow, meta["BLOCK_P"]))  # noqa: E731
    depthwise_conv2d_kernel[grid](
        x, weight.weight, weight.bias if weight.bias is not None else out, res, out,
        r, o, o // weight.groups, h, w, oh, ow,
        stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1],
        *x.stride(), *weight.weight.stride(), *res.stride(), *out.stride(),
        float(alpha), float(beta), quant.scale if quant else out, float(quant.x_zero if quant else 0),
        KH=kh, KW=kw, HAS_BIAS=weight.bias is not None, HAS_RESIDUAL=residual is not None,
        ACTIVATION=activation or "", QUANT=quant is not None,
    )
