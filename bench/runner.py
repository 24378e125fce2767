"""The sweep: plan cases, run each in its own child process with a timeout, append one JSONL line per case.

Isolation (asv's rule): a crash, hang or out-of-memory kill in one backend ends only that child; the parent
records it as the case's status and goes on (launch.py: a new process session, so a timeout kills the child's
whole group, torch.compile's worker processes included; it dies with the parent if the parent is SIGKILLed).
A backend that cannot run a case's dtype here is recorded as unsupported without a child. Results are
appended as each case finishes; ``resume`` skips the cases already in the file, so an interrupted sweep loses
at most the case in flight and never duplicates one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import os
import tempfile
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..backends.base import unavailable_reason
from . import machine, plugins
from .errors import BenchError
from .launch import ChildResult, child_env, one_line, run_child
from .output import check_target, locked, prepare_output, replace_with_empty
from .record import Record
from .schema import SCHEMA_VERSION, Case, append_record, read_records
from .specs import BackendSpec, image_sizes_for, parse_backend
from .stats import Policy
from .train_case import train_unsupported
from .workload import check_real_input

WORKER = "convbench.bench.worker"
MAX_TIMEOUT_S = 7 * 24 * 3600.0  # a week per case: beyond it a timeout is a typo
MAX_GEMM_N = 16384  # three 16384² float64 matrices are 6 GiB
Event = Callable[[str, Case | None, dict[str, Any] | None], None]
__all__ = ["ChildResult", "Machine", "Sweep", "default_threads", "image_sizes_for", "make_record", "plan",
           "prepare_output", "run_sweep"]


def default_threads() -> int:
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def plan(models: Sequence[str], backends: Sequence[str | BackendSpec], batches: Sequence[int],
         dtypes: Sequence[str], image_sizes: Sequence[str] = ("full",), threads: int | None = None,
         input: str = "random", mode: str = "inference", int8: str = "") -> list[Case]:
    """Every (model, size, backend, batch, dtype), duplicates removed, in a stable order. Backend specs are
    parsed (`specs.parse_backend`: unknown names and bad options fail here, before anything runs); with
    ``input="real"`` a model without pretrained weights, or a batch beyond the photographs, fails here too.
    ``int8``: the quantization spec of the int8 cases (`models.calibration.int8_spec`; a bad one fails here)."""
    from ..models.calibration import int8_spec, parse_int8

    int8 = int8_spec(parse_int8(int8))
    threads = threads or default_threads()
    specs = [b if isinstance(b, BackendSpec) else parse_backend(b) for b in backends]
    if any(b < 1 for b in batches):
        raise BenchError(f"batch sizes must be ≥ 1, got {list(batches)}")
    cases: dict[str, Case] = {}
    for model in models:
        for size in image_sizes_for(model, image_sizes):
            for spec in specs:
                for batch in batches:
                    for dtype in dtypes:
                        if input == "real":
                            check_real_input(model, batch)
                        case = Case(model, size, spec.label, batch, dtype, threads, spec.name, dict(spec.options),
                                    input, mode, int8 if dtype == "int8" else "")
                        cases.setdefault(case.id, case)
    return list(cases.values())


@dataclass
class Sweep:
    cases: list[Case]
    output: Path
    policy: Policy = field(default_factory=Policy)
    timeout_s: float = 600.0
    resume: bool = False
    overwrite: bool = False
    backend_modules: tuple[str, ...] = ()
    machine_name: str | None = None
    gemm_n: int = 2048  # GEMM calibration size; 0 skips calibration (no "% of peak", no roofline roofs)
    skip_dominated: bool = True  # do not run what a timeout already answered (see TimeoutLedger)

    def __post_init__(self) -> None:
        # a NaN timeout would turn the watchdog off: a hang would then hang the sweep
        if not (type(self.timeout_s) in (int, float) and 0 < self.timeout_s <= MAX_TIMEOUT_S):
            raise BenchError(f"timeout must be a number of seconds in (0, {MAX_TIMEOUT_S:g}], got {self.timeout_s}")
        if type(self.gemm_n) is not int or not 0 <= self.gemm_n <= MAX_GEMM_N:
            raise BenchError(f"gemm_n must be an integer in [0, {MAX_GEMM_N}], got {self.gemm_n}")


def calibrations(keys: Iterable[tuple[str, int]], sweep: Sweep, workdir: Path,
                 on_event: Event) -> dict[tuple[str, int], dict[str, Any]]:
    """GEMM peak and bandwidth, once per (dtype, threads) in the sweep, each in a child like the cases."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for dtype, threads in keys:
        if sweep.gemm_n == 0:
            out[(dtype, threads)] = {"skipped": "calibration turned off"}
            continue
        on_event("calibrate", None, {"dtype": dtype, "threads": threads})
        child = run_child(WORKER, {"kind": "calibrate", "dtype": dtype, "threads": threads, "gemm_n": sweep.gemm_n},
                          child_env(threads, sweep.backend_modules), min(sweep.timeout_s, 300), workdir)
        if child.status == "ok":
            out[(dtype, threads)] = child.result["calibration"]
        else:
            out[(dtype, threads)] = {"error": child.result.get("message", child.status)}
    return out


