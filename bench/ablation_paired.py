"""Paired timing for the pass ablation: every pipeline of one backend compiled in one child process and called
in rotation (A B C, B C A, C A B …), so each cycle's ratio compares calls made moments apart.

A sweep times each case in its own process, one after another: on a shared machine the load drifts between
cases by more than the few percent a pass buys, and the ratio of two such medians measures the drift. Here the
speed-up of a pipeline is the median over cycles of ``t(none) / t(pipeline)`` within a cycle, with the
distribution-free 95 % interval of that median (order statistics), and timing stops once every interval is
within ±1 % or at the time cap;
the rotation keeps any pipeline from always running right after the same neighbour (cache state, frequency).
The child is started by the harness's launcher (launch.py: thread variables set before the interpreter starts, a
timeout that kills its process group, SIGKILL read as out-of-memory) and checks each pipeline's output against
the float64 reference first.

    python -m convbench.bench.ablation_paired JOB.json RESULT.json
"""

from __future__ import annotations

import gc
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

BASELINE = "none"


@dataclass(frozen=True)
class PairedPolicy:
    warmup_calls: int = 2  # per pipeline, before any timing
    min_cycles: int = 7
    min_time_s: float = 2.0
    max_time_s: float = 20.0
    target_ci_rel: float = 0.01  # stop once every speed-up's 95 % interval is within ±1 % of it


def measure_paired(calls: Mapping[str, Callable[[], object]], policy: PairedPolicy = PairedPolicy(),
                   clock: Callable[[], int] = time.perf_counter_ns) -> dict[str, dict[str, Any]]:
    """Per pipeline: latency statistics and the per-cycle ratio against ``BASELINE`` (which must be a key)."""
    order = list(calls)
    if BASELINE not in order:
        raise ValueError(f"paired timing needs the {BASELINE!r} pipeline as the baseline, got {order}")
    for fn in calls.values():
        for _ in range(policy.warmup_calls):
            fn()
    samples: dict[str, list[int]] = {p: [] for p in order}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start, cycles = clock(), 0
        while True:
            for p in order:
                t0 = clock()
                calls[p]()
                samples[p].append(clock() - t0)
            order = order[1:] + order[:1]
            cycles += 1
            elapsed = (clock() - start) / 1e9
            if elapsed >= policy.max_time_s and cycles >= 3:
                break
            if cycles >= policy.min_cycles and elapsed >= policy.min_time_s and all(
                    _ci_rel(_ratios(samples, p)) < policy.target_ci_rel for p in samples if p != BASELINE):
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    out = {}
    for p, s in samples.items():
        t = np.asarray(s, dtype=np.float64) / 1e9
        r = _ratios(samples, p)
        lo, hi = median_ci(r)
        out[p] = {"median_s": float(np.median(t)), "iqr_rel": _iqr_rel(t), "cycles": cycles,
                  "speedup": float(np.median(r)), "speedup_lo": lo, "speedup_hi": hi}
    return out


def median_ci(a: np.ndarray, z: float = 1.96) -> tuple[float, float]:
    """Distribution-free 95 % interval of the median: the order statistics (n ∓ z·√n)/2 (Conover)."""
    s = np.sort(np.asarray(a, dtype=np.float64))
    n = s.size
    k = int(np.floor((n - z * np.sqrt(n)) / 2))
    if k < 0:
        return float(s[0]), float(s[-1])
    return float(s[k]), float(s[min(n - 1, n - 1 - k)])


def _ci_rel(a: np.ndarray) -> float:
    lo, hi = median_ci(a)
    med = float(np.median(a))
    return (hi - lo) / 2 / med if med > 0 else float("inf")


def _ratios(samples: Mapping[str, list[int]], p: str) -> np.ndarray:
    return np.asarray(samples[BASELINE], dtype=np.float64) / np.asarray(samples[p], dtype=np.float64)


def _iqr_rel(a: np.ndarray) -> float:
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return float((q3 - q1) / med) if med > 0 else float("inf")


