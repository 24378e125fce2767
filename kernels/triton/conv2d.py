"""conv2d with a fused epilogue: out = activation(conv(x, W) + bias + residual), in two layouts.

`pack_weight(..., layout="nhwc")` packs for the channels-last implicit GEMM in `gemm` (the Triton backend's
default: activations NHWC between layers, K ordered (kh, kw, c)); `layout="nchw"` (the default here, and the
oracle) for the kernel below, an implicit GEMM that gathers NCHW taps along K and takes any strides, so it also
serves a stem that reads the NCHW network input and writes NHWC. `conv2d` picks the kernel from the packing.

The NCHW kernel:

Per group g the convolution is a matrix product  out[m, o] = Σ_k A[m, k] · B[k, o]  where
    m = (n, oh, ow)       M = N·OH·OW output pixels,
    k = (c, kh, kw)       K = C/groups·KH·KW taps (the weight's OIHW order),
    o                     O/groups output channels,
and A (the im2col matrix) is never built: each (m, k) tile is gathered from x on the fly, the padding and
the ragged edges handled by the load mask. Accumulation is float32 whatever the storage dtype.

The weight is pre-packed once (`pack_weight`) as (groups, K, O/groups), so a B tile is contiguous along o.
Every tensor is addressed through its strides, so the output may be a channel slice of a larger tensor
(concat without a copy) and the residual any NCHW-shaped view. Depthwise convs (one input channel per group)
go to the direct kernel in `depthwise`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from . import depthwise, gemm, runtime
from .elementwise import ACTIVATIONS, finish
from .runtime import check


def _gpu_configs() -> list[triton.Config]:
    shapes = [(128, 128, 32, 4, 8), (128, 64, 32, 4, 4), (64, 128, 32, 4, 4), (64, 64, 32, 4, 4),
              (128, 32, 32, 4, 4), (32, 64, 32, 5, 2), (128, 256, 64, 3, 8), (64, 32, 64, 4, 4)]
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k}, num_stages=s, num_warps=w)
            for m, n, k, s, w in shapes]


# Large tiles under the interpreter: its cost is per program and per operation, not per element (measured on
# ResNet-18's layers: 1024×512×512 runs them ~2× faster than 256×512×256).
INTERPRETER_CAPS = {"BLOCK_M": 1024, "BLOCK_N": 512, "BLOCK_K": 512}


def _interpreter_blocks(args: dict) -> dict[str, int]:
    return {"BLOCK_M": runtime.pow2(args["M"], cap=INTERPRETER_CAPS["BLOCK_M"]),
            "BLOCK_N": runtime.pow2(args["O_PER_G"], cap=INTERPRETER_CAPS["BLOCK_N"]),
            "BLOCK_K": runtime.pow2(args["K_PER_G"], cap=INTERPRETER_CAPS["BLOCK_K"])}


@runtime.tuned(_gpu_configs, key=["M", "O_PER_G", "K_PER_G", "KH", "KW"], interpreter=_interpreter_blocks)
@triton.jit
def conv2d_kernel(
    x_ptr, w_ptr, bias_ptr, res_ptr, out_ptr,
    M, H, W, OH, OW, C_PER_G, O_PER_G, K_PER_G,
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    stride_xn, stride_xc, stride_xh, stride_xw,
    stride_wg, stride_wk, stride_wo,
    stride_rn, stride_rc, stride_rh, stride_rw,
    stride_on, stride_oc, stride_oh, stride_ow,
    alpha, beta, scale_ptr, colsum_ptr, x_zero, x_zero_int, code_shift,
    KH: tl.constexpr, KW: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr, ACTIVATION: tl.constexpr,
    INPUT_PRECISION: tl.constexpr, UPCAST: tl.constexpr, QUANT: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    # Index vectors are 64-bit: no overflow on large tensors, and under the interpreter no per-operation
    # overflow check (it checks every 32-bit add and multiply, at a fixed cost per operation).
    pid_m = tl.program_id(0).to(tl.int64)
    pid_n = tl.program_id(1).to(tl.int64)
    g = tl.program_id(2).to(tl.int64)

    # Rows: output pixels m -> (n, oh, ow), the top-left corner (ih0, iw0) of their window, and the range of
    # tap offsets that stay inside the image: tap (dh, dw) of row m is read iff lo_h <= dh < hi_h and
    # lo_w <= dw < hi_w. Rows past M get the empty range [1, 0). Bounds checks are then compares of 1-D
    # vectors broadcast against each other, and every 2-D address is a pointer plus broadcast offsets.
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < M
    ow = offs_m % OW
    oh = (offs_m // OW) % OH
    n = offs_m // OW // OH
    ih0 = oh * stride_h - pad_h
    iw0 = ow * stride_w - pad_w
    lo_h = tl.where(mask_m, -ih0, 1).to(tl.int32)
    hi_h = tl.where(mask_m, H - ih0, 0).to(tl.int32)
    lo_w = (-iw0).to(tl.int32)
    hi_w = (W - iw0).to(tl.int32)
    x_rows = x_ptr + (n * stride_xn + g * C_PER_G * stride_xc + ih0 * stride_xh + iw0 * stride_xw)

    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < O_PER_G
    w_cols = w_ptr + (g * stride_wg + offs_n * stride_wo)

    if QUANT:  # int8 codes (held in float32) × int8 weights, accumulated exactly in int32
        acc_q = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K_PER_G, BLOCK_K):
        # Columns: taps k -> (c, kh, kw) -> input offset and (dh, dw). A tap past K never passes lo_h.
        offs_k = k0 + tl.arange(0, BLOCK_K).to(tl.int64)
        mask_k = offs_k < K_PER_G
        c = offs_k // (KH * KW)
        r = offs_k % (KH * KW)
        dh = (r // KW) * dil_h
        dw = (r % KW) * dil_w
        x_cols = c * stride_xc + dh * stride_xh + dw * stride_xw
        dh = tl.where(mask_k, dh, -(1 << 30)).to(tl.int32)
        dw = dw.to(tl.int32)
        mask_a = ((dh[None, :] >= lo_h[:, None]) & (dh[None, :] < hi_h[:, None])
                  & (dw[None, :] >= lo_w[:, None]) & (dw[None, :] < hi_w[:, None]))
        if QUANT:  # padding reads the zero point (the code of the real value 0); uint8 codes shift into int8
            a = (tl.load(x_rows[:, None] + x_cols[None, :], mask=mask_a, other=x_zero) - code_shift).to(tl.int8)
            b = tl.load(w_cols[None, :] + (offs_k * stride_wk)[:, None], mask=mask_k[:, None] & mask_n[None, :],
                        other=0)
            acc_q = tl.dot(a, b, acc_q, out_dtype=tl.int32)
        else:
            a = tl.load(x_rows[:, None] + x_cols[None, :], mask=mask_a, other=0.0)
            b = tl.load(w_cols[None, :] + (offs_k * stride_wk)[:, None], mask=mask_k[:, None] & mask_n[None, :],
                        other=0.0)
            if UPCAST:  # the interpreter's tl.dot is wrong for bf16
                a = a.to(tl.float32)
                b = b.to(tl.float32)
            acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)

    o = g * O_PER_G + offs_n
    if QUANT:  # Σ (q - z)·w = Σ q·w - z·Σ w (q, z shifted alike), still exact in int32; then s_x·s_w[o]
        colsum = tl.load(colsum_ptr + o, mask=mask_n, other=0)
        scale = tl.load(scale_ptr + o, mask=mask_n, other=0.0)
        acc = (acc_q - x_zero_int * colsum[None, :]).to(tl.float32) * scale[None, :]
    # Epilogue on the float32 accumulator: bias, residual, activation; one store.
    mask = mask_m[:, None] & mask_n[None, :]
    r_rows = res_ptr + (n * stride_rn + oh * stride_rh + ow * stride_rw)
    acc = finish(acc, bias_ptr, o, mask_n, r_rows[:, None] + (o * stride_rc)[None, :], mask, alpha, beta,
                 HAS_BIAS, HAS_RESIDUAL, ACTIVATION)
    o_rows = out_ptr + (n * stride_on + oh * stride_oh + ow * stride_ow)
    tl.store(o_rows[:, None] + (o * stride_oc)[None, :], acc.to(out_ptr.dtype.element_ty), mask=mask)


@dataclass(frozen=True)
class PackedConv:
    """A conv2d's weight packed for one kernel, contiguous: ``layout`` "nchw": (groups, C/groups·KH·KW,
    O/groups) for the NCHW kernel (and depthwise); "nhwc": (O, KH·KW·C/groups), K = (kh, kw, c) with c fastest,
    for the channels-last GEMM. Plus the bias (O,) in float32 (the epilogue adds it to the float32
    accumulator) and the shapes that were packed."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    out_channels: int
    in_per_group: int
    kernel: tuple[int, int]
    groups: int
    layout: str = "nchw"


