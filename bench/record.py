"""The result record: one per case, a typed structure here, one JSON object per line on disk (schema.py).

The runner builds a `Record` from the case, the child's result and the sweep's context and writes
``record.to_dict()``; ``report``, ``compare`` and the ablation read files back with `load_records`, which
accepts every layout convbench has written:

- schema 2 (now): ``compile{compile_s, report, fallback_nodes}`` — ``report`` is the executable's typed
  `CompileReport` (``exe.report.to_dict()``; null for a third-party backend that makes none), ``compile_s`` the
  wall time of ``backend.compile()`` as the harness saw it (the same yardstick for every backend);
- schema 1: ``compile{compile_s, info, fallback_nodes}`` with the backend's untyped ``info`` dict.

Keys a reader does not know (older writers' ``compile.wall_s``, benchmarks/triton_gpu.py's ``layer``) are kept
in ``extra`` and written back unchanged. The nested dicts that are not typed here are each the ``to_dict()`` of
their producer's own type: ``timing`` (`stats.Measurement`), ``correctness`` (`correctness.Agreement`, or
``{ok: null, dtype, reason}`` without a reference), ``accuracy`` (`correctness.Accuracy`, real input only),
``model_info`` (`ir.analysis` summary), ``train`` (`TrainInfo`, a train-mode case; its ``gradients`` are a
`correctness.Agreement`), ``calibration``
(`calibrate.calibrate`), ``machine`` (`machine.fingerprint`).
"""

from __future__ import annotations

import functools
import math
import os
import typing
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from ..ir.serialize import show_value, typed
from .errors import BenchError
from .schema import INPUTS, MODES, SCHEMA_VERSION, STATUSES, Case, SchemaError, scan

T = TypeVar("T", bound="_Part")


class _Part:
    """from_dict/to_dict for the record's dataclasses: known keys to fields (each checked against the field's type
    exactly, `ir.serialize.typed`), the rest to ``extra``."""

    OMIT_NONE: ClassVar[frozenset[str]] = frozenset()  # fields left out of the JSON while they are None
    NESTED: ClassVar[dict[str, type]] = {}
    SHAPES: ClassVar[dict[str, dict[str, Any]]] = {}  # dict fields: the types of the keys readers use

    @classmethod
    def from_dict(cls: type[T], d: dict[str, Any], strict: bool = False, where: str = "") -> T:
        names = {f.name for f in fields(cls)} - {"extra"}  # type: ignore[arg-type]
        unknown = {k: v for k, v in d.items() if k not in names}
        if unknown and strict:
            raise SchemaError(f"{cls.__name__}: unknown field(s) {sorted(unknown)}")
        hints = _hints(cls)
        known: dict[str, Any] = {}
        for name, value in d.items():
            if name not in names:
                continue
            path = f"{where}{name}"
            if name in cls.NESTED and value is not None:
                if type(value) is not dict:
                    raise SchemaError(f"field {path!r} must be an object or null, got {show_value(value)}")
                known[name] = cls.NESTED[name].from_dict(value, strict=strict, where=f"{path}.")  # type: ignore
            elif name == "case":
                known[name] = case_from_dict(value, path)
            else:
                known[name] = _typed(value, hints[name], path)
                if name in cls.SHAPES and known[name] is not None:
                    for key, hint in cls.SHAPES[name].items():
                        if key in known[name]:
                            _typed(known[name][key], hint, f"{path}.{key}")
        if "fallback_nodes" in known:
            known["fallback_nodes"] = tuple(known["fallback_nodes"] or ())
        try:
            return cls(**known, extra=unknown)  # type: ignore[call-arg]
        except TypeError as e:  # a required field missing
            raise SchemaError(f"{where or cls.__name__ + ': '}{e}") from None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.name == "extra" or (value is None and f.name in self.OMIT_NONE):
                continue
            if isinstance(value, _Part | Case):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        out.update(getattr(self, "extra", {}))
        return out


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _typed(value: Any, hint: Any, path: str) -> Any:
    try:
        return typed(value, hint)
    except TypeError as e:
        raise SchemaError(f"field {path!r} {e}") from None


