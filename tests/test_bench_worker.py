"""The child's case logic, run in-process on lenet5 (the subprocess paths are in test_bench_runner.py)."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest

from convbench.backends import registry
from convbench.backends.base import Executable
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


@pytest.mark.parametrize(("backend", "dtype", "options"), [
    ("torch", "bfloat16", {}),
    ("openvino", "float32", {"precision": "bf16"}),  # the precision that ran decides, not the case's dtype
])
def test_low_precision_on_random_weights_is_reported_not_judged(tmp_path, backend, dtype, options):
    """A whole network at bfloat16 on random weights: its error is in the record, its verdict is not a fail (the
    real network judges low precision); at float32 the same planted error stays a fail (the test above)."""
    ok, why = registry.get(backend).available()
    if not ok:
        pytest.skip(why)
    if backend == "openvino" and "bf16" not in registry.get(backend).precisions():
        pytest.skip("this CPU offers OpenVINO no bf16")
    path = tmp_path / "ref.npy"
    run_reference({"model": "lenet5", "image_size": 32, "batch": 2, "path": str(path)})
    np.save(path, np.load(path) + 1.0)
    job = _job(reference=str(path))
    job["case"].update(backend=backend, backend_name=backend, dtype=dtype, options=options)
    out = run_case(job)
    c = out["correctness"]
    assert out["status"] == "ok" and c["ok"] is None and c["max_abs"] > 0.5 and c["dtype"] == "bfloat16"
    assert c["reason"].startswith("bfloat16 on random weights, reported not judged") and "max abs error" in c["reason"]


def test_a_failed_reference_is_no_verdict_not_a_pass():
    out = run_case(_job(reference_error="timeout: no result after 60 s"))
    assert out["status"] == "ok" and out["correctness"]["ok"] is None
    assert "no float64 reference: timeout" in out["correctness"]["reason"]


def test_errors_inside_the_child_become_statuses():
    job = _job()
    job["case"]["options"] = {"memory_plan": "maybe"}  # not a bool: the numpy backend refuses it at compile time
    out = run_job(job)
    assert out["status"] == "error" and "memory_plan must be bool | None" in out["message"]
    assert "\n" not in out["message"] and "Traceback" not in out["message"] and out["detail"]


def test_a_dtype_the_backend_lacks_is_unsupported_in_the_words_check_uses():
    job = _job()
    job["case"]["dtype"] = "float16"  # numpy declares float32 and float64
    out = run_job(job)
    assert out["status"] == "unsupported"
    assert out["message"] == "backend 'numpy' does not support dtype float16 (supports float32, float64)"


def test_the_record_holds_the_typed_compile_report():
    out = run_case(_job())
    report = out["compile"]["report"]
    assert set(out["compile"]) == {"compile_s", "report", "fallback_nodes"}
    assert report["backend"] == "numpy" and report["dtype"] == report["accuracy_dtype"] == "float32"
    assert report["threads"] == 1  # numpy declares `threads`, so the harness passed the case's
    assert out["compile"]["compile_s"] >= report["compile_s"] > 0  # the harness's wall time spans the template's
    assert out["correctness"]["dtype"] == "float32"


class _Strict:
    """A third-party backend whose compile takes dtype and nothing else, and makes no compile report."""

    name = "strict_test"

    def available(self):
        return True, ""

    def supports(self, node):
        return True

    def compile(self, graph, params, dtype="float32"):
        from convbench.backends.numpy_ref import BACKEND

        return Executable(graph, self.name, BACKEND.compile(graph, params, dtype=dtype).run)


def test_a_backend_gets_only_the_options_it_declares(monkeypatch):
    monkeypatch.setattr(registry, "_registered", dict(registry._registered))
    monkeypatch.setattr(registry, "_loaded", dict(registry._loaded))
    registry.register(_Strict())
    job = _job()
    job["case"].update(backend="strict_test", backend_name="strict_test")
    out = run_case(job)  # threads=1 is in the case; passing it would be a TypeError
    assert out["status"] == "ok", out.get("message")
    assert out["compile"]["report"] is None and out["correctness"]["ok"]
