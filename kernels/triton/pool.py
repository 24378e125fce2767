"""Pooling over NCHW: max/avg with padding, dilation (max), ceil_mode and count_include_pad; adaptive average
(global average pooling is its 1×1 case).

A window program works on a (BLOCK_R planes × BLOCK_P output pixels) tile, planes being the N·C (n, c) pairs,
and visits the KH·KW taps in a static loop: per tap one address tile, one mask and one max/add. Window
arithmetic is torch's: output pixel (oh, ow) covers input rows oh·S − P + kh·D; average pooling divides by the
window clipped to the padded input (count_include_pad) or to the input itself.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import runtime
from .runtime import check


def _gpu_configs() -> list[triton.Config]:
    return runtime.warp_configs(("BLOCK_R", "BLOCK_P"), ((1, 256, 4), (4, 64, 4), (16, 16, 4), (64, 4, 4),
                                                        (8, 128, 8)))


# Under the interpreter a program takes up to TILE elements (rows × columns), whole rows when they fit.
INTERPRETER_CAPS = {"BLOCK_P": 1 << 12, "TILE": 1 << 16}
_interpreter_blocks = runtime.rows_by_cols(INTERPRETER_CAPS, lambda a: a["OH"] * a["OW"])


@runtime.tuned(_gpu_configs, key=["R", "OH", "OW", "KH", "KW"], interpreter=_interpreter_blocks)
@triton.jit
def pool2d_kernel(
    x_ptr, out_ptr,
    R, C, H, W, OH, OW,
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    stride_xn, stride_xc, stride_xh, stride_xw,
    stride_on, stride_oc, stride_oh, stride_ow,
    KH: tl.constexpr, KW: tl.constexpr, IS_MAX: tl.constexpr, COUNT_INCLUDE_PAD: tl.constexpr,
    BLOCK_R: tl.constexpr, BLOCK_P: tl.constexpr,
):
    # 64-bit index vectors (large tensors; no interpreter overflow checks), as in conv2d.
    offs_r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    offs_p = tl.program_id(1).to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)
    mask_r = offs_r < R
    mask_p = offs_p < OH * OW
    n = offs_r // C
    c = offs_r % C
    oh = offs_p // OW
    ow = offs_p % OW
    h0 = oh * stride_h - pad_h
    w0 = ow * stride_w - pad_w
    x_rows = x_ptr + (n * stride_xn + c * stride_xc)

    if IS_MAX:
        acc = tl.full((BLOCK_R, BLOCK_P), float("-inf"), tl.float32)
    else:
        acc = tl.zeros((BLOCK_R, BLOCK_P), tl.float32)
    for kh in tl.static_range(KH):
        ih = h0 + kh * dil_h
        in_h = mask_p & (ih >= 0) & (ih < H)
        for kw in tl.static_range(KW):
            iw = w0 + kw * dil_w
            valid = in_h & (iw >= 0) & (iw < W)
            ptrs = x_rows[:, None] + (ih * stride_xh + iw * stride_xw)[None, :]
            mask = mask_r[:, None] & valid[None, :]
            if IS_MAX:
                acc = tl.maximum(acc, tl.load(ptrs, mask=mask, other=float("-inf")).to(tl.float32))
            else:
                acc += tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)

    if not IS_MAX:
        # torch's divisor: the window clipped to the padded input, or to the input without padding.
        h1 = tl.minimum(h0 + KH, H + pad_h)
        w1 = tl.minimum(w0 + KW, W + pad_w)
        if not COUNT_INCLUDE_PAD:
            h0 = tl.maximum(h0, 0)
            w0 = tl.maximum(w0, 0)
            h1 = tl.minimum(h1, H)
            w1 = tl.minimum(w1, W)
        count = tl.where(mask_p, (h1 - h0) * (w1 - w0), 1)  # pixels past the end: any non-zero divisor
        acc = acc / count.to(tl.float32)[None, :]
    o_rows = out_ptr + (n * stride_on + c * stride_oc)
    o_ptrs = o_rows[:, None] + (oh * stride_oh + ow * stride_ow)[None, :]
    tl.store(o_ptrs, acc.to(out_ptr.dtype.element_ty), mask=mask_r[:, None] & mask_p[None, :])


def _adaptive_gpu_configs() -> list[triton.Config]:
    return runtime.warp_configs(("BLOCK_R", "BLOCK_T"), ((4, 64, 4), (16, 16, 4), (64, 4, 4), (1, 256, 4),
                                                        (32, 64, 4)))


ADAPTIVE_INTERPRETER_CAPS = {"BLOCK_T": 1 << 10, "TILE": 1 << 16}
_adaptive_interpreter_blocks = runtime.rows_by_cols(ADAPTIVE_INTERPRETER_CAPS, lambda a: a["MAX_WINDOW"], "BLOCK_T")


@runtime.tuned(_adaptive_gpu_configs, key=["R", "MAX_WINDOW"], interpreter=_adaptive_interpreter_blocks)
@triton.jit
def adaptive_avg_pool2d_kernel(
    x_ptr, out_ptr,
    R, C, H, W, OH, OW, MAX_WINDOW,
    stride_xn, stride_xc, stride_xh, stride_xw,
    stride_on, stride_oc, stride_oh, stride_ow,
    BLOCK_R: tl.constexpr, BLOCK_T: tl.constexpr,
):
    """One output cell (i, j) per program along axis 1: the mean of input rows [⌊iH/OH⌋, ⌈(i+1)H/OH⌉) ×
    columns likewise, for BLOCK_R planes, reduced BLOCK_T window elements at a time."""
    offs_r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    cell = tl.program_id(1).to(tl.int64)
    i = cell // OW
    j = cell % OW
    h0 = i * H // OH
    h1 = ((i + 1) * H + OH - 1) // OH
    w0 = j * W // OW
    w1 = ((j + 1) * W + OW - 1) // OW
    width = w1 - w0
    size = (h1 - h0) * width
    mask_r = offs_r < R
    n = offs_r // C
    c = offs_r % C
    x_rows = x_ptr + (n * stride_xn + c * stride_xc + h0 * stride_xh + w0 * stride_xw)

    acc = tl.zeros((BLOCK_R,), tl.float32)
    for t0 in range(0, size, BLOCK_T):
        offs_t = t0 + tl.arange(0, BLOCK_T).to(tl.int64)
        cols = (offs_t // width) * stride_xh + (offs_t % width) * stride_xw
        mask = mask_r[:, None] & (offs_t < size)[None, :]
        acc += tl.sum(tl.load(x_rows[:, None] + cols[None, :], mask=mask, other=0.0).to(tl.float32), axis=1)
    out = acc / size.to(tl.float32)
    o_ptrs = out_ptr + (n * stride_on + c * stride_oc + i * stride_oh + j * stride_ow)
    tl.store(o_ptrs, out.to(out_ptr.dtype.element_ty), mask=mask_r)


def output_size(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil_mode: bool) -> int:
    """torch's pooling output length (a ceil_mode window must start inside the input or its left padding)."""
    span = size + 2 * pad - dilation * (kernel - 1) - 1
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _output(x: torch.Tensor, shape: tuple[int, ...], out: torch.Tensor | None, what: str) -> torch.Tensor:
    if out is None:
        return torch.empty(shape, dtype=x.dtype, device=x.device)
    check(tuple(out.shape) == shape and out.dtype == x.dtype,
          f"{what}: out must be {x.dtype} {shape}, got {out.dtype} {tuple(out.shape)}")
    return out


