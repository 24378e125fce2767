"""Paired timing: per-cycle ratios cancel a load that drifts between calls; the median's interval is right."""

from __future__ import annotations

import numpy as np
import pytest

from convbench.bench.ablation_paired import PairedPolicy, measure_paired, median_ci


def test_ratios_within_a_cycle_cancel_a_drifting_load():
    """The machine slows down 1 % per call: medians of the latencies drift, per-cycle ratios do not."""
    now, load = [0], [1.0]
    cost = {"none": 10_000_000, "default": 8_000_000, "all": 12_500_000}  # ns

    def call(p):
        def run():
            now[0] += int(cost[p] * load[0])
            load[0] *= 1.01
        return run

    stats = measure_paired({p: call(p) for p in cost}, PairedPolicy(warmup_calls=1, min_cycles=9, min_time_s=0,
                                                                    max_time_s=60, target_ci_rel=0.05),
                           clock=lambda: now[0])
    # within a cycle the order rotates, so each ratio is off by at most the drift of a cycle (±2 %)
    assert stats["default"]["speedup"] == pytest.approx(1.25, rel=0.021)
    assert stats["all"]["speedup"] == pytest.approx(0.8, rel=0.021)
    assert stats["none"]["speedup"] == 1.0 and stats["none"]["cycles"] >= 9
    assert stats["default"]["speedup_lo"] <= stats["default"]["speedup"] <= stats["default"]["speedup_hi"]


def test_the_baseline_is_required():
    with pytest.raises(ValueError, match="needs the 'none' pipeline"):
        measure_paired({"default": lambda: None})


def test_median_interval_covers_the_median_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    hits = sum(lo <= 0.0 <= hi for lo, hi in (median_ci(rng.standard_normal(41)) for _ in range(2000)))
    assert 0.93 <= hits / 2000 <= 0.99
    assert median_ci(np.array([3.0, 1.0])) == (1.0, 3.0)  # too few samples: the whole range
