"""Timing statistics and the adaptive stopping rule, on a fake clock (no timed assertions)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from convbench.bench.stats import Policy, measure, summarize


def test_summarize_matches_numpy_on_known_samples():
    samples = [0.004, 0.001, 0.003, 0.002, 0.010, 0.005, 0.0015]
    s = summarize(samples)
    a = np.array(samples)
    assert s.n == 7 and s.min == 0.001 and s.max == 0.010
    assert s.median == pytest.approx(np.median(a))
    assert s.mean == pytest.approx(a.mean())
    assert s.stdev == pytest.approx(a.std(ddof=1))
    assert s.iqr == pytest.approx(np.percentile(a, 75) - np.percentile(a, 25))
    assert s.p90 == pytest.approx(np.percentile(a, 90)) and s.p99 == pytest.approx(np.percentile(a, 99))
    assert s.samples == tuple(samples)  # raw samples kept, in call order
    assert s.to_dict()["iqr_rel"] == pytest.approx(s.iqr / s.median)


def test_summarize_rejects_no_samples():
    with pytest.raises(ValueError, match="no samples"):
        summarize([])


class FakeClock:
    """Each call of the timed function advances time by the next duration of a cycle (nanoseconds)."""

    def __init__(self, durations_ns):
        self.now = 0
        self.durations = itertools.cycle(durations_ns)
        self.calls = 0

    def clock(self) -> int:
        return self.now

    def fn(self) -> None:
        self.calls += 1
        self.now += next(self.durations)


def test_steady_function_converges_after_min_time_and_min_samples():
    fake = FakeClock([1_000_000])  # 1 ms per call, no spread
    policy = Policy(warmup_s=0.01, warmup_calls=3, min_time_s=0.1, max_time_s=1.0, min_samples=5,
                    check_every_s=0.02)
    m = measure(fake.fn, policy, clock=fake.clock)
    assert m.converged and "IQR" in m.stop_reason
    assert m.stats.median == pytest.approx(1e-3)
    assert m.stats.n >= 100  # min_time 0.1 s of 1 ms calls
    assert m.stats.n < 200  # … and it stops soon after (checks every 20 ms)
    assert m.warmup_calls == 10  # 10 ms of warm-up, more than the 3 calls asked for
    assert fake.calls == m.warmup_calls + m.stats.n  # warm-up calls are not samples


def test_noisy_function_stops_at_the_time_cap_unconverged():
    fake = FakeClock([1_000_000, 3_000_000])  # alternating 1 ms / 3 ms: IQR/median = 100 %
    policy = Policy(warmup_s=0, min_time_s=0.05, max_time_s=0.5, check_every_s=0.01)
    m = measure(fake.fn, policy, clock=fake.clock)
    assert not m.converged and "time cap" in m.stop_reason
    assert 0.5 <= m.total_s < 0.52
    assert m.stats.iqr_rel > 0.05


def test_sample_cap_and_slow_calls_still_get_three_samples():
    fast = FakeClock([1_000, 2_000])
    m = measure(fast.fn, Policy(warmup_s=0, max_samples=50, min_time_s=0, check_every_s=10), clock=fast.clock)
    assert m.stats.n == 50 and "50 samples" in m.stop_reason
    slow = FakeClock([2_000_000_000])  # 2 s per call against a 1 s cap
    m = measure(slow.fn, Policy(warmup_s=0, min_time_s=0, max_time_s=1.0, min_samples=5), clock=slow.clock)
    # The cap wins over min_samples, but three samples are too few to call the spread converged.
    assert m.stats.n == 3 and not m.converged and "time cap" in m.stop_reason


@pytest.mark.parametrize("kwargs", [{"min_samples": 2}, {"min_time_s": 2.0, "max_time_s": 1.0}])
def test_policy_rejects_nonsense(kwargs):
    with pytest.raises(ValueError):
        Policy(**kwargs)
