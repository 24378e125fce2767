"""Elementwise kernels: activations, n-ary add, mul (same shape or the (N, C, 1, 1) gate), per-channel affine (a
batch_norm that could not be folded).

Each program handles ``BLOCK`` consecutive elements of contiguous tensors, computing in float32 and storing
in the output's dtype. ``activate`` is also the epilogue of conv2d and linear, so an activation means the same
thing fused or not.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from . import runtime
from .activations import ACTIVATIONS  # the kernels' own table; each name has its branch in `activate`
from .runtime import check


@triton.jit
def activate(x, ACTIVATION: tl.constexpr, alpha, beta):
    """``ACTIVATION`` ("" for none; one of ACTIVATIONS) applied to float32 ``x``; ``alpha`` is leaky_relu's
    negative slope, elu's alpha and clip's min, ``beta`` clip's max (±inf: no bound). Only tl.* math: libdevice
    is absent under the interpreter, so tanh is written with exp (on |x|, which cannot overflow). The chain is
    resolved when the kernel is traced (``ACTIVATION`` is a constexpr): a name without its branch fails there
    instead of computing the identity."""
    if ACTIVATION == "":
        pass
    elif ACTIVATION == "relu":
        x = tl.maximum(x, 0.0)
    elif ACTIVATION == "relu6":
        x = tl.minimum(tl.maximum(x, 0.0), 6.0)
    elif ACTIVATION == "leaky_relu":
        x = tl.where(x >= 0, x, x * alpha)
    elif ACTIVATION == "sigmoid":
        x = tl.sigmoid(x)
    elif ACTIVATION == "tanh":
        e = tl.exp(-2.0 * tl.abs(x))
        t = (1.0 - e) / (1.0 + e)
        x = tl.where(x >= 0, t, -t)
    elif ACTIVATION == "elu":
        x = tl.where(x > 0, x, alpha * (tl.exp(tl.minimum(x, 0.0)) - 1.0))
    elif ACTIVATION == "hardswish":
        x = x * tl.minimum(tl.maximum(x + 3.0, 0.0), 6.0) / 6.0
    elif ACTIVATION == "hardsigmoid":
        x = tl.minimum(tl.maximum(x + 3.0, 0.0), 6.0) / 6.0
    elif ACTIVATION == "silu":
        x = x * tl.sigmoid(x)
    elif ACTIVATION == "clip":
        x = tl.minimum(tl.maximum(x, alpha), beta)
    else:
        tl.static_assert(False, "activate: unknown ACTIVATION (each name in ACTIVATIONS needs its branch here)")
    return x


@triton.jit
def finish(acc, bias_ptr, cols, mask_n, res_ptrs, mask, alpha, beta, HAS_BIAS: tl.constexpr,
           HAS_RESIDUAL: tl.constexpr, ACTIVATION: tl.constexpr):
    """The GEMM kernels' epilogue on a float32 (rows × cols) accumulator: + bias[cols] (float32), + the residual
    tile at ``res_ptrs``, then the activation. One definition for conv2d, linear and the split-K reduction, so a
    fused epilogue means the same thing in each."""
    if HAS_BIAS:
        acc += tl.load(bias_ptr + cols, mask=mask_n, other=0.0).to(tl.float32)[None, :]
    if HAS_RESIDUAL:
        acc += tl.load(res_ptrs, mask=mask, other=0.0).to(tl.float32)
    return activate(acc, ACTIVATION, alpha, beta)


def _gpu_configs() -> list[triton.Config]:
    return [triton.Config({"BLOCK": b}, num_warps=w) for b, w in ((1024, 4), (2048, 8), (4096, 8))]


INTERPRETER_CAPS = {"BLOCK": 1 << 17}


def _interpreter_block(args: dict) -> dict[str, int]:
    return {"BLOCK": runtime.pow2(args["n_elements"], cap=INTERPRETER_CAPS["BLOCK"])}


@runtime.tuned(_gpu_configs, key=["n_elements"], interpreter=_interpreter_block)
@triton.jit
def unary_kernel(x_ptr, out_ptr, n_elements, alpha, beta, ACTIVATION: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n_elements
    x = tl.load(x_ptr + offs, mask=mask).to(tl.float32)
    tl.store(out_ptr + offs, activate(x, ACTIVATION, alpha, beta).to(out_ptr.dtype.element_ty), mask=mask)


@runtime.tuned(_gpu_configs, key=["n_elements"], interpreter=_interpreter_block)
@triton.jit
def add_kernel(a_ptr, b_ptr, out_ptr, n_elements, alpha, beta, ACTIVATION: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n_elements
    y = tl.load(a_ptr + offs, mask=mask).to(tl.float32) + tl.load(b_ptr + offs, mask=mask).to(tl.float32)
    tl.store(out_ptr + offs, activate(y, ACTIVATION, alpha, beta).to(out_ptr.dtype.element_ty), mask=mask)


@runtime.tuned(_gpu_configs, key=["n_elements"], interpreter=_interpreter_block)
@triton.jit
def mul_kernel(x_ptr, y_ptr, out_ptr, n_elements, inner, C, GATE: tl.constexpr, CHANNELS_LAST: tl.constexpr,
               BLOCK: tl.constexpr):
    """out = x · y, dense; with GATE, y is (N, C, 1, 1): element i of an NCHW x reads y[i // inner], inner = H·W
    (the gate of its (n, c) plane); of a channels-last x, y[(i // inner)·C + i % C], inner = H·W·C."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n_elements
    if CHANNELS_LAST:
        y_offs = (offs // inner) * C + offs % C if GATE else offs
    else:
        y_offs = offs // inner if GATE else offs
    y = tl.load(x_ptr + offs, mask=mask).to(tl.float32) * tl.load(y_ptr + y_offs, mask=mask).to(tl.float32)
    tl.store(out_ptr + offs, y.to(out_ptr.dtype.element_ty), mask=mask)


def _affine_configs() -> list[triton.Config]:
    return [triton.Config({"BLOCK_R": r, "BLOCK_I": i}, num_warps=4) for r, i in ((1, 1024), (4, 256), (64, 16),
                                                                                    (256, 1))]


def _interpreter_affine(args: dict) -> dict[str, int]:
    block_i = runtime.pow2(args["inner"], cap=1 << 12)
    return {"BLOCK_R": runtime.pow2(args["rows"], cap=(1 << 17) // block_i), "BLOCK_I": block_i}


@runtime.tuned(_affine_configs, key=["rows", "inner"], interpreter=_interpreter_affine)
@triton.jit
def channel_affine_kernel(x_ptr, scale_ptr, shift_ptr, out_ptr, rows, inner, C, stride_xn, stride_xc, alpha, beta,
                          ACTIVATION: tl.constexpr, CHANNELS_LAST: tl.constexpr, BLOCK_R: tl.constexpr,
                          BLOCK_I: tl.constexpr):
    """out = activate(x·scale[c] + shift[c]) with x seen as (rows, inner): NCHW (N·C, H·W) (inner = 1 for (N, C)),
    row r is (n, c) = (r // C, r % C), so each program reads BLOCK_R scales, not one per element; channels-last
    (N·H·W, C), the channel is the column, row r at r·stride_xn. ``x`` may be a channel slice of a larger tensor
    (its rows strided, each row contiguous); ``out`` is dense in x's layout."""
    offs_r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    offs_i = tl.program_id(1).to(tl.int64) * BLOCK_I + tl.arange(0, BLOCK_I)
    mask_r = offs_r < rows
    mask = mask_r[:, None] & (offs_i < inner)[None, :]
    if CHANNELS_LAST:
        mask_i = offs_i < inner
        scale = tl.load(scale_ptr + offs_i, mask=mask_i)[None, :]
        shift = tl.load(shift_ptr + offs_i, mask=mask_i)[None, :]
        x_rows = x_ptr + offs_r * stride_xn
    else:
        c = offs_r % C
        scale = tl.load(scale_ptr + c, mask=mask_r)[:, None]
        shift = tl.load(shift_ptr + c, mask=mask_r)[:, None]
        x_rows = x_ptr + ((offs_r // C) * stride_xn + c * stride_xc)
    y = tl.load(x_rows[:, None] + offs_i[None, :], mask=mask).to(tl.float32) * scale + shift
    o_rows = out_ptr + offs_r * inner
    tl.store(o_rows[:, None] + offs_i[None, :],
             activate(y, ACTIVATION, alpha, beta).to(out_ptr.dtype.element_ty), mask=mask)


def _grid(n: int):
    return lambda meta: (triton.cdiv(n, meta["BLOCK"]),)


def _check_activation(name: str | None) -> str:
    check(name is None or name in ACTIVATIONS, f"activation must be None or one of {ACTIVATIONS}, got {name!r}")
    return name or ""


def dense(x: torch.Tensor) -> bool:
    """Whether ``x`` fills its memory in one of the two layouts the kernels use (contiguous or channels-last 4-D),
    so an elementwise kernel may walk it flat."""
    return x.is_contiguous() or (x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last))


def channels_last(x: torch.Tensor) -> bool:
    """A dense channels-last 4-D tensor that is not also contiguous (where the two layouts differ)."""
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def _output(like: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    """``out``, or a new tensor in ``like``'s dense layout; flat kernels need both laid out alike."""
    if out is None:
        return torch.empty_like(like, memory_format=torch.preserve_format)
    check(out.shape == like.shape and out.dtype == like.dtype and dense(out) and out.stride() == like.stride(),
          f"out must be a dense {like.dtype} tensor of shape {tuple(like.shape)} laid out as the input (strides "
          f"{like.stride()}), got {out.dtype} {tuple(out.shape)} strides {out.stride()}")
    return out


def _dense_alike(what: str, *xs: torch.Tensor) -> None:
    check(all(dense(x) for x in xs) and all(x.stride() == xs[0].stride() for x in xs),
          f"{what}: tensors must be dense and laid out alike (contiguous or channels-last), got strides "
          f"{[x.stride() for x in xs]}")


def activation(x: torch.Tensor, name: str, alpha: float = 0.0, beta: float = math.inf,
               out: torch.Tensor | None = None) -> torch.Tensor:
    """``name`` (one of ACTIVATIONS) applied elementwise to a dense tensor (contiguous or channels-last)."""
    _dense_alike(f"activation {name}", x)
    act = _check_activation(name)
    out = _output(x, out)
    n = x.numel()
    unary_kernel[_grid(n)](x, out, n, float(alpha), float(beta), ACTIVATION=act)
    return out


def add(*xs: torch.Tensor, activation: str | None = None, alpha: float = 0.0, beta: float = math.inf,
        out: torch.Tensor | None = None) -> torch.Tensor:
    """activation(x0 + x1 + …) of two or more dense tensors of one shape, dtype and layout (no broadcasting)."""
    check(len(xs) >= 2, f"add takes at least two tensors, got {len(xs)}")
    check(all(x.shape == xs[0].shape and x.dtype == xs[0].dtype for x in xs),
          f"add: tensors must share shape and dtype, got {[(tuple(x.shape), x.dtype) for x in xs]}")
    _dense_alike("add", *xs)
    act = _check_activation(activation)
    out = _output(xs[0], out)
    n = out.numel()
    acc = xs[0]
    for k, x in enumerate(xs[1:], start=2):  # left to right, as the reference sums; the activation comes last
        last = k == len(xs)
        # partial sums go to a fresh tensor: never in place, since autotuning re-runs a launch
        dst = out if last else torch.empty_like(out)
        add_kernel[_grid(n)](acc, x, dst, n, float(alpha), float(beta), ACTIVATION=act if last else "")
        acc = dst
    return out


def mul(x: torch.Tensor, y: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """x · y of dense tensors, ``y`` of x's shape (and layout) or (N, C, 1, 1) for a 4-D ``x`` (the mul op's two
    forms); ``x`` contiguous or channels-last."""
    gate = x.dim() == 4 and tuple(y.shape) == (*x.shape[:2], 1, 1) and y.shape != x.shape
    check(gate or y.shape == x.shape, f"mul: y must have x's shape {tuple(x.shape)} or (N, C, 1, 1), "
                                      f"got {tuple(y.shape)}")
    check(x.dtype == y.dtype, f"mul: tensors must share a dtype, got {x.dtype}, {y.dtype}")
    _dense_alike("mul", x) if gate else _dense_alike("mul", x, y)
    check(not gate or y.is_contiguous(), f"mul: the gate must be contiguous, got strides {y.stride()}")
    out = _output(x, out)
    n, last = x.numel(), channels_last(x)
    inner = (x.shape[2] * x.shape[3] * (x.shape[1] if last else 1)) if gate else 1
    mul_kernel[_grid(n)](x, y, out, n, inner, x.shape[1] if x.dim() > 1 else 1, GATE=gate, CHANNELS_LAST=last)
    return out


def channel_affine(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, activation: str | None = None,
                   alpha: float = 0.0, beta: float = math.inf, out: torch.Tensor | None = None) -> torch.Tensor:
    """activation(x·scale + shift) per channel (axis 1) of a tensor of rank ≥ 2 whose dimensions after the
    channel axis are contiguous, or of a channels-last 4-D tensor whose pixels are evenly spaced (a channel slice
    of a concat qualifies either way); scale/shift are (C,). ``out`` is dense in x's layout."""
    c = x.shape[1]
    last = x.dim() == 4 and x.stride(1) == 1 and c > 1 and not _rows_contiguous(x)
    pixel_stride_ = pixel_stride(x) if last else None
    check(x.dim() >= 2 and (_rows_contiguous(x) or pixel_stride_ is not None),
          f"channel_affine: need rank ≥ 2 with contiguous trailing dimensions or channels-last 4-D, got shape "
          f"{tuple(x.shape)} strides {x.stride()}")
    check(scale.shape == (c,) and shift.shape == (c,), f"channel_affine: scale and shift must have shape ({c},), "
                                                       f"got {tuple(scale.shape)} and {tuple(shift.shape)}")
    act = _check_activation(activation)
    fmt = torch.channels_last if last else torch.contiguous_format
    if out is None:
        out = torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=fmt)
    check(out.shape == x.shape and out.dtype == x.dtype and out.is_contiguous(memory_format=fmt),
          f"channel_affine: out must be a dense {x.dtype} tensor of shape {tuple(x.shape)} in the input's layout")
    rows, inner = (x.numel() // c, c) if last else (x.shape[0] * c, x.numel() // (x.shape[0] * c))
    grid = lambda meta: (triton.cdiv(rows, meta["BLOCK_R"]), triton.cdiv(inner, meta["BLOCK_I"]))  # noqa: E731
    channel_affine_kernel[grid](x, scale.float().contiguous(), shift.float().contiguous(), out, rows, inner, c,
                                pixel_stride_ if last else x.stride(0), x.stride(1), float(alpha), float(beta),
                                ACTIVATION=act, CHANNELS_LAST=last)
    return out


def pixel_stride(t: torch.Tensor) -> int | None:
    """The stride between consecutive (n, h, w) pixels of a 4-D channels-last view when they are evenly spaced
    (a dense NHWC tensor or a channel slice of one), else None."""
    try:
        return t.permute(0, 2, 3, 1).view(-1, t.shape[1]).stride(0)
    except RuntimeError:
        return None




def _rows_contiguous(x: torch.Tensor) -> bool:
    """Whether the dimensions after axis 1 are laid out contiguously (so each (n, c) row is one run)."""
    expected = 1
    for size, stride in zip(reversed(x.shape[2:]), reversed(x.stride()[2:]), strict=True):
        if size != 1 and stride != expected:
            return False
        expected *= size
    return True
