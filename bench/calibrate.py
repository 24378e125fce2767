"""This machine's yardsticks, measured once per sweep in a child process with the sweep's thread settings:

- GEMM peak: the best of torch.matmul (MKL/oneDNN) and numpy's BLAS on an N×N×N CPU product, from the fastest
  call (a peak is the best the machine does; on a shared machine a median would sink with the load, and cases,
  timed by their medians, would then show more than 100 % of it);
  where CUDA is present, also torch.matmul (cuBLAS) on the GPU, for the cases that run there. "% of peak" in
  reports is a case's achieved GFLOP/s over the peak of the device it ran on.
- Memory bandwidth: a one-thread numpy copy of a 256 MiB buffer, bytes read + written per second (fastest
  call); the slope of the roofline's memory roof.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from .stats import Policy, measure

GEMM_N = 2048
COPY_BYTES = 256 * 2**20
_POLICY = Policy(warmup_s=0.1, min_time_s=0.3, max_time_s=2.0, min_samples=5)


def gemm_numpy(n: int, dtype: str, policy: Policy = _POLICY) -> float:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    out = np.empty((n, n), dtype)
    m = measure(lambda: np.matmul(a, b, out=out), policy)
    return 2 * n**3 / m.stats.min / 1e9


def gemm_torch(n: int, dtype: str, threads: int | None, device: str = "cpu", policy: Policy = _POLICY) -> float:
    import torch

    if threads:
        torch.set_num_threads(threads)
    tdtype = getattr(torch, dtype)
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn((n, n), generator=g).to(device=device, dtype=tdtype)
    b = torch.randn((n, n), generator=g).to(device=device, dtype=tdtype)
    out = torch.empty((n, n), device=device, dtype=tdtype)

    def step() -> None:
        torch.matmul(a, b, out=out)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    with torch.inference_mode():
        m = measure(step, policy)
    return 2 * n**3 / m.stats.min / 1e9


def bandwidth(nbytes: int = COPY_BYTES, policy: Policy = _POLICY) -> float:
    src = np.ones(nbytes // 8)
    dst = np.empty_like(src)
    m = measure(lambda: np.copyto(dst, src), policy)
    return 2 * nbytes / m.stats.min / 1e9


def calibrate(dtype: str = "float32", threads: int | None = None, n: int = GEMM_N) -> dict[str, Any]:
    """GEMM peak (best source) and copy bandwidth. 16-bit dtypes use torch only (numpy has no bfloat16)."""
    gemm_dtype = dtype if dtype in ("float32", "float64", "float16", "bfloat16") else "float32"
    results: dict[str, float] = {}
    if gemm_dtype in ("float32", "float64"):
        results["numpy"] = gemm_numpy(n, gemm_dtype)
    if importlib.util.find_spec("torch") is not None:
        results["torch"] = gemm_torch(n, gemm_dtype, threads)
    if not results:  # float16 without torch: numpy's float32 GEMM is the nearest honest yardstick
        gemm_dtype = "float32"
        results["numpy"] = gemm_numpy(n, gemm_dtype)
    source = max(results, key=results.__getitem__)
    out = {"gemm_gflops": results[source], "gemm_source": source, "gemm_n": n, "gemm_dtype": gemm_dtype,
           "gemm_all": results, "bandwidth_gbs": bandwidth()}
    if "torch" in results:
        import torch

        if torch.cuda.is_available():  # GPU cases are held against the GPU's own GEMM (cuBLAS)
            out["cuda"] = {"gemm_gflops": gemm_torch(n, gemm_dtype, None, device="cuda"),
                           "device_name": torch.cuda.get_device_name()}
    return out