def pack_weight(weight: torch.Tensor, bias: torch.Tensor | None = None, groups: int = 1,
                dtype: torch.dtype | None = None, layout: str = "nchw") -> PackedConv:
    """Pack an OIHW weight (and bias) for `conv2d` in ``layout`` (the input layout it will read: "nchw" or
    "nhwc"; a depthwise weight is packed for its direct kernel either way); done once at compile time."""
    check(layout in ("nchw", "nhwc"), f"conv2d: layout must be 'nchw' or 'nhwc', got {layout!r}")
    check(weight.dim() == 4, f"conv2d weight must be OIHW (rank 4), got shape {tuple(weight.shape)}")
    o, cg, kh, kw = weight.shape
    check(groups >= 1 and o % groups == 0, f"conv2d: groups={groups} must divide the {o} output channels")
    check(bias is None or tuple(bias.shape) == (o,), f"conv2d bias must have shape ({o},), "
                                                     f"got {None if bias is None else tuple(bias.shape)}")
    bias = None if bias is None else bias.to(torch.float32).contiguous()
    weight = weight.to(dtype or weight.dtype)
    if layout == "nhwc" and not (cg == 1 and groups > 1):
        return PackedConv(weight.permute(0, 2, 3, 1).reshape(o, kh * kw * cg).contiguous(), bias, o, cg, (kh, kw),
                          groups, "nhwc")
    packed = weight.reshape(groups, o // groups, cg * kh * kw).transpose(1, 2)
    return PackedConv(packed.contiguous(), bias, o, cg, (kh, kw), groups)


def output_size(size: int, kernel: int, stride: int, pad: int, dilation: int) -> int:
    return (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1


def conv2d(x: torch.Tensor, weight: PackedConv, *, stride: tuple[int, int] = (1, 1),
           padding: tuple[int, int] = (0, 0), dilation: tuple[int, int] = (1, 1),
           residual: torch.Tensor | None = None, activation: str | None = None, alpha: float = 0.0,
           beta: float = math.inf, out: torch.Tensor | None = None, tf32: bool = False,
           config: gemm.GemmConfig | None = None, sm_count: int | None = None) -> torch.Tensor:
    """activation(conv2d(x, W, b) + residual) for ``x`` of logical shape (N, C, H, W) and a `pack_weight` weight.

    An "nchw" weight: ``x`` any strides, ``out`` any strides (e.g. a channel slice of a concat's output),
    allocated contiguous if not given. An "nhwc" weight: ``x``, ``out`` and ``residual`` in channels-last memory
    (channel stride 1; slices of larger tensors allowed), ``out`` allocated channels-last; ``config`` (blocks,
    split-K) defaults to `gemm.default_config` for ``sm_count`` SMs (the device's). ``tf32`` lets float32
    products use TF32 tensor cores on GPU (then compare with the tf32 tolerance); by default exact IEEE.
    """
    check(x.dtype == weight.weight.dtype, f"conv2d: input is {x.dtype}, the packed weight {weight.weight.dtype}")
    out = _checked_output("conv2d", x, weight, stride, padding, dilation, residual, activation, out)
    nb, _, oh, ow = out.shape
    kh, kw = weight.kernel
    g = weight.groups
    if weight.in_per_group == 1 and g > 1:  # depthwise: a direct convolution beats a per-channel GEMM
        depthwise.launch(x, weight, out, residual, stride, padding, dilation, activation, alpha, beta)
        return out
    m = nb * oh * ow
    o_per_g = weight.out_channels // g
    if weight.layout == "nhwc":
        config = config or gemm.default_config(m, o_per_g, weight.in_per_group, kh * kw, g,
                                               sm_count or runtime.sm_count())
        gemm.launch(x, weight, out, residual, stride, padding, dilation, activation or "", alpha, beta,
                    precision(x.dtype, tf32), config)
        return out
    _launch_nchw(x, weight, out, residual, stride, padding, dilation, activation, alpha, beta, precision(x.dtype, tf32))
    return out


def _checked_output(what: str, x: torch.Tensor, weight: PackedConv, stride, padding, dilation,
                    residual: torch.Tensor | None, activation: str | None, out: torch.Tensor | None) -> torch.Tensor:
    """The checks `conv2d` and `conv2d_int8` share (rank, channels, activation, output size, ``out`` and
    ``residual`` shapes), and ``out`` allocated in ``x``'s dtype if not given: channels-last for an "nhwc" weight
    or a channels-last ``x``."""
    check(x.dim() == 4, f"{what} input must be NCHW (rank 4), got shape {tuple(x.shape)}")
    nb, c, h, w = x.shape
    kh, kw = weight.kernel
    g = weight.groups
    check(c == weight.in_per_group * g, f"{what}: input has {c} channels, the weight expects "
                                        f"{weight.in_per_group}·{g} (C/groups·groups)")
    check(activation is None or activation in ACTIVATIONS, f"{what}: unknown activation {activation!r}")
    oh = output_size(h, kh, stride[0], padding[0], dilation[0])
    ow = output_size(w, kw, stride[1], padding[1], dilation[1])
    check(oh >= 1 and ow >= 1, f"{what}: kernel {kh}×{kw} (dilation {dilation}) does not fit input {h}×{w} "
                               f"padded by {padding}")
    shape = (nb, weight.out_channels, oh, ow)
    if out is None:
        fmt = torch.channels_last if weight.layout == "nhwc" or _channels_last(x) else torch.contiguous_format
        out = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=fmt)
    check(tuple(out.shape) == shape and out.dtype == x.dtype, f"{what}: out must be {x.dtype} {shape}, "
                                                              f"got {out.dtype} {tuple(out.shape)}")
    if residual is not None:
        check(tuple(residual.shape) == shape, f"{what}: residual must have the output's shape {shape}, "
                                              f"got {tuple(residual.shape)}")
    return out


def _launch_nchw(x: torch.Tensor, weight: PackedConv, out: torch.Tensor, residual: torch.Tensor | None, stride,
                 padding, dilation, activation: str | None, alpha: float, beta: float, input_precision: str,
                 quant: Int8Conv | None = None) -> None:
    """The NCHW kernel's launch (any strides), float or, with ``quant``, int8 codes × int8 weights."""
    nb, _, h, w = x.shape
    _, _, oh, ow = out.shape
    kh, kw = weight.kernel
    g = weight.groups
    m, o_per_g = nb * oh * ow, weight.out_channels // g
    res = residual if residual is not None else out  # never read when HAS_RESIDUAL is False
    k_per_g = weight.in_per_group * kh * kw
    grid = lambda meta: (triton.cdiv(m, meta["BLOCK_M"]), triton.cdiv(o_per_g, meta["BLOCK_N"]), g)  # noqa: E731
    conv2d_kernel[grid](
        x, weight.weight, weight.bias if weight.bias is not None else out, res, out,
        m, h, w, oh, ow, weight.in_per_group, o_per_g, k_per_g,
        stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1],
        *x.stride(), *weight.weight.stride(), *res.stride(), *out.stride(),
        float(alpha), float(beta), quant.scale if quant else out, quant.colsum if quant else out,
        float(quant.x_zero if quant else 0), (quant.x_zero - quant.shift) if quant else 0,
        float(quant.shift if quant else 0),
        KH=kh, KW=kw, HAS_BIAS=weight.bias is not None, HAS_RESIDUAL=residual is not None,
        ACTIVATION=activation or "", INPUT_PRECISION=input_precision,
        UPCAST=runtime.INTERPRET and x.dtype == torch.bfloat16, QUANT=quant is not None,
    )


