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
``{ok: null, dtype, reason}`` without a reference), ``model_info`` (`ir.analysis` summary), ``calibration``
(`calibrate.calibrate`), ``machine`` (`machine.fingerprint`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from .schema import SCHEMA_VERSION, STATUSES, Case, SchemaError, read_records

T = TypeVar("T", bound="_Part")


class _Part:
    """from_dict/to_dict for the record's dataclasses: known keys to fields, the rest to ``extra``."""

    OMIT_NONE: ClassVar[frozenset[str]] = frozenset()  # fields left out of the JSON while they are None
    NESTED: ClassVar[dict[str, type]] = {}

    @classmethod
    def from_dict(cls: type[T], d: dict[str, Any], strict: bool = False) -> T:
        names = {f.name for f in fields(cls)} - {"extra"}  # type: ignore[arg-type]
        unknown = {k: v for k, v in d.items() if k not in names}
        if unknown and strict:
            raise SchemaError(f"{cls.__name__}: unknown field(s) {sorted(unknown)}")
        known = {k: v for k, v in d.items() if k in names}
        for name, part in cls.NESTED.items():
            if isinstance(known.get(name), dict):
                known[name] = part.from_dict(known[name], strict=strict)  # type: ignore[attr-defined]
        if "fallback_nodes" in known:
            known["fallback_nodes"] = tuple(known["fallback_nodes"] or ())
        return cls(**known, extra=unknown)  # type: ignore[call-arg]

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
    calibration: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    worker: WorkerInfo | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    OMIT_NONE: ClassVar[frozenset[str]] = frozenset(
        {"started", "duration_s", "device", "skipped", "detail", "model_info", "compile", "timing",
         "throughput_ips", "gflops", "memory", "correctness", "worker"})
    NESTED: ClassVar[dict[str, type]] = {"compile": CompileInfo, "memory": Memory, "worker": WorkerInfo}

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
    def correct(self) -> bool | None:
        """True or False against the reference; None when there was no reference to compare with."""
        return (self.correctness or {}).get("ok")


_CASE_FIELDS = {f.name for f in fields(Case)}


def load_records(path: str | os.PathLike) -> list[Record]:
    """Every record of a results file, schema 1 or 2, typed (`schema.read_records` checks each line)."""
    out = []
    for number, d in enumerate(read_records(path), start=1):
        try:
            out.append(Record.from_dict(d))
        except (TypeError, SchemaError) as e:
            raise SchemaError(f"{path}: record {number}: {e}") from None
    return out


def as_record(r: Record | dict[str, Any]) -> Record:
    return r if isinstance(r, Record) else Record.from_dict(r)


__all__ = ["SCHEMA_VERSION", "STATUSES", "CompileInfo", "Memory", "Record", "WorkerInfo", "as_record",
           "load_records"]