class References:
    """The float64 reference output of each (model, size, batch, input), computed once per sweep in a child
    process with the sweep's timeout, before the first case that needs it; a failure is passed on to the cases.
    int8 cases have their own: the quantized graph's exact arithmetic (workload.make_workload quantizes the same
    way in every process)."""

    def __init__(self, sweep: Sweep, workdir: Path):
        self.sweep, self.dir = sweep, workdir / "ref"
        self.dir.mkdir()
        self.done: dict[tuple[str, int, int, str, str], tuple[str | None, str | None]] = {}
        self.int8: dict[str, str] = {}  # quantization spec -> its reference files' tag

    def get(self, case: Case, on_event: Event) -> tuple[str | None, str | None]:
        # every float dtype is judged against one reference, each int8 quantization against its own
        graph = self.int8.setdefault(case.int8, f"int8-{len(self.int8)}") if case.dtype == "int8" else "float"
        key = (case.model, case.image_size, case.batch, case.input, graph)
        if key not in self.done:
            on_event("reference", case, None)
            path = self.dir / f"{case.model}@{case.image_size}-b{case.batch}-{case.input}-{graph}.npy"
            job = {"kind": "reference", "model": case.model, "image_size": case.image_size, "batch": case.batch,
                   "input": case.input, "path": str(path), "dtype": "int8" if case.dtype == "int8" else "float32",
                   "int8": case.int8}
            child = run_child(WORKER, job, child_env(case.threads, ()), self.sweep.timeout_s, self.dir)
            ok = child.status == "ok" and path.exists()
            self.done[key] = (str(path), None) if ok else (None, f"{child.status}: {child.result.get('message')}")
        return self.done[key]


class TimeoutLedger:
    """The cheapest workload (FLOPs per call) on which each (backend, dtype, threads) timed out.

    A case with at least as many FLOPs per call on the same backend would time out too, so the sweep records it
    as a timeout without spending the timeout again (a Triton interpreter on CPU meeting VGG-16 at 224 does
    not need to be watched for ten minutes per batch size). The record says it was not run, and why.
    """

    def __init__(self) -> None:
        self.cheapest: dict[tuple[str, str, int, str], tuple[int, str]] = {}  # (backend, dtype, threads, mode)

    @staticmethod
    def flops(case: Case) -> int:
        return _flops(case.model, case.batch, case.image_size)

    def add(self, case: Case) -> None:
        key, f = (case.backend, case.dtype, case.threads, case.mode), self.flops(case)
        if key not in self.cheapest or f < self.cheapest[key][0]:
            self.cheapest[key] = (f, case.id)

    def dominated(self, case: Case) -> ChildResult | None:
        known = self.cheapest.get((case.backend, case.dtype, case.threads, case.mode))
        if known is None or self.flops(case) < known[0]:
            return None
        return ChildResult("timeout", {"message": (
            f"not run: {case.backend} already timed out on {known[1]} ({known[0] / 1e9:.3g} GFLOP per call, "
            f"this case {self.flops(case) / 1e9:.3g}); --no-skip-dominated runs it anyway"), "skipped": True}, 0.0)