def case_from_dict(value: Any, path: str = "case") -> Case:
    """A record's case, every field typed; sizes, batch and threads at least 1."""
    if type(value) is not dict:
        raise SchemaError(f"field {path!r} must be an object, got {show_value(value)}")
    hints = _hints(Case)
    missing = [k for k in _REQUIRED_CASE if k not in value]
    if missing:
        raise SchemaError(f"field {path!r} lacks {', '.join(map(repr, missing))}")
    known = {k: _typed(v, hints[k], f"{path}.{k}") for k, v in value.items() if k in _CASE_FIELDS}
    if known.get("input", "random") not in INPUTS:
        raise SchemaError(f"field '{path}.input' must be one of {', '.join(INPUTS)}, got {show_value(known['input'])}")
    if known.get("mode", "inference") not in MODES:
        raise SchemaError(f"field '{path}.mode' must be one of {', '.join(MODES)}, got {show_value(known['mode'])}")
    for k in ("image_size", "batch", "threads"):
        if known[k] < 1:
            raise SchemaError(f"field '{path}.{k}' must be ≥ 1, got {known[k]}")
    try:
        return Case(**known)
    except BenchError as e:  # a backend spec that does not parse
        raise SchemaError(f"field '{path}.backend': {e}") from None


@dataclass(frozen=True)
class CompileInfo(_Part):
    compile_s: float | None = None  # the wall time of backend.compile() as the harness saw it
    report: dict[str, Any] | None = None  # CompileReport.to_dict(); None: the backend made none (or schema 1)
    fallback_nodes: tuple[str, ...] = ()  # nodes that ran on the reference
    info: dict[str, Any] | None = None  # schema 1 only: the backend's untyped info
    extra: dict[str, Any] = field(default_factory=dict)

    OMIT_NONE: ClassVar[frozenset[str]] = frozenset({"info"})

    @property
    def accuracy_dtype(self) -> str | None:
        """The dtype the case's correctness was judged with, in either schema."""
        info = self.report or self.info or {}
        return info.get("accuracy_dtype") or info.get("dtype")

    @property
    def interpreted(self) -> bool:
        """The backend ran its kernels under an interpreter (Triton without a CUDA GPU), in either schema: its
        correctness counts, its timing does not represent the backend (reports neither time nor rank it)."""
        if self.report is not None:
            return (self.report.get("details") or {}).get("mode") == "interpreter"
        return (self.info or {}).get("mode") == "interpreter"


@dataclass(frozen=True)
class Memory(_Part):
    rss_baseline_bytes: int | None = None  # the child's RSS before compile
    compile_rss_peak_delta_bytes: int | None = None  # peak RSS while compiling, above the baseline
    run_rss_peak_delta_bytes: int | None = None  # peak RSS while running, above the baseline
    rss_peak_delta_bytes: int | None = None  # the larger of the two
    method: str | None = None  # how RSS peaks were read (VmHWM, getrusage)
    device_peak_bytes: int | None = None  # the device allocator's peak (GPU), None on CPU
    static_activation_peak_bytes: int | None = None  # liveness peak of the activations, from the graph
    static_param_bytes: int | None = None  # parameters and buffers, from the graph
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkerInfo(_Part):
    pid: int | None = None
    wall_s: float | None = None  # the child's whole job
    thread_env: dict[str, str | None] = field(default_factory=dict)  # the child's thread variables
    torch_threads: int | None = None  # torch's intra-op threads, where torch was imported
    loadavg_1min: float | None = None  # the machine's load at the case's start
    extra: dict[str, Any] = field(default_factory=dict)


_AGREEMENT = {"ok": bool | None, "dtype": str | None, "reason": str,
              **dict.fromkeys(("max_abs", "max_rel", "bound", "top1", "top5"), float | None)}


