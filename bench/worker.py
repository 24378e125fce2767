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
(against the case's timeout) nor its memory lands on a case. A train-mode case (``case.mode == "train"``) is
bench/train_case.py's: it times whole steps and compares its first step with the float64 reference trainer.

Job kind "serve" (`serve_case`, for ``convbench run --interleave``): the same setup once, then rounds of timed
calls on request (launch.Worker / launch.serve_requests) until the parent stops it.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..backends.base import unavailable_reason
from .errors import UnsupportedCase
from .launch import THREAD_VARS, child_main, failure
from .workload import SEED, Workload, compile_options, make_workload, reference

__all__ = ["SEED", "load_factory", "main", "reference_output", "run_case", "run_job", "run_reference", "serve_case"]


def reference_output(model: str, image_size: int, batch: int, input: str = "random",
                     dtype: str = "float32", int8: str = "") -> np.ndarray:
    """The float64 NumPy reference output of a workload on the sweep's deterministic input and parameters (of its
    quantized graph for dtype int8: the same QDQ graph the case's child makes)."""
    return reference(make_workload(model, batch, image_size, input=input, dtype=dtype, int8=int8))


def model_info(w: Workload, s: Any) -> dict[str, Any]:
    """A record's model_info: the model's counts (``s``, the summary of the float graph: an int8 graph's Q/DQ
    nodes are not the model's work), the nodes the backend was given, and an int8 graph's quantization settings."""
    info = {k: v for k, v in s.to_dict(layers=False).items() if k not in ("model", "input_shape")}
    info["nodes"] = len(w.graph.nodes)
    if w.quantization is not None:
        info["quantization"] = w.quantization
    return info


def run_reference(job: dict[str, Any]) -> dict[str, Any]:
    """Compute a workload's reference once per sweep, in its own child (its time and memory are not a case's)."""
    ref = reference_output(job["model"], job["image_size"], job["batch"], job.get("input", "random"),
                           job.get("dtype", "float32"), job.get("int8", ""))
    path = Path(job["path"])
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
    np.save(tmp, ref)
    os.replace(tmp, path)
    return {"status": "ok"}


@dataclass
class Compiled:
    exe: Any
    report: Any  # the CompileReport, or None for a third-party backend without one
    info: Any  # record.CompileInfo
    baseline: int  # RSS before compiling
    peak: Any  # memory.PhasePeak of the compile
    device_peak: Any  # memory.DevicePeak of the compile


def measured_compile(backend: Any, graph: Any, params: Any, case: Any, device: str) -> Compiled:
    """``backend.compile`` as every case measures it: its wall time, its peak RSS and device memory; a backend that
    cannot run the case raises `UnsupportedCase` with its words. compile_s is that wall time, the same yardstick
    for every backend (the template's report.compile_s measures the same span from inside; a third-party backend
    may have none)."""
    from ..backends.base import BackendUnavailableError, CompileReport, UnsupportedDtypeError, UnsupportedNodeError
    from .memory import DevicePeak, PhasePeak, rss_bytes
    from .record import CompileInfo

    options = compile_options(backend, case.dtype, case.threads, case.options)
    baseline = rss_bytes()
    with PhasePeak() as compile_peak, DevicePeak(device) as compile_dev:
        t0 = time.perf_counter()
        try:
            exe = backend.compile(graph, params, **options)
        except (UnsupportedNodeError, UnsupportedDtypeError, BackendUnavailableError) as e:
            raise UnsupportedCase(" ".join(str(e).split())) from None
        wall = time.perf_counter() - t0
    report = exe.report if isinstance(exe.report, CompileReport) else None
    info = CompileInfo(wall, report.to_dict() if report else None, tuple(exe.fallback_nodes))
    return Compiled(exe, report, info, baseline, compile_peak, compile_dev)


def judged(y: np.ndarray, ref: np.ndarray, accuracy_dtype: str, input: str) -> dict[str, Any]:
    """A case's correctness record: ``y`` against the float64 reference with the tolerance of what ran, except
    that a whole network on random weights at a precision in `NOT_JUDGED_ON_RANDOM_WEIGHTS` is reported without a
    verdict (backends/correctness.py says why), its error and the reason kept."""
    from ..backends.correctness import NOT_JUDGED_ON_RANDOM_WEIGHTS, compare

    out = compare(y, ref, accuracy_dtype).to_dict()
    if accuracy_dtype in NOT_JUDGED_ON_RANDOM_WEIGHTS and input == "random" and out["ok"] is False:
        out = {**out, "ok": None, "reason": (
            f"{accuracy_dtype} on random weights, reported not judged (rounding differences grow through the "
            f"layers; --input real judges the real network): {out['reason']}")}
    return out


def run_case(job: dict[str, Any]) -> dict[str, Any]:
    from ..backends import get
    from ..backends.correctness import accuracy
    from ..ir.analysis import summarize
    from .memory import DevicePeak, PhasePeak
    from .record import Memory
    from .schema import Case
    from .stats import Policy, measure

    case = Case(**job["case"])
    out: dict[str, Any] = {"status": "ok", "message": ""}
    backend = get(case.backend_name)
    if case.mode == "train":  # whole training steps: bench/train_case.py
        from .train_case import run_train_case

        return run_train_case(job, backend, case)
    why = unavailable_reason(backend, case.dtype)
    if why:
        return {"status": "unsupported", "message": why}

    w = make_workload(case.model, case.batch, case.image_size, input=case.input, dtype=case.dtype,
                      int8=case.int8)
    s = summarize(w.float_graph or w.graph)
    out["model_info"] = model_info(w, s)
    device = backend.device() if hasattr(backend, "device") else "cpu"
    try:
        c = measured_compile(backend, w.graph, w.params, case, device)
    except UnsupportedCase as e:
        return {**out, "status": "unsupported", "message": str(e)}
    exe, report, info, baseline, compile_peak, compile_dev = c.exe, c.report, c.info, c.baseline, c.peak, c.device_peak
    out["compile"] = info.to_dict()

    policy = Policy(**job["policy"])
    timed = policy.time_interpreted or not info.interpreted
    with PhasePeak() as run_peak, DevicePeak(device) as run_dev:
        y = exe(w.input)
        m = measure(functools.partial(exe, w.input), policy) if timed else None
    y = y[0] if isinstance(y, tuple) else y

    out["device"] = device
    if m is not None:
        out["timing"] = m.to_dict()
        median = m.stats.median
        out["throughput_ips"] = case.batch / median
        out["gflops"] = s.flops / median / 1e9
    else:
        out["message"] = "checked under an interpreter with one call, not timed (--time-interpreters times it)"
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
        ref = reference(w)
    out["correctness"] = judged(np.asarray(y), ref, accuracy_dtype, case.input)
    if w.labels is not None and out["correctness"]["max_abs"] < float("inf"):  # real input, finite logits
        # accuracy against the float model's float64 output (for int8, not the quantized graph's)
        oracle = ref if w.float_graph is None else reference(w, float_model=True)
        out["accuracy"] = accuracy(np.asarray(y), oracle, w.labels).to_dict()
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
        elif job["kind"] == "serve":
            result = serve_case(job)
        else:
            result = run_case(job)
    except Exception as e:  # the case failed inside Python: record it, the sweep goes on
        result = failure(e)
    result["worker"] = {"pid": os.getpid(), "wall_s": time.perf_counter() - started,
                        "thread_env": {k: os.environ.get(k) for k in THREAD_VARS},
                        "torch_threads": _torch_threads(), "loadavg_1min": load}
    return result


def load_factory(spec: str) -> Any:
    """``"path/to/file.py:function"``: a peer engine's factory (benchmarks/cpu_peers.py), called as
    ``function(graph, params, case)`` and returning ``f(x) -> output`` (one array or a list of them)."""
    import importlib.util

    path, sep, name = spec.rpartition(":")
    if not sep or not path.endswith(".py") or not Path(path).is_file():
        raise ValueError(f"factory {spec!r}: expected an existing FILE.py:FUNCTION")
    module_spec = importlib.util.spec_from_file_location(f"_convbench_factory_{Path(path).stem}", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not callable(getattr(module, name, None)):
        raise ValueError(f"factory {spec!r}: {path} has no function {name!r}")
    return getattr(module, name)


def _serve_build(job: dict[str, Any], case: Any, w: Any, ready: dict[str, Any]) -> tuple[Any, str] | dict[str, Any]:
    """The serve job's callable and the dtype its output is judged with (``ready`` gets compile and device), or
    the unsupported result."""
    from ..backends import get
    from ..backends.base import BackendUnavailableError, CompileReport, UnsupportedDtypeError, UnsupportedNodeError
    from .errors import UnsupportedCase
    from .record import CompileInfo

    t0 = time.perf_counter()
    ready["device"] = "cpu"
    if job.get("factory"):
        try:
            fn = load_factory(job["factory"])(w.graph, w.params, case)
        except UnsupportedCase as e:  # a peer that has no build of this model
            return {"status": "unsupported", "message": str(e)}
        ready["compile"] = CompileInfo(time.perf_counter() - t0, None, ()).to_dict()
        return fn, case.dtype
    backend = get(case.backend_name)
    why = unavailable_reason(backend, case.dtype)
    if why:
        return {"status": "unsupported", "message": why}
    ready["device"] = backend.device() if hasattr(backend, "device") else "cpu"
    try:
        exe = backend.compile(w.graph, w.params, **compile_options(backend, case.dtype, case.threads, case.options))
    except (UnsupportedNodeError, UnsupportedDtypeError, BackendUnavailableError) as e:
        return {"status": "unsupported", "message": " ".join(str(e).split())}
    report = exe.report if isinstance(exe.report, CompileReport) else None
    ready["compile"] = CompileInfo(time.perf_counter() - t0, report.to_dict() if report else None,
                                   tuple(exe.fallback_nodes)).to_dict()
    return exe, report.accuracy_dtype if report is not None else case.dtype


def serve_case(job: dict[str, Any]) -> dict[str, Any]:
    """Job kind "serve" (interleave.py, through launch.Worker): set one case up once — compile (or a peer's
    ``factory``), check the first output against the float64 reference, warm up — then answer rounds:
    ``{"op": "round", "calls": k}`` → the k per-call times in seconds, the garbage collector off as in
    `stats.measure`. The setup's answer carries what a sweep's record carries except the timing (memory: the
    run phase is the first call and the warm-up)."""
    import gc

    from ..ir.analysis import summarize
    from .launch import serve_requests
    from .memory import PhasePeak, rss_bytes
    from .record import Memory
    from .schema import Case
    from .stats import Policy

    # before any setup starts processes (inductor's compile workers): they must not hold the parent's reply pipe
    os.set_inheritable(int(job["reply_fd"]), False)
    case = Case(**job["case"])
    if case.mode != "inference":
        return {"status": "unsupported", "message": f"interleaved timing runs inference cases, not mode {case.mode!r}"}
    w = make_workload(case.model, case.batch, case.image_size, input=case.input, dtype=case.dtype,
                      int8=case.int8)
    s = summarize(w.float_graph or w.graph)
    ready: dict[str, Any] = {"status": "ok", "message": "", "model_info": model_info(w, s)}
    baseline = rss_bytes()
    with PhasePeak() as compile_peak:
        built = _serve_build(job, case, w, ready)
    if isinstance(built, dict):  # unsupported here
        return built
    fn, accuracy_dtype = built
    policy = Policy(**job["policy"])
    with PhasePeak() as run_peak:
        y = fn(w.input)
        start, warm = time.perf_counter(), 0
        while warm < policy.warmup_calls or time.perf_counter() - start < policy.warmup_s:
            fn(w.input)
            warm += 1
    ready["call_s"] = (time.perf_counter() - start) / warm  # the parent sizes rounds to its time cap with it
    ready["warmup_calls"] = warm
    ready["memory"] = Memory(
        rss_baseline_bytes=baseline, compile_rss_peak_delta_bytes=compile_peak.delta_bytes,
        run_rss_peak_delta_bytes=run_peak.delta_bytes,
        rss_peak_delta_bytes=max(compile_peak.peak_bytes, run_peak.peak_bytes) - baseline, method=run_peak.method,
        static_activation_peak_bytes=s.activation_peak_bytes, static_param_bytes=s.param_bytes + s.buffer_bytes,
    ).to_dict()
    y = y[0] if isinstance(y, list | tuple) else y
    if job.get("reference_error"):
        ready["correctness"] = {"ok": None, "dtype": accuracy_dtype,
                                "reason": f"no float64 reference: {job['reference_error']}"}
    else:
        ref = np.load(job["reference"]) if job.get("reference") else reference(w)
        ready["correctness"] = judged(np.asarray(y), ref, accuracy_dtype, case.input)

    def handle(request: dict[str, Any]) -> dict[str, Any]:
        if request.get("op") != "round":
            raise ValueError(f"unknown request {request.get('op')!r} (round, stop)")
        times: list[float] = []
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            for _ in range(int(request["calls"])):
                t = time.perf_counter_ns()
                fn(w.input)
                times.append((time.perf_counter_ns() - t) / 1e9)
        finally:
            if was_enabled:
                gc.enable()
        return {"status": "ok", "samples": times}

    return {"status": "ok", "requests": serve_requests(job, ready, handle)}


def _torch_threads() -> int | None:
    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else None


def main(argv: list[str]) -> int:
    return child_main(argv, run_job)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
