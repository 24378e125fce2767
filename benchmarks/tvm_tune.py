"""Tune a zoo model with MetaSchedule, measure it, and (``--ship``) add its best schedules to the shipped database.

    nohup nice -n 19 .venv/bin/python benchmarks/tvm_tune.py resnet18 --trials-per-task 64 --ship \\
        > .tvm_work/resnet18.log 2>&1 &

The full database (every measured candidate, in measurement order: what the tuning-curve study replays) goes
to ``--work`` (default ``.tvm_work/<target key>/<model>-b<batch>-s<size>``, git-ignored); ``--ship`` prunes it
to the best record per task under ``backends/tvm/data/<target key>/<model>/`` and records in its manifest.json
the trials, the tuning time and this command. Tuning more into an existing work directory continues the search.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--trials-per-task", type=int, default=64,
                   help="trials per task (with --trials: the cap per task; 0: measure the hand-written "
                        "schedules only)")
    p.add_argument("--trials", type=int, default=None,
                   help="total budget shared by MetaSchedule's gradient scheduler, which spends it where the "
                        "estimated latency gain is largest (default: trials per task × tasks, evenly)")
    p.add_argument("--trials-per-iter", type=int, default=64,
                   help="candidates measured per search round (smaller: finer tuning-curve points, more overhead)")
    p.add_argument("--threads", type=int, default=2, help="TVM threads, also while measuring candidates")
    p.add_argument("--seed", type=int, default=None,
                   help="search seed (default: the number of records already in --work, so a continued run "
                        "does not replay the first one's random samples)")
    p.add_argument("--work", type=Path, default=None)
    p.add_argument("--ship", action="store_true", help="add the best schedules to the shipped database")
    p.add_argument("--no-hand", action="store_true",
                   help="do not measure the hand-written schedules into <work>/hand (MetaSchedule alone)")
    args = p.parse_args(argv)

    import convbench as cb
    from convbench.backends.template import cast_params
    from convbench.backends.tvm import compile as tvm_compile
    from convbench.backends.tvm import lower as tvm_lower
    from convbench.backends.tvm import tune as tvm_tune
    from convbench.backends.tvm.target import set_threads, target_dict, target_key

    graph = cb.models.build(args.model, batch=args.batch, image_size=args.image_size)
    params = cast_params(graph, cb.models.init_params(graph, seed=0), "float32")
    set_threads(args.threads)
    target = target_dict("cpu")
    work = args.work or ROOT / ".tvm_work" / target_key(target) / f"{args.model}-b{args.batch}-s{args.image_size}"
    print(f"tuning {args.model} b{args.batch} s{args.image_size} on {target} with {args.threads} threads, "
          f"{args.trials_per_task} trials per task, into {work}", flush=True)

    lowered = tvm_lower.lower(graph, params)
    opened = tvm_tune.open_database(work, target, create=True)
    if opened.database is None:
        print("; ".join(opened.warnings), file=sys.stderr)
        return 1
    shape = [list(t.shape) for t in graph.inputs.values()]
    before = next((w for w in opened.manifest.get("workloads", []) if w.get("input_shape") == shape), None)
    seed = args.seed if args.seed is not None else len(opened.database)
    stats = tvm_tune.tune(lowered.mod, target, opened.database, work, trials=args.trials,
                          trials_per_task=args.trials_per_task, trials_per_iter=args.trials_per_iter, seed=seed,
                          hand_database=None if args.no_hand else opened.hand)
    print(f"tuned {stats['tasks']} tasks, {stats['trials']} trials in {stats['tuning_s']:.0f} s", flush=True)
    # With a shared budget, tasks get different numbers of trials: record the mean per task.
    per_task = args.trials_per_task if args.trials is None else round(stats["trials"] / stats["tasks"], 1)
    done = tvm_tune.record_workload(work, target, graph.name, shape, tasks=stats["tasks"], trials=stats["trials"],
                                    trials_per_task=per_task, tuning_s=stats["tuning_s"], threads=args.threads)
    so_far = next(w for w in done["workloads"] if w["input_shape"] == shape)  # this run and earlier ones

    start = time.perf_counter()
    built = tvm_compile.build(lowered.mod, target, opened.for_compile)
    build_s = time.perf_counter() - start
    latency_ms = measure(built.executable, graph)
    print(f"compile with the database: {build_s:.1f} s, {built.hits}/{built.tasks} tasks hit; "
          f"latency {latency_ms:.2f} ms (median)", flush=True)
    stages = work / "stages.jsonl"  # one line per run: the tuning-curve study's time axis
    if not stages.exists() and before is not None:  # runs from before this log existed: their totals only
        append_json(stages, {"trials_per_task": before["trials_per_task"], "trials": before["trials"],
                             "tuning_s_total": before["tuning_s"]})
    append_json(stages, {"trials_per_task": so_far["trials_per_task"], "trials": so_far["trials"],
                         "tuning_s": round(stats["tuning_s"], 1), "tuning_s_total": so_far["tuning_s"],
                         "hits": built.hits, "tasks": built.tasks, "build_s": round(build_s, 1),
                         "latency_ms": round(latency_ms, 2), "seed": seed,
                         "date": datetime.datetime.now().isoformat(timespec="seconds")})

    if args.ship:
        ship = tvm_tune.shipped_path(target, graph.name)
        tvm_tune.prune(opened.database, ship, opened.hand, target)  # both measured again, back to back
        manifest = tvm_tune.record_workload(
            ship, target, graph.name, shape, accumulate=False, tasks=stats["tasks"], trials=so_far["trials"],
            trials_per_task=so_far["trials_per_task"], tuning_s=so_far["tuning_s"], threads=args.threads,
            seed=seed, latency_ms=round(latency_ms, 2),
            date=datetime.date.today().isoformat(),
            command="nice -n 19 python benchmarks/tvm_tune.py " + shlex.join(argv or sys.argv[1:]),
            work_dir=str(work.relative_to(ROOT)) if work.is_relative_to(ROOT) else str(work))
        print(f"shipped to {ship}:\n{json.dumps(manifest, indent=2)}")
    return 0


def append_json(path: Path, row: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")


def measure(executable: object, graph: object, repeats: int = 10) -> float:
    """Median latency in ms of ``repeats`` runs after one warm-up, on a fixed random input."""
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(executable, tvm.cpu(0))
    shape = next(iter(graph.inputs.values())).shape  # type: ignore[attr-defined]
    x = tvm.runtime.tensor(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    vm["main"](x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        vm["main"](x)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


if __name__ == "__main__":
    sys.exit(main())
