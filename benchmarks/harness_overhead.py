"""How much the harness's timing loop adds: its reported median against a bare timing loop of the same
Executable in the same process, rounds interleaved so drift hits both alike.

    python benchmarks/harness_overhead.py [-m lenet5] [-b numpy] [--rounds 15]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import convbench as cb
from convbench.bench.stats import Policy, measure
from convbench.bench.workload import make_workload


def bare(fn, n: int) -> float:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t0)
    return statistics.median(samples) / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("-m", "--model", default="lenet5")
    p.add_argument("-b", "--backend", default="numpy")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--seconds", type=float, default=0.5, help="timed seconds per loop per round")
    args = p.parse_args()
    w = make_workload(args.model, args.batch, None)  # the sweep's own graph, parameters and input
    exe = cb.backends.get(args.backend).compile(w.graph, w.params)
    fn = functools.partial(exe, w.input)
    policy = Policy(warmup_s=0.1, min_time_s=args.seconds, max_time_s=args.seconds, target_iqr_rel=0.0)
    n = measure(fn, policy).stats.n  # calls the bare loop makes: as many as the harness makes in its time
    ratios, harness_medians, bare_medians = [], [], []
    for _ in range(args.rounds):
        b = bare(fn, n)
        h = measure(fn, policy).stats.median
        bare_medians.append(b)
        harness_medians.append(h)
        ratios.append(h / b)
    print(f"{args.model} b{args.batch} on {args.backend}: {args.rounds} interleaved rounds of ~{n} calls each")
    print(f"bare loop median   {statistics.median(bare_medians) * 1e6:9.2f} µs")
    print(f"harness median     {statistics.median(harness_medians) * 1e6:9.2f} µs")
    print(f"harness / bare     {statistics.median(ratios):.4f} (median over rounds; "
          f"rounds range {min(ratios):.4f} – {max(ratios):.4f})")


if __name__ == "__main__":
    main()