def pool2d(x: torch.Tensor, kernel: tuple[int, int], *, kind: str, stride: tuple[int, int] | None = None,
           padding: tuple[int, int] = (0, 0), dilation: tuple[int, int] = (1, 1), ceil_mode: bool = False,
           count_include_pad: bool = True, out: torch.Tensor | None = None) -> torch.Tensor:
    """max_pool2d (``kind="max"``) or avg_pool2d (``kind="avg"``) of NCHW ``x`` (any strides)."""
    check(kind in ("max", "avg"), f"pool2d: kind must be 'max' or 'avg', got {kind!r}")
    check(x.dim() == 4, f"{kind}_pool2d input must be NCHW (rank 4), got shape {tuple(x.shape)}")
    check(kind == "max" or tuple(dilation) == (1, 1), f"avg_pool2d has no dilation, got {dilation}")
    stride = stride or kernel
    nb, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    check(2 * ph <= kh and 2 * pw <= kw, f"{kind}_pool2d: padding {padding} must be at most half the kernel "
                                         f"{kernel}")
    oh = output_size(h, kh, sh, ph, dh, ceil_mode)
    ow = output_size(w, kw, sw, pw, dw, ceil_mode)
    check(oh >= 1 and ow >= 1, f"{kind}_pool2d: window {kernel} leaves no output for input {tuple(x.shape)}")
    out = _output(x, (nb, c, oh, ow), out, f"{kind}_pool2d")
    r = nb * c
    grid = lambda meta: (triton.cdiv(r, meta["BLOCK_R"]), triton.cdiv(oh * ow, meta["BLOCK_P"]))  # noqa: E731
    pool2d_kernel[grid](x, out, r, c, h, w, oh, ow, sh, sw, ph, pw, dh, dw, *x.stride(), *out.stride(),
                        KH=kh, KW=kw, IS_MAX=kind == "max", COUNT_INCLUDE_PAD=bool(count_include_pad))
    return out


def adaptive_avg_pool2d(x: torch.Tensor, output_size: tuple[int, int],
                        out: torch.Tensor | None = None) -> torch.Tensor:
    """adaptive_avg_pool2d of NCHW ``x`` (any strides) to ``output_size``; (1, 1) is global average pooling."""
    check(x.dim() == 4, f"adaptive_avg_pool2d input must be NCHW (rank 4), got shape {tuple(x.shape)}")
    nb, c, h, w = x.shape
    oh, ow = output_size
    check(oh >= 1 and ow >= 1, f"adaptive_avg_pool2d: output size must be positive, got {output_size}")
    out = _output(x, (nb, c, oh, ow), out, "adaptive_avg_pool2d")
    r = nb * c
    win_h = max(-(-(i + 1) * h // oh) - i * h // oh for i in range(oh))
    win_w = max(-(-(j + 1) * w // ow) - j * w // ow for j in range(ow))
    grid = lambda meta: (triton.cdiv(r, meta["BLOCK_R"]), oh * ow)  # noqa: E731
    adaptive_avg_pool2d_kernel[grid](x, out, r, c, h, w, oh, ow, win_h * win_w, *x.stride(), *out.stride())
    return out
