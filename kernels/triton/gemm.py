"""Channels-last implicit GEMM: conv2d on NHWC activations (and the plain GEMM of 1×1 convs and linear layers),
with split-K and the fused epilogue  out = activation(Σ_k A[m, k]·B[k, o] + bias + residual).

    m = (n, oh, ow)     M = N·OH·OW output pixels (rows),
    k = (kh, kw, c)     K = KH·KW·C/groups, c fastest,
    o                   O/groups output channels of group g.

The weight is packed once as (O, KH, KW, C/groups) (`conv2d.pack_weight(..., layout="nhwc")`), so both tiles are
contiguous along K: an A tile is BLOCK_M pixel rows × BLOCK_K consecutive channels of one tap, its channel
offset a scalar plus ``tl.arange`` with stride 1 (hinted with ``multiple_of``/``max_contiguous``), so loads
vectorize and Triton can pipeline them. The K loop runs over (tap, channel block) pairs as ONE flat loop (the
pipeliner only overlaps an innermost loop; a tap loop around a 1–2 step channel loop would leave nothing to
overlap); a step's row mask is four compares of per-row window bounds computed once per program, so nothing
per element. A 1×1/stride-1/unpadded conv (``IS_GEMM``) drops the tap arithmetic: rows are ``m·stride``.

Split-K: ``SPLIT`` programs share one output tile, each reducing its own range of taps (or of channel blocks,
for a 1×1) into a float32 workspace (SPLIT, M, O); `splitk_epilogue_kernel` then sums the partials and applies
bias, residual and activation once. Two launches instead of atomics: deterministic, no zero-fill pass, and the
epilogue stays a plain function of the finished sum. The split is chosen by `split_k` from the tile count and
the device's SM count, when the tiles alone would leave SMs idle (the late, small-M layers).

Offsets are int32 when every tensor fits (``IDX64`` off) and int64 otherwise; under the interpreter always int64
(it checks every 32-bit operation for overflow, at a fixed cost per operation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from . import runtime
from .elementwise import finish, pixel_stride
from .runtime import check

MIN_STEPS_PER_SPLIT = 4  # K steps a split must keep: fewer and the workspace round trip costs more than it wins
MAX_SPLIT = 4
ASYNC_COPY = "async_copy_global_to_local"  # the TTGIR op of a pipelined (cp.async) load


def async_loads(ttgir: str) -> int:
    """How many loads of a compiled kernel's TTGIR the pipeliner turned into async copies."""
    return ttgir.count(ASYNC_COPY)


@dataclass(frozen=True)
class GemmConfig:
    """One launch configuration of the implicit GEMM (what the tuner searches and the JSON table stores)."""

    block_m: int
    block_n: int
    block_k: int
    split_k: int = 1
    num_warps: int = 4
    num_stages: int = 3

    def __post_init__(self) -> None:
        for name in ("block_m", "block_n", "block_k"):
            v = getattr(self, name)
            check(isinstance(v, int) and v >= 1 and v & (v - 1) == 0, f"GemmConfig.{name} must be a power of two, "
                                                                      f"got {v!r}")
        check(isinstance(self.split_k, int) and 1 <= self.split_k <= MAX_SPLIT,
              f"GemmConfig.split_k must be 1..{MAX_SPLIT}, got {self.split_k!r}")
        check(isinstance(self.num_warps, int) and self.num_warps in (1, 2, 4, 8, 16),
              f"GemmConfig.num_warps must be 1, 2, 4, 8 or 16, got {self.num_warps!r}")
        check(isinstance(self.num_stages, int) and 1 <= self.num_stages <= 8,
              f"GemmConfig.num_stages must be 1..8, got {self.num_stages!r}")