@functools.cache
def _flops(model: str, batch: int, image_size: int) -> int:
    from .. import models
    from ..ir.analysis import summarize

    return summarize(models.build(model, batch=batch, image_size=image_size)).flops


class Verdicts:
    """Whether a case's backend can run its dtype (and, in train mode, train) here, asked once per (backend,
    dtype, mode) in the parent: a sweep over 'all' spends no child and no reference on a backend that is not
    available (the record says why, with the same words ``check`` uses), and a backend that does not even load
    is an error of its cases."""

    def __init__(self) -> None:
        self.done: dict[tuple[str, str, str], ChildResult | None] = {}

    def get(self, case: Case) -> ChildResult | None:
        from ..backends import get

        key = (case.backend_name, case.dtype, case.mode)
        if key not in self.done:
            try:
                backend = get(case.backend_name)
                why = (train_unsupported(backend, case.dtype) if case.mode == "train"  # e.g. a train-step op gap
                       else unavailable_reason(backend, case.dtype))
                self.done[key] = None if why is None else ChildResult("unsupported", {"message": why}, 0.0)
            except Exception as e:  # a third-party backend that fails to import: its cases say so, the rest run
                self.done[key] = ChildResult("error", {"message": f"backend {case.backend_name!r} failed to load: "
                                                                  f"{one_line(e)}"}, 0.0)
        return self.done[key]


def run_sweep(sweep: Sweep, on_event: Event = lambda *_: None) -> dict[str, int]:
    """Run every case not already in the output; return how many cases ended with each status. The output is
    checked, then locked for the whole sweep (output.py: a second sweep on it fails at once)."""
    check_target(sweep.output)
    with locked(sweep.output):
        return _run(sweep, prepare_output(sweep.output, sweep.resume, sweep.overwrite), on_event)


def todo_cases(sweep: Sweep, done: set[str], on_event: Event) -> list[Case]:
    """The cases a sweep still has to run (every sweep starts here: local, interleaved): plugins loaded, the plan
    announced, an overwritten output emptied only now that there is something to write."""
    plugins.load_all(list(sweep.backend_modules))
    todo = [c for c in sweep.cases if c.id not in done]
    on_event("plan", None, {"total": len(sweep.cases), "todo": len(todo), "done": len(sweep.cases) - len(todo)})
    if sweep.overwrite and sweep.output.exists() and todo:
        replace_with_empty(sweep.output)
    return todo


def write_result(output: Path, case: Case, line: dict[str, Any], counts: dict[str, int], on_event: Event) -> None:
    """Append one finished case's record (one write: a killed sweep leaves valid JSONL) and count its status."""
    append_record(output, line)
    counts[line["status"]] = counts.get(line["status"], 0) + 1
    on_event("done", case, line)


def _run(sweep: Sweep, done: set[str], on_event: Event) -> dict[str, int]:
    todo = todo_cases(sweep, done, on_event)
    if not todo:
        return {}
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="convbench-sweep-") as tmp:
        here = Machine(sweep, Path(tmp), machine.fingerprint(sweep.machine_name), new_run_id())
        if sweep.skip_dominated and done:  # a resumed sweep remembers what already timed out
            here.remember(read_records(sweep.output))
        here.calibrate(dict.fromkeys((c.dtype, c.threads) for c in todo), on_event)
        for case in todo:
            write_result(sweep.output, case, here.run(case, on_event).to_dict(), counts, on_event)
    return counts


def new_run_id() -> str:
    return f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def now() -> str:
    # milliseconds: a record's start and duration show whether two cases on one machine overlapped
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


