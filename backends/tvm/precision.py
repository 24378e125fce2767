"""Low precision on the TVM backend: float16 through Relax's automatic mixed precision, int8 as a QDQ graph's exact
arithmetic (quant.py), and why bfloat16 is not.

``relax.transform.ToMixedPrecision(out_dtype="float32")`` (TVM 0.27: ``out_dtype`` is the accumulator's dtype)
rewrites a float32 module so that conv2d/matmul read float16 operands (inputs and weights cast with ``astype``) and
accumulate in float32; what follows them (bias, activations, pooling) stays as the pass decides. The graph is
lowered at float32 and converted here, so the executable's inputs and outputs stay float32 and the result is
judged with the float16 tolerance. On x86 without AVX512-FP16 LLVM widens every float16 load to float32
(vcvtph2ps): float16 halves the bytes moved, not the arithmetic.

Not here, with the reason (`UNSUPPORTED`; the template refuses a dtype outside ``TvmBackend.dtypes``, never
running it as float32).
"""

from __future__ import annotations

from typing import Any

# dtype -> the accumulator dtype ToMixedPrecision is given
MIXED = {"float16": "float32"}
UNSUPPORTED = {
    "bfloat16": "Relax's ToMixedPrecision casts to float16 only (TVM 0.27), and the hand-written x86 schedules "
                "have no bfloat16 dot-product (avx512_bf16) intrinsic",
}


def compute_dtype(dtype: str) -> str:
    """The dtype the graph is lowered at: float32 for a mixed-precision dtype and for int8 (a QDQ graph's codes
    and float ops: quant.py), else the dtype itself."""
    return "float32" if dtype in MIXED or dtype == "int8" else dtype


def convert(mod: Any, dtype: str) -> Any:
    """``mod`` with ``dtype``'s mixed precision applied (unchanged for float32/float64); `UnsupportedDtypeError`
    where the pass cannot convert it."""
    if dtype not in MIXED:
        return mod
    from tvm import relax

    from ..base import UnsupportedDtypeError

    try:
        return relax.transform.ToMixedPrecision(out_dtype=MIXED[dtype])(relax.transform.ConvertToDataflow()(mod))
    except Exception as e:  # TVM 0.27's pass fails on R.clip's PrimValue bounds (relu6, hardswish: "Expected
        # TensorType, but got T.int64"): such a graph has no float16 here, refused with TVM's reason
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UnsupportedDtypeError(f"tvm backend: dtype {dtype}: relax.transform.ToMixedPrecision cannot convert "
                                    f"this graph ({first})") from None


def warnings(dtype: str, device: str) -> list[str]:
    if dtype == "int8":
        from .quant import WARNING

        return [WARNING]
    if dtype == "float16" and device == "cpu":
        return ["tvm backend: float16 is mixed precision (ToMixedPrecision: fp16 conv/matmul operands, fp32 "
                "accumulation); on a CPU without AVX512-FP16 the arithmetic is float32 on widened loads"]
    return []
