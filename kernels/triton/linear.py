"""linear: out = activation(x · Wᵀ + bias + residual), a tiled matmul with conv2d's fused epilogue.

The weight (out_features, in_features) is pre-packed once as Wᵀ, (K, N) contiguous, so a B tile is contiguous
along N (Triton's matmul tutorial layout). Accumulation is float32; fp32 products are IEEE unless TF32 is asked
for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from . import runtime
from .conv2d import precision
from .elementwise import ACTIVATIONS, activate
from .runtime import check


def _gpu_configs() -> list[triton.Config]:
    shapes = [(128, 128, 32, 4, 8), (64, 128, 32, 4, 4), (128, 64, 32, 4, 4), (64, 64, 64, 4, 4),
              (32, 128, 64, 4, 4), (16, 128, 128, 4, 4), (16, 256, 64, 3, 8), (16, 64, 256, 3, 4)]
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k}, num_stages=s, num_warps=w)
            for m, n, k, s, w in shapes]


# Large tiles under the interpreter: its cost is per program and per operation, not per element.
INTERPRETER_CAPS = {"BLOCK_M": 256, "BLOCK_N": 1024, "BLOCK_K": 512}


def _interpreter_blocks(args: dict) -> dict[str, int]:
    return {"BLOCK_M": runtime.pow2(args["M"], cap=INTERPRETER_CAPS["BLOCK_M"]),
            "BLOCK_N": runtime.pow2(args["N"], cap=INTERPRETER_CAPS["BLOCK_N"]),
            "BLOCK_K": runtime.pow2(args["K"], cap=INTERPRETER_CAPS["BLOCK_K"])}


@runtime.tuned(_gpu_configs, key=["M", "N", "K"], interpreter=_interpreter_blocks)
@triton.jit
def linear_kernel(
    x_ptr, w_ptr, bias_ptr, res_ptr, out_ptr,
    M, N, K,
    stride_xm, stride_xk, stride_wk, stride_wn, stride_rm, stride_rn, stride_om, stride_on,
    alpha, beta,
    HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr, ACTIVATION: tl.constexpr,
    INPUT_PRECISION: tl.constexpr, UPCAST: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    # 64-bit index vectors, as in conv2d (large tensors; no interpreter overflow checks).
    offs_m = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.program_id(1).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_m = offs_m < M
    mask_n = offs_n < N
    x_rows = x_ptr + offs_m * stride_xm
    w_cols = w_ptr + offs_n * stride_wn

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K).to(tl.int64)
        mask_k = offs_k < K
        a = tl.load(x_rows[:, None] + (offs_k * stride_xk)[None, :], mask=mask_m[:, None] & mask_k[None, :],
                    other=0.0)
        b = tl.load(w_cols[None, :] + (offs_k * stride_wk)[:, None], mask=mask_k[:, None] & mask_n[None, :],
                    other=0.0)
        if UPCAST:  # the interpreter's tl.dot is wrong for bf16
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)

    mask = mask_m[:, None] & mask_n[None, :]
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
    if HAS_RESIDUAL:
        r_rows = res_ptr + offs_m * stride_rm
        acc += tl.load(r_rows[:, None] + (offs_n * stride_rn)[None, :], mask=mask, other=0.0).to(tl.float32)
    acc = activate(acc, ACTIVATION, alpha, beta)
    o_rows = out_ptr + offs_m * stride_om
    tl.store(o_rows[:, None] + (offs_n * stride_on)[None, :], acc.to(out_ptr.dtype.element_ty), mask=mask)


@dataclass(frozen=True)
class PackedLinear:
    """A linear layer packed for the kernel: Wᵀ (in_features, out_features) contiguous, bias float32."""

    weight: torch.Tensor
    bias: torch.Tensor | None

    @property
    def in_features(self) -> int:
        return self.weight.shape[0]

    @property
    def out_features(self) -> int:
        return self.weight.shape[1]


def pack_weight(weight: torch.Tensor, bias: torch.Tensor | None = None,
                dtype: torch.dtype | None = None) -> PackedLinear:
    """Pack an (out_features, in_features) weight (and bias) for `linear`; done once at compile time."""
    check(weight.dim() == 2, f"linear weight must be (out_features, in_features), got {tuple(weight.shape)}")
    check(bias is None or tuple(bias.shape) == (weight.shape[0],),
          f"linear bias must have shape ({weight.shape[0]},), got {None if bias is None else tuple(bias.shape)}")
    return PackedLinear(weight.to(dtype or weight.dtype).t().contiguous(),
                        None if bias is None else bias.to(torch.float32).contiguous())


def linear(x: torch.Tensor, weight: PackedLinear, *, residual: torch.Tensor | None = None,
           activation: str | None = None, alpha: float = 0.0, beta: float = math.inf,
           out: torch.Tensor | None = None, tf32: bool = False) -> torch.Tensor:
    """activation(x · Wᵀ + b + residual) over the last axis of ``x`` (leading axes are flattened)."""
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
    out2 = out.view(m, n)
    if residual is not None:
        check(tuple(residual.shape) == shape, f"linear: residual must have shape {shape}, "
                                              f"got {tuple(residual.shape)}")
    res2 = residual.reshape(m, n) if residual is not None else out2
    grid = lambda meta: (triton.cdiv(m, meta["BLOCK_M"]), triton.cdiv(n, meta["BLOCK_N"]))  # noqa: E731
    linear_kernel[grid](
        x2, weight.weight, weight.bias if weight.bias is not None else out2, res2, out2,
        m, n, k, *x2.stride(), *weight.weight.stride(), *res2.stride(), *out2.stride(),
        float(alpha), float(beta),
        HAS_BIAS=weight.bias is not None, HAS_RESIDUAL=residual is not None, ACTIVATION=activation or "",
        INPUT_PRECISION=precision(x.dtype, tf32), UPCAST=runtime.INTERPRET and x.dtype == torch.bfloat16,
    )
    return out
