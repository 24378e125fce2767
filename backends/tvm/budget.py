"""Tuning within a wall-clock budget (``convbench tune``): a database for this CPU that later compiles pick up.

MetaSchedule's budget is trials, not time, and a trial's cost varies with the task and the machine, so the budget
is spent in rounds: each round tunes every task a few more trials (``tune.tune`` into the same work database,
whose records the next round's evolutionary search starts from), each round after the first sized to what is left
of the budget by `next_round_trials`, until fewer than `MIN_TRIALS` per task would fit. The first
round also measures the hand-written schedules (`tune.HAND`), so a tuned record is only ever kept where it beats
them. At the end the best record of every task, tuned and hand-written, is measured again back to back and pruned
into the user database for this target and model (`user_path`: ``$XDG_CACHE_HOME/convbench/tvm/<target
key>/<model>/``), which `database.choose` prefers to the shipped one; the full work database stays beside it, so
a second ``convbench tune`` continues the search.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...ir.graph import Graph

UNITS = {"s": 1, "m": 60, "h": 3600}
clock = time.perf_counter  # the budget's clock, one name a test can replace without touching the time module
MIN_TRIALS = 2  # per task: a round smaller than this is mostly MetaSchedule's fixed cost of a round
# The share of a round's time that does not shrink with its trials: per task, the evolutionary search over the cost
# model and the builder's start, whatever the number of candidates measured. ResNet-50 b1 on 2 cores: 32 trials a
# task took 1030 s in one round, 16 a task 1003 s (MetaSchedule's log: search 467, build 395, run 115), 7 a task
# 843 s (440, 332, 49): about 790 s + 7.5 s per trial a task, so 77-79 % of a 16- or 32-trial round is fixed.
# Sizing the second round by time per trial alone (as if that share were 0) overran a 25-minute budget by 5.8 min.
FIXED_SHARE = 0.8


def parse_budget(text: str) -> float:
    """``"90s"``, ``"30m"``, ``"1.5h"`` or a number of seconds → seconds; ValueError naming the value."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"--budget {text!r}: give a positive duration such as 90s, 30m or 1h")
    return float(m.group(1)) * UNITS[m.group(2) or "s"]


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "convbench" / "tvm"


def user_path(target: dict[str, Any], model: str) -> Path:
    """Where ``convbench tune`` leaves a model's database for ``target``: what `database.choose` looks at first."""
    from .target import target_key

    return cache_root() / target_key(target) / model


@dataclass(frozen=True)
class Tuned:
    """What a budgeted tuning run did."""

    path: Path  # the pruned database later compiles use
    tasks: int
    rounds: int
    trials: int
    tuning_s: float
    seeded: int  # hand-written schedules measured in


def next_round_trials(last_s: float, last_per_task: int, left_s: float, cap: int) -> int:
    """Trials per task for the next round: as many as fit in ``left_s`` if a round costs a fixed part
    (`FIXED_SHARE` of the last one) plus the rest of the last one per trial, at most ``cap``; 0 where not even the
    fixed part fits."""
    fixed = FIXED_SHARE * last_s
    per_trial = (last_s - fixed) / max(last_per_task, 1)
    if left_s <= fixed or per_trial <= 0:
        return 0
    return min(cap, int((left_s - fixed) / per_trial))


def tune_within(graph: Graph, params: dict[str, Any], budget_s: float, *, threads: int | None = None,
                trials_per_round: int = 16, progress: Callable[[str], None] = print) -> Tuned:
    """Tune ``graph``'s TVM functions for this CPU for at most ``budget_s`` of wall time (the final re-measure and
    pruning come after it, and are reported), then prune the result into `user_path`."""
    from . import lower, tune
    from .compile import extract_tasks
    from .database import input_shape, workload_name
    from .target import set_threads, target_dict, target_key

    start = clock()
    threads = set_threads(threads)
    target = target_dict("cpu")
    mod = lower.lower(graph, params).mod
    dest = user_path(target, graph.name)
    work = dest.parent / "work" / workload_name(graph, "float32")  # every candidate measured: a rerun continues
    opened = tune.open_database(work, target, create=True)
    if opened.database is None:
        raise RuntimeError(f"cannot tune into {work}: {'; '.join(opened.warnings)}")
    n_tasks = len(extract_tasks(mod, target))
    done_by = time.strftime("%H:%M", time.localtime(time.time() + budget_s))
    progress(f"{workload_name(graph, 'float32')}: {n_tasks} tasks on {target_key(target)}, {threads} threads; "
             f"budget {budget_s / 60:.1f} min in rounds of {trials_per_round} trials per task (the hand-written "
             f"schedules measured first), done by {done_by} plus a re-measure of the best records; into {dest}")
    rounds = trials = seeded = 0
    per_task, last = trials_per_round, 0.0
    while True:
        left = budget_s - (clock() - start)
        if rounds:  # the last round sizes this one to what is left; too few trials: done
            per_task = next_round_trials(last, per_task, left, trials_per_round)
            if per_task < MIN_TRIALS:
                progress(f"stopping: {left / 60:.1f} min left, and a round costs about {FIXED_SHARE * last / 60:.1f} "
                         f"min before its trials (MetaSchedule's search per task); a longer --budget or a larger "
                         f"--trials-per-round spends more of it on trials")
                break
        t0 = clock()
        stats = tune.tune(mod, target, opened.database, work, trials=per_task * n_tasks,
                          trials_per_task=per_task, seed=len(opened.database),
                          hand_database=opened.hand if rounds == 0 else None)
        last = clock() - t0  # the first round's hand-written seeding counts, which is safe
        rounds, trials, seeded = rounds + 1, trials + stats["trials"], seeded + stats.get("seeded", 0)
        elapsed = clock() - start
        progress(f"round {rounds}: {stats['trials']} trials in {last:.0f} s; {trials} in all, "
                 f"{elapsed / 60:.1f} of {budget_s / 60:.1f} min")
        if stats["trials"] == 0:  # every task's search space is exhausted
            break
    tuning_s = clock() - start
    shape = input_shape(graph)
    done = tune.record_workload(work, target, graph.name, shape, tasks=n_tasks, trials=trials,
                                tuning_s=tuning_s, threads=threads)  # adds to an earlier run's totals
    so_far = next(w for w in done["workloads"] if w["input_shape"] == shape)
    progress(f"tuned {trials} trials in {tuning_s / 60:.1f} min; measuring each task's best records again")
    tune.prune(opened.database, dest, opened.hand, target)
    tune.record_workload(dest, target, graph.name, shape, accumulate=False, tasks=n_tasks,
                         trials=so_far["trials"], tuning_s=so_far["tuning_s"], threads=threads,
                         date=time.strftime("%Y-%m-%d"), command="convbench tune")
    return Tuned(dest, n_tasks, rounds, trials, tuning_s, seeded)
