"""The child process of a sweep: measures one case (or calibrates the machine) and writes one JSON result.

    python -m convbench.bench.worker JOB.json RESULT.json

Everything that can go wrong inside the case (unsupported node, backend error, MemoryError) is caught and
written as the case's status; what cannot be caught (abort, segfault, hang, the OOM killer) kills this process,
and the parent records that from the exit status. Thread counts arrive through the environment the parent set
before this interpreter started, so BLAS and OpenMP pools are created with them.

Order inside a case: build the graph and parameters, then measure compile (RSS peak above the baseline),
then run (warm-up and timed calls; RSS peak of that phase), then compare the output with the float64
reference, which the sweep computed once per (model, size, batch) in a child of its own (job kind
"reference"), so neither its time (against the case's timeout) nor its memory lands on a case.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

SEED = 0


def _die_with_parent(parent_pid: int) -> None:
    """If the sweep is SIGKILLed, its current child must not run on (Linux: PR_SET_PDEATHSIG)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(3)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _is_oom(e: BaseException) -> bool:
    # torch.OutOfMemoryError (CUDA) is a RuntimeError, not a MemoryError.
    return isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError"


def make_input(shape: tuple[int, ...], seed: int = SEED) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def reference_output(model: str, image_size: int, batch: int) -> np.ndarray:
    """The float64 NumPy reference output of a workload on the sweep's deterministic input and parameters."""
    from .. import models
    from ..backends import get

    graph = models.build(model, batch=batch, image_size=image_size)
    params = models.init_params(graph, seed=SEED)
    x = make_input(graph.inputs[next(iter(graph.inputs))].shape)
    return np.asarray(get("numpy").compile(graph, params, dtype="float64")(x))


def run_reference(job: dict[str, Any]) -> dict[str, Any]:
    """Compute a workload's reference once per sweep, in its own child (its time and memory are not a case's)."""
    ref = reference_output(job["model"], job["image_size"], job["batch"])
    path = Path(job["path"])
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
    np.save(tmp, ref)
    os.replace(tmp, path)
    return {"status": "ok"}


def run_case(job: dict[str, Any]) -> dict[str, Any]:
    from .. import models
    from ..backends import BackendUnavailableError, UnsupportedNodeError, get
    from ..backends.correctness import compare
    from ..ir.analysis import summarize
    from .memory import DevicePeak, PhasePeak, rss_bytes
    from .stats import Policy, measure

    case = job["case"]
    out: dict[str, Any] = {"status": "ok", "message": ""}
    backend = get(case["backend_name"])
    ok, reason = backend.available()
    if not ok:
        return {"status": "unsupported", "message": f"backend {case['backend_name']!r} not available: {reason}"}

    graph = models.build(case["model"], batch=case["batch"], image_size=case["image_size"])
    s = summarize(graph)
    out["model_info"] = {k: v for k, v in s.to_dict(layers=False).items() if k not in ("model", "input_shape")}
    out["model_info"]["nodes"] = len(graph.nodes)
    params = models.init_params(graph, seed=SEED)
    x = make_input(graph.inputs[next(iter(graph.inputs))].shape)
    device = backend.device() if hasattr(backend, "device") else "cpu"
    options = {"dtype": case["dtype"], "threads": case["threads"], **case["options"]}

    baseline = rss_bytes()
    with PhasePeak() as compile_peak, DevicePeak(device) as compile_dev:
        t0 = time.perf_counter()
        try:
            exe = backend.compile(graph, params, **options)
        except (UnsupportedNodeError, BackendUnavailableError) as e:
            return {**out, "status": "unsupported", "message": _one_line(e)}
        compile_wall = time.perf_counter() - t0
    # compile_s is the wall time of backend.compile() as the harness saw it, the same yardstick for every backend
    # (a backend's own info["compile_s"] may count only part of it, e.g. torch.compile and not the lowering).
    out["compile"] = {"compile_s": compile_wall, "info": _jsonable(exe.info),
                      "fallback_nodes": list(exe.fallback_nodes)}

    policy = Policy(**job["policy"])
    with PhasePeak() as run_peak, DevicePeak(device) as run_dev:
        y = exe(x)
        m = measure(functools.partial(exe, x), policy)
    y = y[0] if isinstance(y, tuple) else y

    out["device"] = device
    out["timing"] = m.to_dict()
    median = m.stats.median
    out["throughput_ips"] = case["batch"] / median
    out["gflops"] = s.flops / median / 1e9
    peaks = [p for p in (compile_dev.peak_bytes, run_dev.peak_bytes) if p is not None]
    out["memory"] = {
        "rss_baseline_bytes": baseline,
        "compile_rss_peak_delta_bytes": compile_peak.delta_bytes,
        "run_rss_peak_delta_bytes": run_peak.delta_bytes,
        "rss_peak_delta_bytes": max(compile_peak.peak_bytes, run_peak.peak_bytes) - baseline,
        "method": run_peak.method,
        "device_peak_bytes": max(peaks) if peaks else None,
        "static_activation_peak_bytes": s.activation_peak_bytes,
        "static_param_bytes": s.param_bytes + s.buffer_bytes,
    }
    del exe

    accuracy_dtype = out["compile"]["info"].get("accuracy_dtype") or out["compile"]["info"].get("dtype")
    if job.get("reference_error"):
        out["correctness"] = {"ok": None, "dtype": accuracy_dtype or case["dtype"],
                              "reason": f"no float64 reference: {job['reference_error']}"}
        return out
    if job.get("reference"):
        ref = np.load(job["reference"])
    else:  # run without a sweep around it: compute it here, after the measurement
        ref = reference_output(case["model"], case["image_size"], case["batch"])
    out["correctness"] = compare(np.asarray(y), ref, accuracy_dtype or case["dtype"]).to_dict()
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
        status = "oom" if _is_oom(e) else "error"
        result = {"status": status, "message": _one_line(e),
                  "detail": "".join(traceback.format_exception(e)[-12:])}
    result["worker"] = {"pid": os.getpid(), "wall_s": time.perf_counter() - started,
                        "thread_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                                      "MKL_NUM_THREADS", "TVM_NUM_THREADS")},
                        "torch_threads": _torch_threads(), "loadavg_1min": load}
    return result


def _torch_threads() -> int | None:
    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else None


def main(argv: list[str]) -> int:
    job_path, result_path = Path(argv[0]), Path(argv[1])
    job = json.loads(job_path.read_text())
    _die_with_parent(job["parent_pid"])
    result = run_job(job)
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(_jsonable(result), default=str))
    os.replace(tmp, result_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
