"""The child process of a sweep: measures one case (or calibrates the machine, or computes a reference) and
writes one JSON result (the child's part of a `record.Record`).

    python -m convbench.bench.worker JOB.json RESULT.json     (started by launch.run_child)

Everything that can go wrong inside the case (unsupported backend, dtype or node, backend error, MemoryError) is
caught and written as the case's status; what cannot be caught (abort, segfault, hang, the OOM killer) kills this
process, and the parent records that from the exit status. Thread counts arrive through the environment the
parent set before this interpreter started, so BLAS and OpenMP pools are created with them; ``threads`` also
reaches ``compile`` where the backend declares that option.

Order inside a case: build the workload, then measure compile (RSS peak above the baseline), then run (warm-up
and timed calls; RSS peak of that phase), then compare the output with the float64 reference, which the sweep
computed once per (model, size, batch) in a child of its own (job kind "reference"), so neither its time
(against the case's timeout) nor its memory lands on a case.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..backends.base import unavailable_reason
from .launch import THREAD_VARS, child_main, failure
from .workload import SEED, compile_options, make_workload, reference

__all__ = ["SEED", "main", "reference_output", "run_case", "run_job", "run_reference"]


def reference_output(model: str, image_size: int, batch: int, input: str = "random") -> np.ndarray:
    """The float64 NumPy reference output of a workload on the sweep's deterministic input and parameters."""
    return reference(make_workload(model, batch, image_size, input=input))


def run_reference(job: dict[str, Any]) -> dict[str, Any]:
    """Compute a workload's reference once per sweep, in its own child (its time and memory are not a case's)."""
    ref = reference_output(job["model"], job["image_size"], job["batch"], job.get("input", "random"))
    path = Path(job["path"])
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
    np.save(tmp, ref)
    os.replace(tmp, path)
    return {"status": "ok"}


def run_case(job: dict[str, Any]) -> dict[str, Any]:
    from ..backends import get
    from ..backends.base import BackendUnavailableError, CompileReport, UnsupportedDtypeError, UnsupportedNodeError
    from ..backends.correctness import accuracy, compare
    from ..ir.analysis import summarize
    from .memory import DevicePeak, PhasePeak, rss_bytes
    from .record import CompileInfo, Memory
    from .schema import Case
    from .stats import Policy, measure

    case = Case(**job["case"])
    out: dict[str, Any] = {"status": "ok", "message": ""}
    backend = get(case.backend_name)
    why = unavailable_reason(backend, case.dtype)
    if why:
        return {"status": "unsupported", "message": why}

    w = make_workload(case.model, case.batch, case.image_size, input=case.input)
    s = summarize(w.graph)
    out["model_info"] = {k: v for k, v in s.to_dict(layers=False).items() if k not in ("model", "input_shape")}
    out["model_info"]["nodes"] = len(w.graph.nodes)
    device = backend.device() if hasattr(backend, "device") else "cpu"
    options = compile_options(backend, case.dtype, case.threads, case.options)

    baseline = rss_bytes()
    with PhasePeak() as compile_peak, DevicePeak(device) as compile_dev:
        t0 = time.perf_counter()
        try:
            exe = backend.compile(w.graph, w.params, **options)
        except (UnsupportedNodeError, UnsupportedDtypeError, BackendUnavailableError) as e:
            return {**out, "status": "unsupported", "message": " ".join(str(e).split())}
        compile_wall = time.perf_counter() - t0
    # compile_s is the wall time of backend.compile() as the harness saw it, the same yardstick for every backend
    # (the template's report.compile_s measures the same span from inside; a third-party backend may have none).
    report = exe.report if isinstance(exe.report, CompileReport) else None
    out["compile"] = CompileInfo(compile_wall, report.to_dict() if report else None,
                                 tuple(exe.fallback_nodes)).to_dict()

    policy = Policy(**job["policy"])
    with PhasePeak() as run_peak, DevicePeak(device) as run_dev:
        y = exe(w.input)
        m = measure(functools.partial(exe, w.input), policy)
    y = y[0] if isinstance(y, tuple) else y

    out["device"] = device
    out["timing"] = m.to_dict()
    median = m.stats.median
    out["throughput_ips"] = case.batch / median
    out["gflops"] = s.flops / median / 1e9
    peaks = [p for p in (compile_dev.peak_bytes, run_dev.peak_bytes) if p is not None]
    out["memory"] = Memory(
        rss_baseline_bytes=baseline,
        compile_rss_peak_delta_bytes=compile_peak.delta_bytes,
        run_rss_peak_delta_bytes=run_peak.delta_bytes,
        rss_peak_delta_bytes=max(compile_peak.peak_bytes, run_peak.peak_bytes) - baseline,
        method=run_peak.method,
        device_peak_bytes=max(peaks) if peaks else None,
        static_activation_peak_bytes=s.activation_peak_bytes,
        static_param_bytes=s.param_bytes + s.buffer_bytes,
    ).to_dict()
    del exe

    # judged with the dtype the backend says its arithmetic has (Triton's float32 on tensor cores is tf32)
    accuracy_dtype = report.accuracy_dtype if report is not None else case.dtype
    if job.get("reference_error"):
        out["correctness"] = {"ok": None, "dtype": accuracy_dtype,
                              "reason": f"no float64 reference: {job['reference_error']}"}
        return out
    if job.get("reference"):
        ref = np.load(job["reference"])
    else:  # run without a sweep around it: compute it here, after the measurement
        ref = reference_output(case.model, case.image_size, case.batch, case.input)
    out["correctness"] = compare(np.asarray(y), ref, accuracy_dtype).to_dict()
    if w.labels is not None and out["correctness"]["max_abs"] < float("inf"):  # real input, finite logits
        out["accuracy"] = accuracy(np.asarray(y), ref, w.labels).to_dict()
    return out


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    from . import plugins

    started = time.perf_counter()
    # Other work on the machine is part of the measurement's context: the 1-minute load average at the start.
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    try:
        plugins.load_all(plugins.from_env())
        if job["kind"] == "calibrate":
            from .calibrate import calibrate

            result = {"status": "ok", "calibration": calibrate(job["dtype"], job["threads"], job.get("gemm_n", 2048))}
        elif job["kind"] == "reference":
            result = run_reference(job)
        else:
            result = run_case(job)
    except Exception as e:  # the case failed inside Python: record it, the sweep goes on
        result = failure(e)
    result["worker"] = {"pid": os.getpid(), "wall_s": time.perf_counter() - started,
                        "thread_env": {k: os.environ.get(k) for k in THREAD_VARS},
                        "torch_threads": _torch_threads(), "loadavg_1min": load}
    return result


def _torch_threads() -> int | None:
    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else None


def main(argv: list[str]) -> int:
    return child_main(argv, run_job)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
