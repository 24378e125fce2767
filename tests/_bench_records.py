"""Synthetic result records (the schema runner.py writes), for report and compare tests without a sweep."""

from __future__ import annotations

import numpy as np

from convbench.bench.schema import SCHEMA_VERSION, Case
from convbench.bench.stats import summarize

MACHINE_A = {"machine_id": "aaaa", "name": "alpha", "cpu": "CPU A", "cores_logical": 2, "ram_bytes": 2**34,
             "os": "Linux", "gpus": [], "cpu_flags": ["avx2"], "versions": {"numpy": "2.0"}, "git_commit": "c1",
             "git_dirty": False}
MACHINE_B = {**MACHINE_A, "machine_id": "bbbb", "name": "beta", "cpu": "CPU B", "cores_logical": 16}


def record(model: str = "lenet5", backend: str = "numpy", batch: int = 1, median: float = 1e-3,
           n: int = 40, spread: float = 0.02, machine: dict | None = None, status: str = "ok",
           correct: bool = True, image_size: int = 32, seed: int = 0) -> dict:
    case = Case(model, image_size, backend, batch, "float32", 2)
    base = {"schema": SCHEMA_VERSION, "run_id": "r", "case_id": case.id, "case": case.to_dict(), "status": status,
            "message": "" if status == "ok" else "it broke", "machine": machine or MACHINE_A,
            "calibration": {"gemm_gflops": 100.0, "gemm_source": "numpy", "bandwidth_gbs": 10.0}}
    if status != "ok":
        return base
    samples = median * (1 + spread * np.random.default_rng(seed).standard_normal(n))
    flops = 1_000_000
    return {**base,
            "timing": {**summarize(samples).to_dict(), "converged": True},
            "throughput_ips": batch / float(np.median(samples)), "gflops": flops / float(np.median(samples)) / 1e9,
            "peak_fraction": 0.01, "compile": {"compile_s": 0.1, "fallback_nodes": []},
            "model_info": {"flops": flops, "macs": flops // 2, "params": 1000, "param_bytes": 4000,
                           "activation_sum_bytes": 8000},
            "memory": {"run_rss_peak_delta_bytes": 2**20, "compile_rss_peak_delta_bytes": 2**19,
                       "static_activation_peak_bytes": 4000, "static_param_bytes": 4000, "device_peak_bytes": None},
            "correctness": {"ok": correct, "max_abs": 1e-7 if correct else 1.0, "max_rel": 1e-7 if correct else 0.5,
                            "top1": 1.0, "reason": "" if correct else "max abs error 1 > 1e-5"}}