def split_k(m: int, n: int, k_steps: int, groups: int, block_m: int, block_n: int, sm_count: int) -> int:
    """How many ways to split the K loop: 1 when the output tiles already cover the SMs; else enough splits to
    fill them (at most MAX_SPLIT), each keeping at least MIN_STEPS_PER_SPLIT K steps."""
    tiles = triton.cdiv(m, block_m) * triton.cdiv(n, block_n) * groups
    if tiles >= sm_count:
        return 1
    return max(1, min(MAX_SPLIT, sm_count // tiles, k_steps // MIN_STEPS_PER_SPLIT))


# Under the interpreter: one large block per side, as the other kernels (cost is per program and per operation).
INTERPRETER_CAPS = {"BLOCK_M": 1024, "BLOCK_N": 512, "BLOCK_K": 512}


def default_config(m: int, n: int, c_per_g: int, taps: int, groups: int, sm_count: int) -> GemmConfig:
    """The configuration used when the tuned table has none for a shape: under the interpreter the largest
    blocks; on GPU a 128×128×64 (smaller along a short side) tile; split-K from `split_k` either way."""
    if runtime.INTERPRET:
        bm = runtime.pow2(m, INTERPRETER_CAPS["BLOCK_M"])
        bn = runtime.pow2(n, INTERPRETER_CAPS["BLOCK_N"])
        bk = runtime.pow2(c_per_g, INTERPRETER_CAPS["BLOCK_K"])
        stages, warps = 1, 4
    else:
        bm, bn, bk = runtime.pow2(m, 128, 32), runtime.pow2(n, 128, 32), runtime.pow2(c_per_g, 64, 16)
        stages, warps = 3, 8 if bm * bn >= 128 * 128 else 4
    steps = taps * triton.cdiv(c_per_g, bk)
    return GemmConfig(bm, bn, bk, split_k(m, n, steps, groups, bm, bn, sm_count), warps, stages)


@triton.jit
def _rows(offs_m, OH, OW):
    """Output rows m -> (n, oh, ow)."""
    ow = offs_m % OW
    t = offs_m // OW
    return t // OH, t % OH, ow


@triton.jit
def conv2d_nhwc_kernel(
    x_ptr, w_ptr, bias_ptr, res_ptr, out_ptr, ws_ptr,
    M, H, W, OH, OW, C_PER_G, O_PER_G, TAP_CHUNK, C_CHUNK, SPLIT_C,
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    stride_xn, stride_xh, stride_xw, stride_wo,
    stride_rn, stride_rh, stride_rw, stride_on, stride_oh, stride_ow,
    alpha, beta,
    KH: tl.constexpr, KW: tl.constexpr, IS_GEMM: tl.constexpr, SPLIT: tl.constexpr, IDX64: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr, ACTIVATION: tl.constexpr,
    INPUT_PRECISION: tl.constexpr, UPCAST: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    g = tl.program_id(2) // SPLIT
    s = tl.program_id(2) % SPLIT
    if IDX64:
        pid_m = pid_m.to(tl.int64)
        pid_n = pid_n.to(tl.int64)
        g = g.to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < M
    n, oh, ow = _rows(offs_m, OH, OW)
    if IS_GEMM:  # 1×1, stride 1, no padding, rows evenly spaced (the host checked): a plain GEMM, A[m] at m·stride
        x_rows = x_ptr + (offs_m * stride_xw + g * C_PER_G)
        lo_h = tl.where(mask_m, 0, 1)
        hi_h = tl.where(mask_m, 1, 0)
        lo_w = lo_h * 0
        hi_w = hi_h * 0 + 1
    else:
        # The window's top-left corner and the range of tap offsets (dh, dw) that stay inside the image; rows
        # past M get the empty range [1, 0), so one set of four compares per K step masks rows and padding.
        ih0 = oh * stride_h - pad_h
        iw0 = ow * stride_w - pad_w
        lo_h = tl.where(mask_m, -ih0, 1)
        hi_h = tl.where(mask_m, H - ih0, 0)
        lo_w = -iw0
        hi_w = W - iw0
        x_rows = x_ptr + (n * stride_xn + ih0 * stride_xh + iw0 * stride_xw + g * C_PER_G)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < O_PER_G
    o = g * O_PER_G + offs_n
    w_cols = w_ptr + o * stride_wo

    # This split's share of K: taps [t_lo, t_hi) × channels [c_lo, c_hi), walked as one flat loop.
    t_lo = (s // SPLIT_C) * TAP_CHUNK
    t_hi = tl.minimum(t_lo + TAP_CHUNK, KH * KW)
    c_lo = (s % SPLIT_C) * C_CHUNK
    c_hi = tl.minimum(c_lo + C_CHUNK, C_PER_G)
    n_cb = tl.cdiv(c_hi - c_lo, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for step in range(0, tl.maximum(t_hi - t_lo, 0) * n_cb):
        t = t_lo + step // n_cb
        c0 = c_lo + (step % n_cb) * BLOCK_K
        kh = t // KW
        kw = t % KW
        dh = kh * dil_h
        dw = kw * dil_w
        row_ok = (dh >= lo_h) & (dh < hi_h) & (dw >= lo_w) & (dw < hi_w)
        offs_c = tl.max_contiguous(tl.multiple_of(c0 + tl.arange(0, BLOCK_K), BLOCK_K), BLOCK_K)
        mask_c = offs_c < c_hi
        a = tl.load((x_rows + (dh * stride_xh + dw * stride_xw))[:, None] + offs_c[None, :],
                    mask=row_ok[:, None] & mask_c[None, :], other=0.0)
        b = tl.load(w_cols[None, :] + (t * C_PER_G + offs_c)[:, None], mask=mask_c[:, None] & mask_n[None, :],
                    other=0.0)
        if UPCAST:  # the interpreter's tl.dot is wrong for bf16
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)

    mask = mask_m[:, None] & mask_n[None, :]
    if SPLIT > 1:  # a partial sum: the epilogue runs once, after the reduction
        ws = ws_ptr + (s * M + offs_m)[:, None] * (O_PER_G * (tl.num_programs(2) // SPLIT)) + o[None, :]
        tl.store(ws, acc, mask=mask)
    else:
        r_rows = res_ptr + (n * stride_rn + oh * stride_rh + ow * stride_rw)
        acc = finish(acc, bias_ptr, o, mask_n, r_rows[:, None] + o[None, :], mask, alpha, beta,
                     HAS_BIAS, HAS_RESIDUAL, ACTIVATION)
        o_rows = out_ptr + (n * stride_on + oh * stride_oh + ow * stride_ow)
        tl.store(o_rows[:, None] + o[None, :], acc.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def splitk_epilogue_kernel(
    ws_ptr, bias_ptr, res_ptr, out_ptr, M, O, OH, OW,
    stride_rn, stride_rh, stride_rw, stride_on, stride_oh, stride_ow, alpha, beta,
    SPLIT: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr, ACTIVATION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """out = finish(Σ_s ws[s]): the split-K partials summed in a fixed order, then the one epilogue."""
    offs_m = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.program_id(1).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < O
    mask = (offs_m < M)[:, None] & mask_n[None, :]
    ws = ws_ptr + offs_m[:, None] * O + offs_n[None, :]
    acc = tl.load(ws, mask=mask, other=0.0)
    for s in tl.static_range(1, SPLIT):
        acc += tl.load(ws + s * M * O, mask=mask, other=0.0)
    n, oh, ow = _rows(offs_m, OH, OW)
    r_rows = res_ptr + (n * stride_rn + oh * stride_rh + ow * stride_rw)
    acc = finish(acc, bias_ptr, offs_n, mask_n, r_rows[:, None] + offs_n[None, :], mask, alpha, beta,
                 HAS_BIAS, HAS_RESIDUAL, ACTIVATION)
    o_rows = out_ptr + (n * stride_on + oh * stride_oh + ow * stride_ow)
    tl.store(o_rows[:, None] + offs_n[None, :], acc.to(out_ptr.dtype.element_ty), mask=mask)


def _span(t: torch.Tensor) -> int:
    """The largest element offset ``t`` addresses, +1 (what an index into it must hold)."""
    return 1 + sum((size - 1) * abs(st) for size, st in zip(t.shape, t.stride(), strict=True))


def _channel_stride_one(t: torch.Tensor) -> bool:
    return t.shape[1] == 1 or t.stride(1) == 1


def launch(x: torch.Tensor, weight, out: torch.Tensor, residual: torch.Tensor | None, stride: tuple[int, int],
           padding: tuple[int, int], dilation: tuple[int, int], activation: str, alpha: float, beta: float,
           precision: str, config: GemmConfig) -> object:
    """Launch for `conv2d.conv2d` (which checked shapes and allocated ``out``): ``x``, ``out`` and ``residual``
    are (N, C, H, W) views whose channel stride is 1 (channels-last memory); ``weight`` is its `PackedConv`
    packed (O, KH, KW, C/groups). Returns what the GEMM launch returns: on GPU the compiled kernel (its
    ``asm["ttgir"]`` shows whether the loads became async copies), None under the interpreter."""
    for name, t in (("input", x), ("out", out), ("residual", residual)):
        if t is not None:
            check(_channel_stride_one(t), f"conv2d (channels-last kernel): {name} must have channel stride 1 "
                                          f"(NHWC memory), got strides {tuple(t.stride())}")
    nb, _, h, w = x.shape
    _, o, oh, ow = out.shape
    kh, kw = weight.kernel
    g, cg = weight.groups, weight.in_per_group
    o_per_g, taps, m = o // g, kh * kw, nb * oh * ow
    row_stride = pixel_stride(x)
    is_gemm = (kh, kw) == (1, 1) and tuple(stride) == (1, 1) and tuple(padding) == (0, 0) and row_stride is not None
    bk = config.block_k
    # the split: over taps when there are enough of them, else over channel blocks
    n_cb = triton.cdiv(cg, bk)
    if taps >= config.split_k:
        tap_chunk, c_chunk = triton.cdiv(taps, config.split_k), n_cb * bk
    else:
        tap_chunk, c_chunk = taps, triton.cdiv(n_cb, config.split_k) * bk
    split_c = triton.cdiv(cg, c_chunk)
    split = triton.cdiv(taps, tap_chunk) * split_c
    res = residual if residual is not None else out
    bias = weight.bias if weight.bias is not None else out
    ws = torch.empty((split, m, o), dtype=torch.float32, device=out.device) if split > 1 else out
    idx64 = runtime.INTERPRET or max(_span(t) for t in (x, weight.weight, res, out, ws)) >= 2**31
    grid = (triton.cdiv(m, config.block_m), triton.cdiv(o_per_g, config.block_n), g * split)
    compiled = conv2d_nhwc_kernel[grid](
        x, weight.weight, bias, res, out, ws,
        m, h, w, oh, ow, cg, o_per_g, tap_chunk, c_chunk, split_c,
        stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1],
        x.stride(0), x.stride(2), row_stride if is_gemm else x.stride(3), weight.weight.stride(0),
        res.stride(0), res.stride(2), res.stride(3), out.stride(0), out.stride(2), out.stride(3),
        float(alpha), float(beta),
        KH=kh, KW=kw, IS_GEMM=is_gemm, SPLIT=split, IDX64=idx64,
        HAS_BIAS=weight.bias is not None, HAS_RESIDUAL=residual is not None, ACTIVATION=activation,
        INPUT_PRECISION=precision, UPCAST=runtime.INTERPRET and x.dtype == torch.bfloat16,
        BLOCK_M=config.block_m, BLOCK_N=config.block_n, BLOCK_K=bk,
        num_warps=config.num_warps, num_stages=config.num_stages,
    )
    if split > 1:
        bm, bn = (runtime.pow2(m, 256), runtime.pow2(o, 256)) if runtime.INTERPRET else (32, 128)
        splitk_epilogue_kernel[(triton.cdiv(m, bm), triton.cdiv(o, bn))](
            ws, bias, res, out, m, o, oh, ow,
            res.stride(0), res.stride(2), res.stride(3), out.stride(0), out.stride(2), out.stride(3),
            float(alpha), float(beta), SPLIT=split, HAS_BIAS=weight.bias is not None,
            HAS_RESIDUAL=residual is not None, ACTIVATION=activation, BLOCK_M=bm, BLOCK_N=bn, num_warps=4)
    return compiled
