"""quantize_linear and dequantize_linear (ir/ops/quantize_linear.py, dequantize_linear.py) as one elementwise kernel.

The codes are integers held in the compute dtype (float32), as the reference holds them: exact for int8/uint8.
``q = clip(rint(x / s) + z, lo, hi)`` and ``x = (q - z) · s``, per tensor or per channel along one axis.

Exact, not approximately so, because a quantized graph's codes are compared code for code:
- ``x / s`` is ``div_rn``, IEEE division rounded to nearest (Triton's ``/`` on a GPU is the approximate
  ``div.full.f32``, two ulps off; the reference divides exactly);
- round half to even (ONNX's rule) by hand, since libdevice's ``rint`` is missing under the interpreter:
  ``v - floor(v)`` is exact for |v| < 2^23, and ``v`` is saturated to just outside the code range first, which
  changes no result after the final clip. ``floor(v + 0.5)`` would not do: 0.49999997 + 0.5 rounds to 1.0.

Per channel: the channel of flat element i of a dense tensor (contiguous or channels-last) is
``(i // stride[axis]) % C``, so the kernel walks memory flat in either layout.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import runtime
from .elementwise import _dense_alike, _grid, _output
from .runtime import check

INTERPRETER_BLOCK_CAP = 1 << 16


def _gpu_configs() -> list[triton.Config]:
    return [triton.Config({"BLOCK": b}, num_warps=w) for b, w in ((1024, 4), (2048, 8))]


def _interpreter_block(args: dict) -> dict[str, int]:
    return {"BLOCK": runtime.pow2(args["n_elements"], cap=INTERPRETER_BLOCK_CAP)}


@triton.jit
def _round_half_even(v):
    f = tl.floor(v)
    frac = v - f
    odd = (f - 2.0 * tl.floor(f * 0.5)) != 0.0
    return tl.where((frac > 0.5) | ((frac == 0.5) & odd), f + 1.0, f)


@runtime.tuned(_gpu_configs, key=["n_elements"], interpreter=_interpreter_block)
@triton.jit
def qdq_kernel(x_ptr, scale_ptr, zero_ptr, out_ptr, n_elements, channel_stride, channels, lo, hi,
               PER_CHANNEL: tl.constexpr, DEQUANTIZE: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n_elements
    if PER_CHANNEL:
        c = (offs // channel_stride) % channels
        s = tl.load(scale_ptr + c, mask=mask, other=1.0)
        z = tl.load(zero_ptr + c, mask=mask, other=0.0)
    else:
        s = tl.load(scale_ptr)
        z = tl.load(zero_ptr)
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if DEQUANTIZE:
        y = (x - z) * s
    else:
        v = tl.minimum(tl.maximum(tl.math.div_rn(x, s), lo - z - 1.0), hi - z + 1.0)
        y = tl.minimum(tl.maximum(_round_half_even(v) + z, lo), hi)
    tl.store(out_ptr + offs, y.to(out_ptr.dtype.element_ty), mask=mask)


def qdq(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, *, dequantize: bool,
        code_range: tuple[int, int] = (0, 0), axis: int | None = None,
        out: torch.Tensor | None = None) -> torch.Tensor:
    """quantize_linear (``dequantize=False``: codes in ``code_range``, saturated) or dequantize_linear of a dense
    ``x`` (contiguous or channels-last); ``scale`` and ``zero_point`` are float32 tensors of one element (per
    tensor) or of ``x.shape[axis]`` (per channel)."""
    _dense_alike("quantize/dequantize", x)
    per_channel = axis is not None
    channels = x.shape[axis] if per_channel else 1
    check(scale.numel() == zero_point.numel() == channels,
          f"quantize/dequantize: {channels} scale(s) and zero point(s) expected, got {scale.numel()} and "
          f"{zero_point.numel()}")
    out = _output(x, out)
    n = x.numel()
    lo, hi = code_range
    qdq_kernel[_grid(n)](x, scale, zero_point, out, n, x.stride(axis) if per_channel else 1, channels,
                         float(lo), float(hi), PER_CHANNEL=per_channel, DEQUANTIZE=dequantize)
    return out