class Machine:
    """What a sweep keeps per machine, and the one way a case runs on it: the verdicts, the timeout ledger, the
    float64 references, the GEMM calibrations and the fingerprint. The local sweep holds one; on a cluster each
    node's agent holds one (cluster.py), so a case is measured the same way wherever it runs."""

    def __init__(self, sweep: Sweep, workdir: Path, fingerprint: dict[str, Any], run_id: str):
        plugins.load_all(list(sweep.backend_modules))
        self.sweep, self.workdir, self.fingerprint, self.run_id = sweep, workdir, fingerprint, run_id
        self.verdicts, self.ledger = Verdicts(), TimeoutLedger()
        self.references = References(sweep, workdir)
        self.calib: dict[tuple[str, int], dict[str, Any]] = {}
        self.recalibrated: set[tuple[str, int]] = set()

    def remember(self, records: Iterable[dict[str, Any]]) -> None:
        """The timeouts of earlier runs (a resumed sweep) answer the same backend's bigger cases."""
        for r in records:
            if r["status"] == "timeout":
                self.ledger.add(Case(**{k: r["case"][k] for k in ("model", "image_size", "backend", "batch", "dtype",
                                                                   "threads", "input", "mode") if k in r["case"]}))

    def calibrate(self, keys: Iterable[tuple[str, int]], on_event: Event = lambda *_: None) -> None:
        missing = [k for k in keys if k not in self.calib]
        self.calib.update(calibrations(missing, self.sweep, self.workdir, on_event))

    def run(self, case: Case, on_event: Event = lambda *_: None) -> Record:
        """Measure one case in its own child (or answer it without one) and return its record."""
        sweep = self.sweep
        self.calibrate([(case.dtype, case.threads)], on_event)
        child = self.verdicts.get(case) or (self.ledger.dominated(case) if sweep.skip_dominated else None)
        # a train case compares with the float64 reference trainer itself (bench/train_case.py), after its timing
        needs_ref = child is None and case.mode == "inference"
        ref_path, ref_error = self.references.get(case, on_event) if needs_ref else (None, None)
        on_event("start", case, None)
        started = now()
        if child is None:
            job = {"kind": "case", "case": case.to_dict(), "policy": asdict(sweep.policy),
                   "reference": ref_path, "reference_error": ref_error}
            child = run_child(WORKER, job, child_env(case.threads, sweep.backend_modules), sweep.timeout_s,
                              self.workdir)
            if child.status == "timeout":
                self.ledger.add(case)
        key = (case.dtype, case.threads)
        record = make_record(case, child, self.calib[key], self.fingerprint, self.run_id, started)
        if (record.peak_fraction or 0) > 1 and key not in self.recalibrated:
            # Faster than the calibrated peak: the calibration was taken while the machine was busier than now.
            # Calibrate again and keep the better peak, for this case and the rest of the sweep; a case still
            # above it keeps its figure, which reports flag instead of showing a share over 100 %.
            self.recalibrated.add(key)
            self.calib[key] = best_calibration(self.calib[key], *calibrations([key], sweep, self.workdir,
                                                                              on_event).values())
            record = make_record(case, child, self.calib[key], self.fingerprint, self.run_id, started)
        return record


def best_calibration(*runs: dict[str, Any]) -> dict[str, Any]:
    """Of several calibrations of one (dtype, threads), the one with the highest GEMM peak (a peak is the best the
    machine does: a lower one was disturbed), counting the runs."""
    measured = [r for r in runs if r.get("gemm_gflops")]
    best = max(measured, key=lambda r: r["gemm_gflops"]) if measured else runs[0]
    return {**best, "runs": sum(r.get("runs", 1) for r in runs)}


def make_record(case: Case, child: ChildResult, calibration: dict[str, Any], fingerprint: dict[str, Any],
                run_id: str, started: str) -> Record:
    """The case's record: the sweep's context, then what the child wrote (an unknown field is an error)."""
    result = dict(child.result)
    result.pop("status", None)
    record = Record.from_dict({
        "schema": SCHEMA_VERSION, "run_id": run_id, "case_id": case.id, "case": case.to_dict(),
        "status": child.status, "message": result.pop("message", ""), "started": started,
        "duration_s": child.wall_s, **result, "calibration": calibration, "machine": fingerprint,
    }, strict=True)
    on_gpu = str(record.device or "cpu").startswith("cuda") and "cuda" in calibration
    gemm = calibration["cuda"]["gemm_gflops"] if on_gpu else calibration.get("gemm_gflops")
    interpreted = record.compile is not None and record.compile.interpreted  # its rate is the interpreter's
    peak = record.gflops / gemm if gemm and record.gflops and not interpreted else None
    return dataclasses.replace(record, peak_fraction=peak)
