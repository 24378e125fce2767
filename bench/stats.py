"""Timing: warm-up, then adaptive repeats until the spread is small or a time cap is hit (the rule of
torch.utils.benchmark's ``adaptive_autorange``), and the statistics of the raw samples, which are kept.

One sample is one call, so the latency distribution (p90, p99) is the distribution of real calls, not of
averages over blocks of calls. The loop does as little as possible between calls: it appends to a list and
reads ``perf_counter_ns``; the stopping rule is evaluated every ``check_every_s`` seconds, not every call,
so a 100 µs case does not pay for a percentile per sample. The garbage collector is off while timing (as
``timeit`` does), so a collection of unrelated objects does not land in one sample.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass(frozen=True)
class Policy:
    """When to stop. Defaults suit a sweep: ≥ 0.5 s and ≥ 5 calls, stop at IQR/median < 5 % or after 5 s."""

    warmup_s: float = 0.2  # warm-up lasts at least this long …
    warmup_calls: int = 1  # … and at least this many calls
    min_time_s: float = 0.5
    max_time_s: float = 5.0
    min_samples: int = 5
    max_samples: int = 20_000
    target_iqr_rel: float = 0.05
    check_every_s: float = 0.05
    # a backend that ran under an interpreter (Triton on a CPU) is checked with one call and not timed: its time is
    # the interpreter's, not the backend's (``convbench run --time-interpreters`` times it anyway)
    time_interpreted: bool = False

    def __post_init__(self) -> None:
        for name in ("warmup_s", "min_time_s", "max_time_s", "target_iqr_rel", "check_every_s"):
            value = getattr(self, name)  # NaN or inf would turn a stopping rule off without a word
            if type(value) not in (int, float) or not 0 <= value < math.inf:
                raise ValueError(f"{name} must be a finite number ≥ 0, got {value!r}")
        if self.target_iqr_rel <= 0 or self.check_every_s <= 0:
            raise ValueError(f"target_iqr_rel and check_every_s must be > 0, got {self.target_iqr_rel} and "
                             f"{self.check_every_s}")
        if self.min_samples < 3:
            raise ValueError("min_samples must be ≥ 3 (the IQR needs a few samples)")
        if not 0 <= self.min_time_s <= self.max_time_s:
            raise ValueError(f"need 0 ≤ min_time_s ≤ max_time_s, got {self.min_time_s} and {self.max_time_s}")


@dataclass(frozen=True)
class Stats:
    """Statistics of per-call latencies in seconds (``samples`` are the raw ones, in call order)."""

    n: int
    min: float
    median: float
    mean: float
    stdev: float
    iqr: float
    p90: float
    p99: float
    max: float
    samples: tuple[float, ...] = field(repr=False, default=())

    @property
    def iqr_rel(self) -> float:
        return self.iqr / self.median if self.median > 0 else math.inf

    def to_dict(self, samples: bool = True) -> dict:
        d = asdict(self)
        d["iqr_rel"] = self.iqr_rel
        d["samples"] = [float(f"{s:.6g}") for s in self.samples] if samples else []
        return d


def summarize(samples: Sequence[float]) -> Stats:
    """Statistics of a list of latencies (seconds)."""
    a = np.asarray(samples, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no samples")
    q1, med, q3, p90, p99 = np.percentile(a, [25, 50, 75, 90, 99])
    return Stats(n=int(a.size), min=float(a.min()), median=float(med), mean=float(a.mean()),
                 stdev=float(a.std(ddof=1)) if a.size > 1 else 0.0, iqr=float(q3 - q1),
                 p90=float(p90), p99=float(p99), max=float(a.max()), samples=tuple(float(s) for s in a))


@dataclass(frozen=True)
class Measurement:
    stats: Stats
    warmup_calls: int
    warmup_s: float
    total_s: float  # wall time of the timed phase
    converged: bool  # stopped because IQR/median fell under the target
    stop_reason: str

    def to_dict(self) -> dict:
        return {**self.stats.to_dict(), "warmup_calls": self.warmup_calls, "warmup_s": self.warmup_s,
                "total_s": self.total_s, "converged": self.converged, "stop_reason": self.stop_reason}


def _iqr_rel(samples: list[int]) -> float:
    q1, med, q3 = np.percentile(samples, [25, 50, 75])
    return float((q3 - q1) / med) if med > 0 else math.inf


def measure(fn: Callable[[], object], policy: Policy = Policy(),
            clock: Callable[[], int] = time.perf_counter_ns) -> Measurement:
    """Call ``fn()`` repeatedly: warm up, then time single calls until the policy says stop."""
    start = clock()
    warm = 0
    while warm < policy.warmup_calls or (clock() - start) < policy.warmup_s * 1e9:
        fn()
        warm += 1
    warmup_ns = clock() - start

    samples: list[int] = []
    append = samples.append
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        t_begin = clock()
        next_check = t_begin + policy.check_every_s * 1e9
        while True:
            t0 = clock()
            fn()
            t1 = clock()
            append(t1 - t0)
            if t1 < next_check and len(samples) < policy.max_samples:
                continue
            next_check = t1 + policy.check_every_s * 1e9
            elapsed = (t1 - t_begin) / 1e9
            n = len(samples)
            if n >= policy.max_samples:
                reason, converged = f"reached {policy.max_samples} samples", False
            elif elapsed >= policy.max_time_s and n >= 3:
                reason, converged = f"time cap {policy.max_time_s:g} s", False
            elif elapsed < policy.min_time_s or n < policy.min_samples:
                continue
            elif _iqr_rel(samples) < policy.target_iqr_rel:
                reason, converged = f"IQR/median < {policy.target_iqr_rel:.0%}", True
            else:
                continue
            # The cap checks above do not look at the spread; a run that stopped on them may still be tight.
            if not converged and n >= policy.min_samples and _iqr_rel(samples) < policy.target_iqr_rel:
                converged = True
            break
        total = (clock() - t_begin) / 1e9
    finally:
        if gc_was_enabled:
            gc.enable()
    return Measurement(summarize([s / 1e9 for s in samples]), warm, warmup_ns / 1e9, total, converged, reason)
