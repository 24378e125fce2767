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
def mul_kernel(x_ptr, y_ptr, out_ptr, n_elements, inner, GATE: tl.constexpr, BLOCK: tl.constexpr):
    """out = x · y, contiguous; with GATE, y is (N, C, 1, 1) and element i of x reads y[i // inner], inner =
    H·W (the gate of its (n, c) plane)."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n_elements
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
                          ACTIVATION: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_I: tl.constexpr):
    """out = activate(x·scale[c] + shift[c]) with x seen as (rows, inner) = (N·C, H·W) (inner = 1 for (N, C)):
    row r is (n, c) = (r // C, r % C), so each program reads BLOCK_R scales, not one per element. ``x`` may be a
    channel slice of a larger tensor (its rows strided, each row contiguous); ``out`` is contiguous."""
    offs_r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    offs_i = tl.program_id(1).to(tl.int64) * BLOCK_I + tl.arange(0, BLOCK_I)
    mask_r = offs_r < rows
    c = offs_r % C
    scale = tl.load(scale_ptr + c, mask=mask_r)
    shift = tl.load(shift_ptr + c, mask=mask_r)
    mask = mask_r[:, None] & (offs_i < inner)[None, :]
    x_rows = x_ptr + ((offs_r // C) * stride_xn + c * stride_xc)
    y = tl.load(x_rows[:, None] + offs_i[None, :], mask=mask).to(tl.float32) * scale[:, None] + shift[:, None]
    o_rows = out_ptr + offs_r * inner
    tl.store(o_rows[:, None] + offs_i[None, :],
             activate(y, ACTIVATION, alpha, beta).to(out_ptr.dtype.element_ty), mask=mask)


def _grid(n: int):
    return lambda meta: (triton.cdiv(n, meta["BLOCK"]),)


def _check_activation(name: str | None) -> str:
    check(name is None or name in ACTIVATIONS, f"activation must be None or one of {ACTIVATIONS}, got {name!r}")
    return name or ""


def _output(like: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    if out is None:
        return torch.empty_like(like, memory_format=torch.contiguous_format)
    check(out.shape == like.shape and out.dtype == like.dtype and out.is_contiguous(),
          f"out must be a contiguous {like.dtype} tensor of shape {tuple(like.shape)}, "
          f"got {out.dtype} {tuple(out.shape)}")
    return out


def activation(x: torch.Tensor, name: str, alpha: float = 0.0, beta: float = math.inf,
               out: torch.Tensor | None = None) -> torch.Tensor:
    """``name`` (one of ACTIVATIONS) applied elementwise to a contiguous tensor."""
    check(x.is_contiguous(), f"activation {name}: input must be contiguous, got strides {x.stride()}")
    act = _check_activation(name)
    out = _output(x, out)
    n = x.numel()
    unary_kernel[_grid(n)](x, out, n, float(alpha), float(beta), ACTIVATION=act)
    return out


def add(*xs: torch.Tensor, activation: str | None = None, alpha: float = 0.0, beta: float = math.inf,
        out: torch.Tensor | None = None) -> torch.Tensor:
    """activation(x0 + x1 + …) of two or more contiguous tensors of one shape and dtype (no broadcasting)."""
    check(len(xs) >= 2, f"add takes at least two tensors, got {len(xs)}")
    check(all(x.shape == xs[0].shape and x.dtype == xs[0].dtype for x in xs),
          f"add: tensors must share shape and dtype, got {[(tuple(x.shape), x.dtype) for x in xs]}")
    check(all(x.is_contiguous() for x in xs), "add: tensors must be contiguous")
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
    """x · y of contiguous tensors, ``y`` of x's shape or (N, C, 1, 1) for an NCHW ``x`` (the mul op's two forms)."""
    gate = x.dim() == 4 and tuple(y.shape) == (*x.shape[:2], 1, 1) and y.shape != x.shape
    check(gate or y.shape == x.shape, f"mul: y must have x's shape {tuple(x.shape)} or (N, C, 1, 1), "
                                      f"got {tuple(y.shape)}")
    check(x.dtype == y.dtype and x.is_contiguous() and y.is_contiguous(),
          f"mul: tensors must be contiguous and share a dtype, got {x.dtype}, {y.dtype}")
    out = _output(x, out)
    n = x.numel()
    inner = x.shape[2] * x.shape[3] if gate else 1
    mul_kernel[_grid(n)](x, y, out, n, inner, GATE=gate)
    return out


def channel_affine(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, activation: str | None = None,
                   alpha: float = 0.0, beta: float = math.inf, out: torch.Tensor | None = None) -> torch.Tensor:
    """activation(x·scale + shift) per channel (axis 1) of a tensor of rank ≥ 2 whose dimensions after the
    channel axis are contiguous (a channel slice of a concat qualifies); scale/shift are (C,). ``out`` is
    contiguous."""
    check(x.dim() >= 2 and _rows_contiguous(x), f"channel_affine: need rank ≥ 2 with contiguous trailing "
                                                f"dimensions, got shape {tuple(x.shape)} strides {x.stride()}")
    c = x.shape[1]
    check(scale.shape == (c,) and shift.shape == (c,), f"channel_affine: scale and shift must have shape ({c},), "
                                                       f"got {tuple(scale.shape)} and {tuple(shift.shape)}")
    act = _check_activation(activation)
    out = _output(x, out)
    rows = x.shape[0] * c
    inner = x.numel() // rows
    grid = lambda meta: (triton.cdiv(rows, meta["BLOCK_R"]), triton.cdiv(inner, meta["BLOCK_I"]))  # noqa: E731
    channel_affine_kernel[grid](x, scale.float().contiguous(), shift.float().contiguous(), out, rows, inner, c,
                                x.stride(0), x.stride(1), float(alpha), float(beta), ACTIVATION=act)
    return out


def _rows_contiguous(x: torch.Tensor) -> bool:
    """Whether the dimensions after axis 1 are laid out contiguously (so each (n, c) row is one run)."""
    expected = 1
    for size, stride in zip(reversed(x.shape[2:]), reversed(x.stride()[2:]), strict=True):
        if size != 1 and stride != expected:
            return False
        expected *= size
    return True
