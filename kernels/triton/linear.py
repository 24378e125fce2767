"""linear: out = activation(x · Wᵀ + bias + residual), the channels-last implicit GEMM (`gemm`) of a 1×1 conv
on a 1×1 image: rows are the flattened leading axes, the weight stays (out_features, in_features), each row
contiguous along K as the GEMM packs a conv. So a linear layer gets the same tiles, split-K (the classifier's
M is the batch: few tiles) and fused epilogue as the convs. Accumulation is float32; fp32 products are IEEE
unless TF32 is asked for.

`linear_int8` is the int8 linear of a QDQ graph on the codes, by the same view: the 1×1 conv of a 1×1 image run
by `conv2d.conv2d_int8` (the int8 conv's kernel and its one launcher: int8 codes × int8 weights in an int32
``tl.dot``, then s_x · s_w[o] and the float epilogue), so the int8 linear and the int8 conv are one kernel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import conv2d, gemm, runtime
from .conv2d import precision
from .elementwise import ACTIVATIONS
from .runtime import check

INTERPRETER_CAPS = gemm.INTERPRETER_CAPS


@dataclass(frozen=True)
class PackedLinear:
    """A linear layer packed for the kernel: W (out_features, in_features) contiguous, bias float32; seen by the
    GEMM as a 1×1 conv with one group."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    kernel: tuple[int, int] = (1, 1)
    groups: int = 1

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    @property
    def in_per_group(self) -> int:
        return self.in_features


def pack_weight(weight: torch.Tensor, bias: torch.Tensor | None = None,
                dtype: torch.dtype | None = None) -> PackedLinear:
    """Pack an (out_features, in_features) weight (and bias) for `linear`; done once at compile time."""
    check(weight.dim() == 2, f"linear weight must be (out_features, in_features), got {tuple(weight.shape)}")
    check(bias is None or tuple(bias.shape) == (weight.shape[0],),
          f"linear bias must have shape ({weight.shape[0]},), got {None if bias is None else tuple(bias.shape)}")
    return PackedLinear(weight.to(dtype or weight.dtype).contiguous(),
                        None if bias is None else bias.to(torch.float32).contiguous())


def linear(x: torch.Tensor, weight: PackedLinear, *, residual: torch.Tensor | None = None,
           activation: str | None = None, alpha: float = 0.0, beta: float = math.inf,
           out: torch.Tensor | None = None, tf32: bool = False, config: gemm.GemmConfig | None = None,
           sm_count: int | None = None) -> torch.Tensor:
    """activation(x · Wᵀ + b + residual) over the last axis of ``x`` (leading axes are flattened). ``config``
    (block sizes, split-K) defaults to `gemm.default_config` for ``sm_count`` SMs (the device's)."""
    check(x.dim() >= 1 and x.shape[-1] == weight.in_features,
          f"linear: input has {x.shape[-1] if x.dim() else '?'} features (shape {tuple(x.shape)}), the weight "
          f"expects {weight.in_features}")
    check(x.dtype == weight.weight.dtype, f"linear: input is {x.dtype}, the packed weight {weight.weight.dtype}")
    check(activation is None or activation in ACTIVATIONS, f"linear: unknown activation {activation!r}")
    lead = tuple(x.shape[:-1])
    x2 = x.reshape(-1, weight.in_features)  # a view for the layouts the backend passes
    m, k = x2.shape
    n = weight.out_features
    shape = (*lead, n)
    if out is None:
        out = torch.empty(shape, dtype=x.dtype, device=x.device)
    check(tuple(out.shape) == shape and out.dtype == x.dtype,
          f"linear: out must be {x.dtype} {shape}, got {out.dtype} {tuple(out.shape)}")
    if residual is not None:
        check(tuple(residual.shape) == shape, f"linear: residual must have shape {shape}, "
                                              f"got {tuple(residual.shape)}")
    as_image = lambda t: t.reshape(m, t.shape[-1])[:, :, None, None]  # noqa: E731  (M, C, 1, 1): NHWC, 1×1
    out4 = out.view(m, n)[:, :, None, None]
    config = config or gemm.default_config(m, n, k, 1, 1, sm_count or runtime.sm_count())
    gemm.launch(as_image(x2), weight, out4, as_image(residual) if residual is not None else None, (1, 1), (0, 0),
                (1, 1), activation or "", alpha, beta, precision(x.dtype, tf32), config)
    return out


def pack_int8(codes: torch.Tensor, weight_scale: torch.Tensor, x_scale: float, x_zero: int,
              bias: torch.Tensor | None = None, x_dtype: str = "int8") -> conv2d.Int8Conv:
    """Pack an (out_features, in_features) int8 weight (symmetric codes, per output feature ``weight_scale`` or
    one scale) and the real bias for `linear_int8` reading activation codes (``x_dtype`` "int8" or "uint8") of
    scale ``x_scale`` and zero point ``x_zero``: the int8 conv's packing of the (O, I, 1, 1) weight."""
    check(codes.dim() == 2, f"linear_int8 weight must be (out_features, in_features), got {tuple(codes.shape)}")
    return conv2d.pack_int8(codes[:, :, None, None], weight_scale, x_scale, x_zero, bias, 1, x_dtype)


def linear_int8(x: torch.Tensor, weight: conv2d.Int8Conv, *, residual: torch.Tensor | None = None,
                activation: str | None = None, alpha: float = 0.0, beta: float = math.inf,
                out: torch.Tensor | None = None) -> torch.Tensor:
    """activation(dequantize(x) · dequantize(W)ᵀ + b + residual) over the last axis of the activation codes ``x``
    (integers held in float32; leading axes flattened) and a `pack_int8` weight: one launch of the int8 conv
    kernel on the (M, K, 1, 1) view, exact up to the final float32 scaling; the output is float32 real values.

    Under the interpreter its ``tl.dot`` is ``np.matmul(..., dtype=int32)`` and takes tiles of any size (its
    ``min_dot_size`` is 1 each way), so in_features 7 runs as an 8-deep tile; compiled (triton 3.9) an int8
    ``tl.dot`` must be at least 32 deep, as every GPU config of the conv kernel is (columns past K add 0)."""
    p = weight.packed
    check(p.kernel == (1, 1) and p.groups == 1, f"linear_int8: the weight must come from linear.pack_int8, "
                                                f"got a {p.kernel} kernel in {p.groups} groups")
    k, n = p.in_per_group, p.out_channels
    check(x.dim() >= 1 and x.shape[-1] == k, f"linear_int8: input has {x.shape[-1] if x.dim() else '?'} features "
                                             f"(shape {tuple(x.shape)}), the weight expects {k}")
    check(x.dtype == torch.float32, f"linear_int8: input must be float32 codes, got {x.dtype}")
    x2 = x.reshape(-1, k)
    m, shape = x2.shape[0], (*x.shape[:-1], n)
    if out is None:
        out = torch.empty(shape, dtype=torch.float32, device=x.device)
    check(tuple(out.shape) == shape and out.dtype == torch.float32 and out.is_contiguous(),
          f"linear_int8: out must be contiguous float32 {shape}, got {out.dtype} {tuple(out.shape)}")
    if residual is not None:
        check(tuple(residual.shape) == shape, f"linear_int8: residual must have shape {shape}, "
                                              f"got {tuple(residual.shape)}")
        residual = residual.reshape(m, n)[:, :, None, None]
    conv2d.conv2d_int8(x2[:, :, None, None], weight, residual=residual, activation=activation, alpha=alpha,
                       beta=beta, out=out.view(m, n)[:, :, None, None])
    return out