@dataclass(frozen=True)
class Int8Conv:
    """A conv2d's int8 weight codes packed for the NCHW kernel (`PackedConv`, int8; its bias the float32 real
    bias), with what turns the int32 sum into the real output: ``scale[o] = s_x · s_w[o]`` (float32) and
    ``colsum[o] = Σ_k w[k, o]`` (int32), so that ``y[o] = scale[o] · (Σ_k q_x·w - z_x · colsum[o]) + bias[o]``.
    uint8 activation codes (0..255) enter the int8 dot shifted by ``shift`` = 128, their zero point alike."""

    packed: PackedConv
    scale: torch.Tensor
    colsum: torch.Tensor
    x_zero: int
    shift: int = 0


def pack_int8(codes: torch.Tensor, weight_scale: torch.Tensor, x_scale: float, x_zero: int,
              bias: torch.Tensor | None = None, groups: int = 1, x_dtype: str = "int8") -> Int8Conv:
    """Pack an OIHW int8 weight (symmetric codes, per output channel ``weight_scale`` or one scale) for
    `conv2d_int8` reading activation codes (``x_dtype`` "int8" or "uint8") of scale ``x_scale`` and zero point
    ``x_zero``."""
    check(x_dtype in ("int8", "uint8"), f"conv2d_int8: activation codes are int8 or uint8, not {x_dtype!r}")
    check(codes.dtype == torch.int8, f"conv2d_int8: weight codes must be int8, got {codes.dtype}")
    o, cg, kh, kw = codes.shape
    # the depthwise kernel carries Σ (q - z)·w in float32: exact while KH·KW·255·127 < 2^24
    check(not (cg == 1 and groups > 1) or kh * kw * 255 * 127 < 2**24,
          f"conv2d_int8: a depthwise {kh}×{kw} kernel's integer sums could exceed float32's 2^24")
    check(weight_scale.numel() in (1, o), f"conv2d_int8: 1 or {o} weight scales, got {weight_scale.numel()}")
    packed = pack_weight(codes, bias, groups, torch.int8, "nchw")
    # per (group, k, o/g) -> per output channel o = g·O/g + j: the sum over k of that group's column
    colsum = packed.weight.to(torch.int32).sum(dim=1).reshape(o)
    scale = (weight_scale.to(torch.float64).expand(o) * x_scale).to(torch.float32).contiguous()
    return Int8Conv(packed, scale, colsum.contiguous(), int(x_zero), 128 if x_dtype == "uint8" else 0)