@dataclass(frozen=True)
class TrainInfo(_Part):
    """A train-mode case (bench/train_case.py): what one step is, by `ir.train_counts`, and how its first step
    agrees with the float64 reference trainer. The step's time is the record's ``timing``; its GFLOP/s and
    ``peak_fraction`` count ``total_flops``."""

    optimizer: str  # the update, with its hyper-parameters: "sgd(lr=0.1, momentum=0.9, weight_decay=0.0001)"
    total_flops: int  # one step: forward + loss + backward + optimizer
    forward_flops: int  # the train-mode forward (BN batch statistics and running updates)
    backward_flops: int  # data and weight gradients, with the sums over uses
    optimizer_flops: int
    ratio_to_inference: float  # total_flops over the inference forward's FLOPs ("≈ 3×")
    step_peak_bytes: int  # static memory of a step: parameters, buffers, optimizer state, live activations+grads
    saved_activation_bytes: int  # forward values alive when the backward starts
    loss: float | None = None  # the backend's loss at the first step
    update_median_s: float | None = None  # the optimizer update's share of a timed step (median)
    gradients: dict[str, Any] | None = None  # `correctness.Agreement`: loss, gradients, parameters after one step
    extra: dict[str, Any] = field(default_factory=dict)

    SHAPES: ClassVar[dict[str, dict[str, Any]]] = {"gradients": _AGREEMENT}


@dataclass(frozen=True)
class Interleaved(_Part):
    """How an interleaved case (``convbench run --interleave``, interleave.py) was timed: its live worker answered
    rounds of ``calls_per_round`` calls in an order rotated each round over its workload group, with ``gap_s``
    idle before each request. ``timing`` holds every call; A/B ratios are taken round by round."""

    group: str = ""  # the workload group: model@size/bBATCH/dtype/tTHREADS
    rounds: int = 0  # rounds this case completed
    calls_per_round: int = 0
    gap_s: float = 0.0
    order: list[list[str]] = field(default_factory=list)  # each round's order of the group (backend labels)
    positions: list[int] = field(default_factory=list)  # this case's place in each round it ran
    round_medians: list[float] = field(default_factory=list)  # seconds per call, the median of each round
    round_loadavg: list[float | None] = field(default_factory=list)  # 1-minute load average before each round
    # cores anything but this case kept busy during each of its rounds (steal included; None: unreadable)
    round_other_cores: list[float | None] = field(default_factory=list)
    round_spread: float | None = None  # (max − min) / median of the round medians
    loaded: bool = False  # some round started with more runnable work than cores or shared them (interleave.loaded)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Record(_Part):
    """One case's line. ``status`` is one of `STATUSES`; the measurement fields are None unless it ran."""

    schema: int
    run_id: str
    case_id: str
    case: Case
    status: str
    message: str = ""
    started: str | None = None  # ISO time the case started
    duration_s: float | None = None  # the parent's wall time for the case's child (0: not run)
    device: str | None = None  # "cpu", "cuda:0" …
    skipped: bool | None = None  # a timeout not run because a cheaper workload already timed out
    detail: str | None = None  # traceback or output tail of a failure
    model_info: dict[str, Any] | None = None
    compile: CompileInfo | None = None
    timing: dict[str, Any] | None = None  # seconds per call of the whole batch, with the raw samples
    throughput_ips: float | None = None
    gflops: float | None = None
    peak_fraction: float | None = None  # gflops over the calibrated GEMM peak of the device it ran on
    memory: Memory | None = None
    correctness: dict[str, Any] | None = None
    accuracy: dict[str, Any] | None = None  # `correctness.Accuracy` of a real-input case; absent for random input
    train: TrainInfo | None = None  # a train-mode case only
    calibration: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    worker: WorkerInfo | None = None
    interleave: Interleaved | None = None  # an interleaved case's rounds (absent from a sweep's record)
    extra: dict[str, Any] = field(default_factory=dict)

    OMIT_NONE: ClassVar[frozenset[str]] = frozenset(
        {"started", "duration_s", "device", "skipped", "detail", "model_info", "compile", "timing",
         "throughput_ips", "gflops", "memory", "correctness", "accuracy", "train", "worker", "interleave"})
    NESTED: ClassVar[dict[str, type]] = {"compile": CompileInfo, "memory": Memory, "worker": WorkerInfo,
                                         "train": TrainInfo, "interleave": Interleaved}
    SHAPES: ClassVar[dict[str, dict[str, Any]]] = {
        "timing": {"n": int, "samples": list[float], "converged": bool | None, "stop_reason": str,
                   **dict.fromkeys(("min", "median", "mean", "stdev", "iqr", "iqr_rel", "p90", "p99", "max"),
                                   float | None)},
        "correctness": _AGREEMENT,
        "accuracy": {"n": int, **dict.fromkeys(("top1", "top5"), float | None),
                     **dict.fromkeys(("top1_agreement", "top5_overlap", "kl", "cosine"), float)},
        "model_info": dict.fromkeys(("flops", "macs", "params", "param_bytes", "activation_sum_bytes"), int | None),
        "calibration": {"gemm_gflops": float | None, "gemm_source": str | None, "bandwidth_gbs": float | None,
                        "cuda": dict[str, Any]},
        "machine": {"machine_id": str, "name": str | None, "cpu": str | None, "cores_logical": int | None,
                    "ram_bytes": int | None, "os": str | None, "gpus": list[str] | None,
                    "cpu_flags": list[str] | None, "versions": dict[str, str | None] | None,
                    "git_commit": str | None, "git_dirty": bool | None},
    }

    def __post_init__(self) -> None:
        if isinstance(self.case, dict):
            object.__setattr__(self, "case", Case(**{k: v for k, v in self.case.items() if k in _CASE_FIELDS}))
        if self.status not in STATUSES:
            raise SchemaError(f"case {self.case_id}: unknown status {self.status!r}")

    @property
    def median_s(self) -> float | None:
        return (self.timing or {}).get("median") if self.status == "ok" else None

    @property
    def samples(self) -> list[float]:
        return list((self.timing or {}).get("samples") or []) if self.status == "ok" else []

    @property
    def untimed(self) -> bool:
        """Checked but not timed: a backend under an interpreter (worker.py; ``--time-interpreters`` times it)."""
        return self.timing is None and self.compile is not None and self.compile.interpreted

    @property
    def correct(self) -> bool | None:
        """True or False against the reference (a train case: its first step's loss, gradients and parameters);
        None when there was no reference to compare with."""
        if self.train is not None:
            return (self.train.gradients or {}).get("ok")
        return (self.correctness or {}).get("ok")