def run_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """In the child: build the workload, compile every pipeline, check it, time them all in rotation."""
    from ..backends import get
    from ..backends.base import CompileReport
    from ..backends.correctness import compare
    from .specs import split_backend_spec, typed_options
    from .workload import compile_options, make_workload, reference

    w = make_workload(job["model"], job["batch"], job["image_size"])
    ref = reference(w)
    name, raw = split_backend_spec(job["backend"])
    backend, options = get(name), typed_options(name, raw)
    rows, calls = {}, {}
    for pipeline in job["pipelines"]:
        row = {"model": job["model"], "image_size": job["image_size"], "batch": job["batch"],
               "backend": job["backend"], "pipeline": pipeline, "status": "ok", "message": ""}
        try:
            exe = backend.compile(w.graph, w.params, **compile_options(backend, "float32", job["threads"],
                                                                       {**options, "passes": pipeline}))
            y = exe(w.input)
            judged = exe.report.accuracy_dtype if isinstance(exe.report, CompileReport) else "float32"
            agreement = compare(np.asarray(y[0] if isinstance(y, tuple) else y), ref, judged)
            row.update(correct=agreement.ok, max_rel=agreement.max_rel)
            calls[pipeline] = (lambda e: lambda: e(w.input))(exe)
        except Exception as e:  # recorded per pipeline; the others are still timed
            row.update(status="error", message=f"{type(e).__name__}: {' '.join(str(e).split())[:300]}")
        rows[pipeline] = row
    if BASELINE in calls:
        for pipeline, stats in measure_paired(calls, PairedPolicy(**job["policy"])).items():
            rows[pipeline].update(stats)
    return {"status": "ok", "rows": list(rows.values())}


def run_paired(model: str, image_size: int, batch: int, backend: str, pipelines: Sequence[str], threads: int,
               policy: PairedPolicy, timeout_s: float = 900.0) -> list[dict[str, Any]]:
    """In the parent: one child process for one model × backend; every way it can fail becomes a row status
    (a backend that cannot run here is ``unsupported`` with its reason, without a child)."""
    from ..backends import get
    from ..backends.base import unavailable_reason
    from .launch import child_env, run_child
    from .specs import split_backend_spec

    why = unavailable_reason(get(split_backend_spec(backend)[0]), "float32")
    if why:
        status, message = "unsupported", why
    else:
        job = {"model": model, "image_size": image_size, "batch": batch, "backend": backend,
               "pipelines": list(pipelines), "policy": asdict(policy), "threads": threads}
        with tempfile.TemporaryDirectory(prefix="convbench-paired-") as tmp:
            child = run_child("convbench.bench.ablation_paired", job, child_env(threads), timeout_s, Path(tmp))
        if child.status == "ok":
            return child.result["rows"]
        status, message = child.status, child.result.get("message", "")
    return [{"model": model, "image_size": image_size, "batch": batch, "backend": backend, "pipeline": p,
             "status": status, "message": message} for p in pipelines]


ROW_TYPES: dict[str, Any] = {
    "model": str, "image_size": int, "batch": int, "backend": str, "pipeline": str, "status": str, "message": str,
    "threads": int | None, "machine": str | None, "correct": bool | None, "cycles": int | None,
    **dict.fromkeys(("max_rel", "median_s", "iqr_rel", "speedup", "speedup_lo", "speedup_hi"), float | None),
}
REQUIRED = ("model", "image_size", "batch", "backend", "pipeline", "status")


def read_paired(path: Path) -> list[dict[str, Any]]:
    """The rows of a paired.jsonl (``convbench passes --resume``), every line and field checked before any is
    used; `SchemaError` names the file, line and field."""
    from ..ir.serialize import json_object, show_value, typed
    from .schema import STATUSES, SchemaError

    try:
        lines = path.read_bytes().split(b"\n")
    except OSError as e:
        raise SchemaError(f"{path}: cannot read ({e.strerror or e})") from None
    rows = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        where = f"{path}:{number}"
        row = json_object(raw, where, SchemaError)
        if type(row) is not dict or any(k not in row for k in REQUIRED):
            raise SchemaError(f"{where}: not a paired-timing row (needs {', '.join(REQUIRED)})")
        for key, hint in ROW_TYPES.items():
            if key in row:
                try:
                    typed(row[key], hint)
                except TypeError as e:
                    raise SchemaError(f"{where}: field {key!r} {e}") from None
        if row["status"] not in STATUSES:
            raise SchemaError(f"{where}: unknown status {show_value(row['status'])}")
        rows.append(row)
    return rows


def main(argv: list[str]) -> int:
    from .launch import child_main

    return child_main(argv, run_job)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
