"""linear: out = activation(x · Wᵀ + bias + residual), the channels-last implicit GEMM (`gemm`) of a 1×1 conv
on a 1×1 image: rows are the flattened leading axes, the weight stays (out_features, in_features), each row
contiguous along K as the GEMM packs a conv. So a linear layer gets the same tiles, split-K (the classifier's
M is the batch: few tiles) and fused epilogue as the convs. Accumulation is float32; fp32 products are IEEE
unless TF32 is asked for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import gemm, runtime
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
