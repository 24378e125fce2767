"""The sweep: plan cases, run each in its own child process with a timeout, append one JSONL line per case.

Isolation (asv's rule): a crash, hang or out-of-memory kill in one backend ends only that child; the parent
records it as the case's status and goes on. The child starts a new process session, so a timeout kills its
whole group (torch.compile's worker processes included), and it dies with the parent if the parent is
SIGKILLed (see worker.py). Results are appended as each case finishes; ``resume`` skips the cases already in
the file, so an interrupted sweep loses at most the case in flight and never duplicates one.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import machine, plugins
from .errors import BenchError
from .schema import SCHEMA_VERSION, Case, append_record, read_records, repair
from .stats import Policy

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TVM_NUM_THREADS")
Event = Callable[[str, Case | None, dict[str, Any] | None], None]


def default_threads() -> int:
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def image_sizes_for(model: str, sizes: Sequence[str]) -> list[int]:
    """Resolve "full" (the architecture's own size), "small" (the reduced one) or integers for one model."""
    from .. import models

    spec = models.spec(model)
    out: list[int] = []
    for s in sizes:
        size = {"full": spec.image_size, "small": spec.small_image_size}.get(s)
        if size is None:
            try:
                size = int(s)
            except ValueError:
                raise BenchError(f"image size must be an integer, 'small' or 'full', got {s!r}") from None
            if size < spec.min_image_size:
                raise BenchError(f"{model}: image size {size} is below its minimum {spec.min_image_size}")
        if size not in out:
            out.append(size)
    return out


def plan(models: Sequence[str], backends: Sequence[str], batches: Sequence[int], dtypes: Sequence[str],
         image_sizes: Sequence[str] = ("full",), threads: int | None = None) -> list[Case]:
    """Every (model, size, backend, batch, dtype), duplicates removed, in a stable order."""
    from ..backends import get

    threads = threads or default_threads()
    for spec in backends:
        get(Case("x", 1, spec, 1, "float32", 1).backend_name)  # unknown names fail here, listing the known ones
    if any(b < 1 for b in batches):
        raise BenchError(f"batch sizes must be ≥ 1, got {list(batches)}")
    cases: dict[str, Case] = {}
    for model in models:
        for size in image_sizes_for(model, image_sizes):
            for backend in backends:
                for batch in batches:
                    for dtype in dtypes:
                        case = Case(model, size, backend, batch, dtype, threads)
                        cases.setdefault(case.id, case)
    return list(cases.values())


def prepare_output(path: Path, resume: bool, overwrite: bool) -> set[str]:
    """Check the output can be written before anything runs; return the ids of cases already done."""
    if path.is_dir():
        raise BenchError(f"output {path} is a directory; give a file name such as {path / 'results.jsonl'}")
    existing = next(p for p in (path.parent, *path.parent.parents) if p.exists())
    if not existing.is_dir():
        raise BenchError(f"cannot write to {path}: {existing} is not a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as e:
        raise BenchError(f"cannot write to {path.parent}: {e.strerror or e}") from None
    if path.exists() and not os.access(path, os.W_OK):
        raise BenchError(f"output {path} is not writable")
    if not path.exists() or overwrite:
        return set()
    if not resume:
        raise BenchError(f"output {path} already exists; pass --resume to complete it or --overwrite to replace it")
    repair(path)
    return {r["case_id"] for r in read_records(path)}


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


@dataclass
class ChildResult:
    status: str
    result: dict[str, Any]
    wall_s: float


def child_env(threads: int, backend_modules: Sequence[str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update({v: str(threads) for v in THREAD_VARS})
    if backend_modules:
        env[plugins.ENV_VAR] = plugins.to_env(list(backend_modules))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def run_child(job: dict[str, Any], env: dict[str, str], timeout_s: float, workdir: Path) -> ChildResult:
    """Run one job in a fresh interpreter; map every way it can end to a status."""
    tag = uuid.uuid4().hex[:8]
    job_path, result_path, log_path = (workdir / f"{tag}.{s}" for s in ("job.json", "result.json", "log"))
    job_path.write_text(json.dumps({**job, "parent_pid": os.getpid()}))
    start = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "convbench.bench.worker", str(job_path), str(result_path)],
                                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            proc.wait(timeout=timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            timed_out = True
        except BaseException:  # Ctrl-C or SIGTERM of the sweep: take the child down with us
            _kill_group(proc)
            raise
    wall = time.perf_counter() - start
    tail = _tail(log_path)
    if timed_out:
        return ChildResult("timeout", {"message": f"no result after {timeout_s:g} s; the process group was killed",
                                       "detail": tail}, wall)
    if result_path.exists():
        result = json.loads(result_path.read_text())
        return ChildResult(result.get("status", "error"), result, wall)
    code = proc.returncode
    if code < 0:
        sig = signal.Signals(-code).name
        if -code == signal.SIGKILL:
            message = ("killed by SIGKILL, not by the harness: most likely the kernel's out-of-memory killer"
                       + (f"; last output: {_last_line(tail)}" if tail else ""))
            return ChildResult("oom", {"message": message, "detail": tail}, wall)
        message = f"crashed with {sig}" + (f"; last output: {_last_line(tail)}" if tail else "")
    else:
        message = f"exited with status {code} without a result" + (f": {_last_line(tail)}" if tail else "")
    return ChildResult("error", {"message": message, "detail": tail}, wall)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1][:300] if text.strip() else ""


def calibrations(keys: Iterable[tuple[str, int]], sweep: Sweep, workdir: Path,
                 on_event: Event) -> dict[tuple[str, int], dict[str, Any]]:
    """GEMM peak and bandwidth, once per (dtype, threads) in the sweep, each in a child like the cases."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for dtype, threads in keys:
        if sweep.gemm_n == 0:
            out[(dtype, threads)] = {"skipped": "calibration turned off"}
            continue
        on_event("calibrate", None, {"dtype": dtype, "threads": threads})
        child = run_child({"kind": "calibrate", "dtype": dtype, "threads": threads, "gemm_n": sweep.gemm_n},
                          child_env(threads, sweep.backend_modules), min(sweep.timeout_s, 300), workdir)
        if child.status == "ok":
            out[(dtype, threads)] = child.result["calibration"]
        else:
            out[(dtype, threads)] = {"error": child.result.get("message", child.status)}
    return out


class References:
    """The float64 reference output of each (model, size, batch), computed once per sweep in a child process
    with the sweep's timeout, before the first case that needs it; a failure is passed on to the cases."""

    def __init__(self, sweep: Sweep, workdir: Path):
        self.sweep, self.dir = sweep, workdir / "ref"
        self.dir.mkdir()
        self.done: dict[tuple[str, int, int], tuple[str | None, str | None]] = {}

    def get(self, case: Case, on_event: Event) -> tuple[str | None, str | None]:
        key = (case.model, case.image_size, case.batch)
        if key not in self.done:
            on_event("reference", case, None)
            path = self.dir / f"{case.model}@{case.image_size}-b{case.batch}.npy"
            job = {"kind": "reference", "model": case.model, "image_size": case.image_size, "batch": case.batch,
                   "path": str(path)}
            child = run_child(job, child_env(case.threads, ()), self.sweep.timeout_s, self.dir)
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
        self.cheapest: dict[tuple[str, str, int], tuple[int, str]] = {}

    @staticmethod
    def flops(case: Case) -> int:
        return _flops(case.model, case.batch, case.image_size)

    def add(self, case: Case) -> None:
        key, f = (case.backend, case.dtype, case.threads), self.flops(case)
        if key not in self.cheapest or f < self.cheapest[key][0]:
            self.cheapest[key] = (f, case.id)

    def dominated(self, case: Case) -> ChildResult | None:
        known = self.cheapest.get((case.backend, case.dtype, case.threads))
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


def run_sweep(sweep: Sweep, on_event: Event = lambda *_: None) -> dict[str, int]:
    """Run every case not already in the output; return how many cases ended with each status."""
    done = prepare_output(sweep.output, sweep.resume, sweep.overwrite)
    plugins.load_all(list(sweep.backend_modules))
    todo = [c for c in sweep.cases if c.id not in done]
    ledger = TimeoutLedger()
    if sweep.skip_dominated and done:  # a resumed sweep remembers what already timed out
        for r in read_records(sweep.output):
            if r["status"] == "timeout":
                ledger.add(Case(**{k: r["case"][k] for k in ("model", "image_size", "backend", "batch", "dtype",
                                                              "threads")}))
    on_event("plan", None, {"total": len(sweep.cases), "todo": len(todo), "done": len(sweep.cases) - len(todo)})
    if sweep.overwrite and sweep.output.exists() and todo:
        sweep.output.unlink()
    if not todo:
        return {}
    fingerprint = machine.fingerprint(sweep.machine_name)
    run_id = f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="convbench-sweep-") as tmp:
        workdir = Path(tmp)
        references = References(sweep, workdir)
        calib = calibrations(dict.fromkeys((c.dtype, c.threads) for c in todo), sweep, workdir, on_event)
        for case in todo:
            child = ledger.dominated(case) if sweep.skip_dominated else None
            ref_path, ref_error = references.get(case, on_event) if child is None else (None, None)
            on_event("start", case, None)
            started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
            if child is None:
                job = {"kind": "case", "case": case.to_dict(), "policy": asdict(sweep.policy),
                       "reference": ref_path, "reference_error": ref_error}
                child = run_child(job, child_env(case.threads, sweep.backend_modules), sweep.timeout_s, workdir)
                if child.status == "timeout":
                    ledger.add(case)
            record = make_record(case, child, calib[(case.dtype, case.threads)], fingerprint, run_id, started)
            append_record(sweep.output, record)
            counts[record["status"]] = counts.get(record["status"], 0) + 1
            on_event("done", case, record)
    return counts


def make_record(case: Case, child: ChildResult, calibration: dict[str, Any], fingerprint: dict[str, Any],
                run_id: str, started: str) -> dict[str, Any]:
    result = dict(child.result)
    record: dict[str, Any] = {
        "schema": SCHEMA_VERSION, "run_id": run_id, "case_id": case.id, "case": case.to_dict(),
        "status": child.status, "message": result.pop("message", ""), "started": started,
        "duration_s": child.wall_s,
    }
    record.update(result)
    record["status"] = child.status
    on_gpu = str(record.get("device", "cpu")).startswith("cuda") and "cuda" in calibration
    gemm = calibration["cuda"]["gemm_gflops"] if on_gpu else calibration.get("gemm_gflops")
    record["peak_fraction"] = record["gflops"] / gemm if gemm and record.get("gflops") else None
    record["calibration"] = calibration
    record["machine"] = fingerprint
    return record