def conv2d_int8(x: torch.Tensor, weight: Int8Conv, *, stride: tuple[int, int] = (1, 1),
                padding: tuple[int, int] = (0, 0), dilation: tuple[int, int] = (1, 1),
                residual: torch.Tensor | None = None, activation: str | None = None, alpha: float = 0.0,
                beta: float = math.inf, out: torch.Tensor | None = None) -> torch.Tensor:
    """activation(conv2d(dequantize(x), dequantize(W)) + bias + residual) for activation codes ``x`` (integers
    held in float32, any strides) and a `pack_int8` weight: an int8 ``tl.dot`` with int32 accumulation (a
    depthwise conv: its direct kernel summing the integer products in float32, exact below 2^24), exact up to the
    final float32 scaling; the output is float32 real values."""
    p = weight.packed
    check(x.dtype == torch.float32, f"conv2d_int8: input must be float32 codes, got {x.dtype}")
    out = _checked_output("conv2d_int8", x, p, stride, padding, dilation, residual, activation, out)
    if p.in_per_group == 1 and p.groups > 1:  # depthwise: the direct kernel on the codes (uint8 needs no shift)
        depthwise.launch(x, p, out, residual, stride, padding, dilation, activation, alpha, beta, weight)
    else:
        _launch_nchw(x, p, out, residual, stride, padding, dilation, activation, alpha, beta, "ieee", weight)
    return out


def _channels_last(x: torch.Tensor) -> bool:
    """Whether ``x`` is in channels-last memory and not also plain contiguous (so an output should follow it)."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def precision(dtype: torch.dtype, tf32: bool) -> str:
    """tl.dot's input_precision: float32 products are exact IEEE unless TF32 was asked for."""
    return "tf32" if tf32 and dtype == torch.float32 else "ieee"
