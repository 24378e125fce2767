"""Interleaved, process-isolated timing (``convbench run --interleave``): A/B ratios a shared machine cannot fool.

A sweep (runner.py) times each case in its own child, one after another: load that comes and goes between two
cases lands on one of them only, and six jobs on two cores once voided a day's figures. Here the cases of one
workload group (same model, image size, batch, dtype, threads, mode and input) each get a live worker process
(launch.Worker, worker.py's ``serve`` job), set up once — compile, first output against the float64 reference,
warm-up — and then time rounds: in round r the group's cases run in the order rotated by r, each after
``gap_s`` of idle (so one engine's spinning threads have stopped before the next one's round), ``calls`` calls
each. Drift hits every case alike, and a ratio is taken round by round, with its round-to-round spread.

Each case's record is the one record type (record.Record): ``timing`` holds every call, ``interleave``
(`record.Interleaved`) the rounds, the rotation, the per-round medians, the load average before each round and
the cores anything else kept busy during it (``round_other_cores``: the machine's busy CPU time, a hypervisor's
steal included, less the timed worker's own, over the round's wall time; the group's idle workers spinning count
too). ``loaded`` says a round started with more runnable work than the machine has cores, or shared it: the load
average lags a minute behind and counts the timed case itself, the other-cores reading is of that round alone. A
worker that crashes, hangs past the timeout or is killed ends with that status (launch.py's mapping) and the others
go on.

Peers that are not convbench backends (OpenVINO reading the ONNX export, torch eager …) run the same way: a
case whose id is in ``Rounds.factories`` builds its callable with that ``FILE.py:FUNCTION``
(worker.load_factory) instead of compiling on a backend.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from . import machine
from .errors import BenchError
from .launch import THREAD_VARS, ChildResult, Worker, child_env
from .output import check_target, locked, prepare_output
from .record import Interleaved, WorkerInfo
from .runner import (
    WORKER,
    Event,
    References,
    Sweep,
    Verdicts,
    calibrations,
    make_record,
    new_run_id,
    todo_cases,
    write_result,
)
from .schema import Case, int8_tag
from .stats import Measurement, summarize

LOADED_MARGIN = 0.5  # a round is loaded when the 1-minute load average exceeds the cores by more than this
OTHER_CORES_LIMIT = 0.25  # a round is loaded when anything but the timed case kept more of a core busy than this
MAX_ROUNDS = 10_000


@dataclass(frozen=True)
class Rounds:
    """How an interleaved run times: ``rounds`` rounds of at most ``calls`` calls per case (fewer where the
    sweep's ``max_time_s`` over all rounds would be exceeded: at least one), ``gap_s`` idle before each."""

    rounds: int = 10
    calls: int = 5
    gap_s: float = 0.2
    factories: dict[str, str] = field(default_factory=dict)  # case id -> "FILE.py:FUNCTION" (a peer engine)

    def __post_init__(self) -> None:
        if type(self.rounds) is not int or not 1 <= self.rounds <= MAX_ROUNDS:
            raise BenchError(f"rounds must be an integer in [1, {MAX_ROUNDS}], got {self.rounds!r}")
        if type(self.calls) is not int or self.calls < 1:
            raise BenchError(f"calls per round must be an integer ≥ 1, got {self.calls!r}")
        if type(self.gap_s) not in (int, float) or not 0 <= self.gap_s <= 60:
            raise BenchError(f"gap must be a number of seconds in [0, 60], got {self.gap_s!r}")


def group_key(case: Case) -> str:
    """The workload a group shares: everything of the case id but the backend."""
    key = f"{case.model}@{case.image_size}/b{case.batch}/{case.dtype}/t{case.threads}"
    return key + "".join(f"/{v}" for v, default in ((case.mode, "inference"), (case.input, "random"))
                         if v != default) + int8_tag(case.int8)


def groups(cases: Sequence[Case]) -> dict[str, list[Case]]:
    out: dict[str, list[Case]] = {}
    for case in cases:
        out.setdefault(group_key(case), []).append(case)
    return out


def rotated(items: Sequence[Any], r: int) -> list[Any]:
    """Round ``r``'s order: every case goes first once every len(items) rounds."""
    k = r % len(items) if items else 0
    return list(items[k:]) + list(items[:k])


def loaded(load: float | None, cores: int | None, other_cores: float | None = None) -> bool:
    """A round that cannot be trusted: it started with more runnable work than cores, or something else kept more
    than `OTHER_CORES_LIMIT` of a core busy while it ran."""
    return ((load is not None and cores is not None and load > cores + LOADED_MARGIN)
            or (other_cores is not None and other_cores > OTHER_CORES_LIMIT))


def cpu_seconds(pid: int) -> tuple[float, float] | None:
    """(the machine's busy CPU seconds over all cores, steal included; process ``pid``'s own with its children),
    or None where the process is gone or the counters cannot be read."""
    try:
        t, own = psutil.cpu_times(), psutil.Process(pid).cpu_times()
    except (psutil.Error, OSError):
        return None
    busy = t.user + t.system + sum(getattr(t, k, 0.0) for k in ("nice", "irq", "softirq", "steal"))
    return busy, own.user + own.system + own.children_user + own.children_system


def other_cores(before: tuple[float, float] | None, after: tuple[float, float] | None, wall_s: float) -> float | None:
    """Cores kept busy by anything but the process the two `cpu_seconds` readings are of, over ``wall_s``."""
    if before is None or after is None or wall_s <= 0:
        return None
    return max(0.0, ((after[0] - before[0]) - (after[1] - before[1])) / wall_s)


def run_interleaved(sweep: Sweep, rounds: Rounds, on_event: Event = lambda *_: None) -> dict[str, int]:
    """Run every case not already in the output, group by group; return how many ended with each status. The
    output is checked and locked as `runner.run_sweep` does."""
    check_target(sweep.output)
    with locked(sweep.output):
        todo = todo_cases(sweep, prepare_output(sweep.output, sweep.resume, sweep.overwrite), on_event)
        if not todo:
            return {}
        fingerprint = machine.fingerprint(sweep.machine_name)
        run_id = f"{new_run_id()}-interleaved"
        counts: dict[str, int] = {}
        with tempfile.TemporaryDirectory(prefix="convbench-interleave-") as tmp:
            workdir = Path(tmp)
            references = References(sweep, workdir)
            calib = calibrations(dict.fromkeys((c.dtype, c.threads) for c in todo), sweep, workdir, on_event)
            verdicts = Verdicts()
            for key, cases in groups(todo).items():
                group = _Group(key, cases, sweep, rounds, workdir, verdicts, fingerprint.get("cores_logical"))
                for case, child, started in group.run(references, on_event):
                    record = make_record(case, child, calib[(case.dtype, case.threads)], fingerprint, run_id,
                                         started)
                    write_result(sweep.output, case, record.to_dict(), counts, on_event)
        return counts


@dataclass
class _Live:
    """One case's worker and what its rounds gave."""

    case: Case
    worker: Worker | None
    started: str
    ready: dict[str, Any] = field(default_factory=dict)
    calls: int = 1
    end: ChildResult | None = None  # how it ended, if before the last round
    samples: list[float] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    medians: list[float] = field(default_factory=list)
    loads: list[float | None] = field(default_factory=list)
    others: list[float | None] = field(default_factory=list)


class _Group:
    def __init__(self, key: str, cases: list[Case], sweep: Sweep, rounds: Rounds, workdir: Path,
                 verdicts: Verdicts, cores: int | None):
        self.key, self.cases, self.sweep, self.rounds, self.workdir = key, cases, sweep, rounds, workdir
        self.verdicts, self.cores = verdicts, cores
        self.orders: list[list[str]] = []

    def run(self, references: References, on_event: Event) -> list[tuple[Case, ChildResult, str]]:
        """Start a worker per case, run the rounds, stop the workers; each case with how it ended."""
        live: list[_Live] = []
        try:
            for case in self.cases:
                live.append(self._start(case, references, on_event))
            for r in range(self.rounds.rounds):
                alive = [c for c in live if c.end is None]
                if not alive:
                    break
                on_event("round", None, {"group": self.key, "round": r + 1, "of": self.rounds.rounds})
                order = rotated(alive, r)
                self.orders.append([c.case.backend for c in order])
                for position, c in enumerate(order):
                    self._round(c, position)
        finally:
            for c in live:
                if c.worker is not None:
                    c.worker.close()
        return [(c.case, self._result(c), c.started) for c in live]

    def _start(self, case: Case, references: References, on_event: Event) -> _Live:
        started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        factory = self.rounds.factories.get(case.id)
        verdict = None if factory else self.verdicts.get(case)
        if verdict is not None:
            return _Live(case, None, started, end=verdict)
        ref_path, ref_error = references.get(case, on_event)
        on_event("start", case, None)
        job = {"kind": "serve", "case": case.to_dict(), "policy": asdict(self.sweep.policy), "reference": ref_path,
               "reference_error": ref_error, "factory": factory}
        worker = Worker(WORKER, job, child_env(case.threads, self.sweep.backend_modules), self.workdir)
        ready = worker.reply(self.sweep.timeout_s)
        c = _Live(case, worker, started, ready=ready.result)
        if ready.status != "ok":
            c.end = ready
            return c
        per_call = float(ready.result.get("call_s") or 0.0)
        budget = self.sweep.policy.max_time_s / self.rounds.rounds
        c.calls = max(1, min(self.rounds.calls, math.floor(budget / per_call) if per_call > 0 else self.rounds.calls))
        return c

    def _round(self, c: _Live, position: int) -> None:
        assert c.worker is not None
        time.sleep(self.rounds.gap_s)  # the previous worker's spinning threads stop; the load average is read
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        before, t0 = cpu_seconds(c.worker.proc.pid), time.perf_counter()
        reply = c.worker.request({"op": "round", "calls": c.calls}, self.sweep.timeout_s)
        other = other_cores(before, cpu_seconds(c.worker.proc.pid), time.perf_counter() - t0)
        if reply.status != "ok":
            c.end = ChildResult(reply.status, {**reply.result, "message": (
                f"in round {len(c.medians) + 1}: {reply.result.get('message', reply.status)}")}, reply.wall_s)
            return
        samples = [float(s) for s in reply.result["samples"]]
        c.samples += samples
        c.medians.append(statistics.median(samples))
        c.positions.append(position)
        c.loads.append(load)
        c.others.append(other)

    def _interleaved(self, c: _Live) -> Interleaved:
        spread = ((max(c.medians) - min(c.medians)) / statistics.median(c.medians)) if c.medians else None
        return Interleaved(group=self.key, rounds=len(c.medians), calls_per_round=c.calls,
                           gap_s=float(self.rounds.gap_s), order=self.orders, positions=c.positions,
                           round_medians=c.medians, round_loadavg=c.loads, round_other_cores=c.others,
                           round_spread=spread,
                           loaded=any(loaded(v, self.cores, o) for v, o in zip(c.loads, c.others, strict=True)))

    def _result(self, c: _Live) -> ChildResult:
        wall = time.perf_counter() - c.worker.started if c.worker is not None else 0.0
        setup = {k: v for k, v in c.ready.items() if k in ("model_info", "compile", "device", "correctness", "memory")}
        if c.end is not None:
            result = {k: v for k, v in c.end.result.items() if k in ("message", "detail")}
            if c.worker is not None:
                result.update(setup, interleave=self._interleaved(c).to_dict())
            return ChildResult(c.end.status, result, wall)
        stats = summarize(c.samples)
        timing = Measurement(stats, int(c.ready.get("warmup_calls", 0)), 0.0, sum(c.samples),
                             stats.iqr_rel < self.sweep.policy.target_iqr_rel,
                             f"interleaved: {len(c.medians)} rounds × {c.calls} calls")
        flops = (c.ready.get("model_info") or {}).get("flops") or 0
        assert c.worker is not None
        env = child_env(c.case.threads, ())
        info = WorkerInfo(pid=c.worker.proc.pid, wall_s=wall, thread_env={v: env.get(v) for v in THREAD_VARS},
                          loadavg_1min=c.loads[0])
        return ChildResult("ok", {**setup, "message": "", "timing": timing.to_dict(),
                                  "throughput_ips": c.case.batch / stats.median, "gflops": flops / stats.median / 1e9,
                                  "interleave": self._interleaved(c).to_dict(), "worker": info.to_dict()}, wall)


def round_ratios(a: Interleaved, b: Interleaved) -> list[float]:
    """``a``'s time over ``b``'s, round by round (the rounds both completed, same group)."""
    if a.group != b.group:
        raise BenchError(f"round ratios need one workload group, got {a.group!r} and {b.group!r}")
    return [x / y for x, y in zip(a.round_medians, b.round_medians, strict=False)]


__all__ = ["LOADED_MARGIN", "OTHER_CORES_LIMIT", "Rounds", "cpu_seconds", "group_key", "groups", "loaded",
           "other_cores", "rotated", "round_ratios", "run_interleaved"]
