"""The child's case logic, run in-process on lenet5 (the subprocess paths are in test_bench_runner.py)."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from convbench.bench.schema import Case
from convbench.bench.stats import Policy
from convbench.bench.worker import reference_output, run_case, run_job, run_reference

POLICY = asdict(Policy(warmup_s=0.0, min_time_s=0.0, max_time_s=0.05, min_samples=3))


def _job(**extra) -> dict:
    return {"kind": "case", "case": Case("lenet5", 32, "numpy", 2, "float32", 1).to_dict(), "policy": POLICY,
            **extra}


def test_case_without_a_sweep_computes_its_own_reference():
    out = run_case(_job())
    assert out["status"] == "ok" and out["correctness"]["ok"] and out["correctness"]["top1"] == 1.0
    assert out["model_info"]["macs"] == 2 * 416_520  # lenet5's published MACs, at batch 2
    assert out["memory"]["method"].startswith("VmHWM") or "getrusage" in out["memory"]["method"]


def test_reference_job_writes_the_file_the_case_reads(tmp_path):
    path = tmp_path / "ref.npy"
    assert run_reference({"model": "lenet5", "image_size": 32, "batch": 2, "path": str(path)}) == {"status": "ok"}
    ref = np.load(path)
    assert ref.dtype == np.float64 and ref.shape == (2, 10)
    np.testing.assert_array_equal(ref, reference_output("lenet5", 32, 2))
    np.save(path, ref + 1.0)  # a planted wrong reference must make the case incorrect: the file is really used
    out = run_case(_job(reference=str(path)))
    assert out["correctness"]["ok"] is False


def test_a_failed_reference_is_no_verdict_not_a_pass():
    out = run_case(_job(reference_error="timeout: no result after 60 s"))
    assert out["status"] == "ok" and out["correctness"]["ok"] is None
    assert "no float64 reference: timeout" in out["correctness"]["reason"]


def test_errors_inside_the_child_become_statuses():
    job = _job()
    job["case"]["dtype"] = "float16"  # the numpy backend refuses it at compile time
    out = run_job(job)
    assert out["status"] == "error" and "float16" in out["message"] and "\n" not in out["message"]
    assert "Traceback" not in out["message"] and out["detail"]
