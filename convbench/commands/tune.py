"""``convbench tune -m MODEL [--batch N] [--image-size S] [--budget 30m]``: a TVM tuning database for this CPU,
made within a wall-clock budget with progress as it goes; every later TVM compile of the model on this CPU picks
it up (``db_source: user`` in its compile report) unless given ``tuning_db`` or ``use_shipped_db=false``."""

from __future__ import annotations

import argparse
import time

import numpy as np

from .. import models
from ..bench.errors import BenchError
from ._common import in_range


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", required=True, help="a zoo model name")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--image-size", type=int, default=None, help="input size (default: the model's own)")
    p.add_argument("--budget", default="30m", help="tuning wall time: 90s, 30m, 1h (default 30m); the final "
                                                   "re-measure of each task's best records comes after it")
    p.add_argument("--threads", type=int, default=None, help="TVM threads, also while measuring (default: cores)")
    p.add_argument("--trials-per-round", type=int, default=16,
                   help="trials per task per round: smaller rounds stop closer to the budget (default 16)")
    p.add_argument("--no-check", action="store_true", help="skip the compile + timing with the new database")


def run(args: argparse.Namespace) -> int:
    from ..backends import get
    from ..backends.base import physical_cores
    from ..backends.tvm.budget import parse_budget, tune_within

    in_range(args.batch, "--batch", 1)
    in_range(args.trials_per_round, "--trials-per-round", 1)
    try:
        budget_s = parse_budget(args.budget)
    except ValueError as e:
        raise BenchError(str(e)) from None
    backend = get("tvm")
    ok, why = backend.available()
    if not ok:
        raise BenchError(f"convbench tune needs the tvm backend: {why}")
    threads = args.threads or physical_cores()
    graph = models.build(args.model, batch=args.batch, image_size=args.image_size)
    params = models.init_params(graph, seed=0)  # a schedule depends on shapes, not on the weights' values
    done = tune_within(graph, params, budget_s, threads=threads, trials_per_round=args.trials_per_round,
                       progress=lambda line: print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True))
    print(f"database: {done.path} ({done.tasks} tasks, {done.trials} trials in {done.rounds} rounds, "
          f"{done.tuning_s / 60:.1f} min, {done.seeded} hand-written schedules measured)")
    if args.no_check:
        return 0
    exe = backend.compile(graph, params, threads=threads)
    d = exe.report.details
    x = np.random.default_rng(0).standard_normal(next(iter(graph.inputs.values())).shape).astype(np.float32)
    for _ in range(3):  # warm: the first calls after a compile page weights in and size TVM's pool
        exe(x)
    times = []
    for _ in range(10):
        start = time.perf_counter()
        exe(x)
        times.append(time.perf_counter() - start)
    times.sort()
    print(f"a compile now uses it: db_source {d.db_source}, {d.db_hits}/{d.db_tasks} functions from the database; "
          f"median {times[len(times) // 2] * 1e3:.2f} ms a call (10 calls; a benchmark: convbench run -b tvm)")
    return 0
