"""A backend under an interpreter (Triton on a CPU) is checked with one call and not timed by default: its record
is ok with a correctness verdict and no timing, the report and compare say so, and ``time_interpreted`` (the
``--time-interpreters`` flag) times it anyway."""

from __future__ import annotations

import pytest

from convbench.backends.triton import BACKEND  # (sets TRITON_INTERPRET before triton is imported)
from convbench.bench.compare import compare_records
from convbench.bench.record import load_records
from convbench.bench.runner import Sweep, plan, run_sweep
from convbench.bench.stats import Policy

AVAILABLE, WHY = BACKEND.available()
pytestmark = pytest.mark.skipif(not AVAILABLE, reason=f"triton backend not available: {WHY}")

POLICY = dict(warmup_s=0.0, min_time_s=0.05, max_time_s=0.2)


def _sweep(tmp_path, name: str, **policy) -> list:
    out = tmp_path / f"{name}.jsonl"
    cases = plan(["lenet5"], ["triton"], [2], ["float32"], ["small"], threads=1)
    run_sweep(Sweep(cases, out, Policy(**POLICY, **policy), gemm_n=0))
    return load_records(out)


@pytest.mark.slow  # two Triton children under the interpreter: about 10 s
def test_an_interpreted_case_is_checked_not_timed_unless_asked(tmp_path):
    (r,) = _sweep(tmp_path, "default")
    assert r.status == "ok" and r.untimed and r.timing is None and r.throughput_ips is None, r.message
    assert r.correct is True and "not timed" in r.message
    (row,) = compare_records([r], [r]).rows
    assert row.verdict == "not timed"
    (timed,) = _sweep(tmp_path, "timed", time_interpreted=True)
    assert timed.status == "ok" and not timed.untimed and timed.timing["median"] > 0