_CASE_FIELDS = {f.name for f in fields(Case)}
_REQUIRED_CASE = ("model", "image_size", "backend", "batch", "dtype", "threads")


def check_record(d: dict[str, Any], where: str) -> Record:
    """One line of a results file as a typed record; `SchemaError` starts with ``where`` (file:line)."""
    try:
        record = Record.from_dict(d)
    except SchemaError as e:
        raise SchemaError(f"{where}: {e}") from None
    if record.status == "ok" and not record.untimed:  # a measurement: compare and report divide by its median
        median = (record.timing or {}).get("median")
        if not (type(median) in (int, float) and 0 < median < math.inf):
            raise SchemaError(f"{where}: status ok needs 'timing.median', a positive number of seconds, got "
                              f"{show_value(median)}")
    return record


def load_records(path: str | os.PathLike) -> list[Record]:
    """Every record of a results file, schema 1 or 2, typed; every line checked first (`schema.scan`), a torn
    last line skipped with a warning."""
    result = scan(path)
    result.warn_torn(path)
    return result.typed


def as_record(r: Record | dict[str, Any]) -> Record:
    return r if isinstance(r, Record) else Record.from_dict(r)


__all__ = ["SCHEMA_VERSION", "STATUSES", "CompileInfo", "Interleaved", "Memory", "Record", "TrainInfo", "WorkerInfo",
           "as_record", "load_records"]
