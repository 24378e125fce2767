"""The tuning-curve study: a model compiled with the first k MetaSchedule trials of every task, for several k,
timed against torch eager and ONNX Runtime in the same process, same threads, in interleaved rounds (each
candidate's calls back to back after a pause, so no backend's spinning worker threads overlap another's calls).
Two TVM series: MetaSchedule alone (k = 0 is TVM's plain loops), and MetaSchedule seeded with the backend's
hand-written schedules (measured here and added to each truncated database, as ``tune=True`` does; k = 0 is the
hand-written schedules alone), whose database keeps, per task, the faster of the two.

    nice -n 19 python benchmarks/tvm_curve.py resnet18 --points 0,4,8,16,32,64 -o reports/tvm

It replays one tuning run (``benchmarks/tvm_tune.py``'s full database in ``--work``, every measured candidate in
measurement order): the database "after k trials per task" keeps the first k records of each task. Searches
that stopped at k would have measured the same first k candidates up to the cost model's shared state (one
XGBoost model learns from all tasks, so the order tasks were visited in matters a little). Tuning time is
known at the points where a tuning run stopped (``stages.jsonl``); in between it is left blank.
Writes ``tuning_curve_<model>_b<batch>.csv`` and ``.png`` under ``-o``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def truncated_database(work: Path, k: int, into: Path) -> tuple[Path, int]:
    """A copy of the database at ``work`` keeping the first ``k`` records of every workload; (path, records)."""
    from convbench.backends.tvm import tune as tvm_tune

    kept, seen = [], defaultdict(int)
    for line in (work / tvm_tune.RECORDS).read_text().splitlines():
        if line.strip():
            index = json.loads(line)[0]
            if seen[index] < k:
                seen[index] += 1
                kept.append(line)
    into.mkdir(parents=True, exist_ok=True)
    (into / tvm_tune.WORKLOADS).write_text((work / tvm_tune.WORKLOADS).read_text())
    (into / tvm_tune.RECORDS).write_text("".join(f"{line}\n" for line in kept))
    return into, len(kept)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--points", default="0,4,8,16,32,64", help="trials per task to compile with")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=3, help="timed calls per candidate per round (after one warm-up)")
    p.add_argument("--pause", type=float, default=0.5, help="seconds idle before each candidate's calls")
    p.add_argument("--work", type=Path, default=None)
    p.add_argument("-o", "--out", type=Path, default=ROOT / "reports" / "tvm")
    args = p.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # torch and ORT size their pools from these at load

    import numpy as np
    import pandas as pd

    import convbench as cb
    from convbench.backends.correctness import compare
    from convbench.backends.template import cast_params
    from convbench.backends.tvm import compile as tvm_compile
    from convbench.backends.tvm import lower as tvm_lower
    from convbench.backends.tvm import tune as tvm_tune
    from convbench.backends.tvm.target import set_threads, target_dict, target_key

    graph = cb.models.build(args.model, batch=args.batch, image_size=args.image_size)
    params = cb.models.init_params(graph, seed=0)
    x = np.random.default_rng(0).standard_normal(graph.inputs["input"].shape).astype(np.float32)
    ref = cb.backends.get("numpy").compile(graph, params, dtype="float64")(x.astype(np.float64))
    set_threads(args.threads)
    target = target_dict("cpu")
    work = args.work or ROOT / ".tvm_work" / target_key(target) / f"{args.model}-b{args.batch}-s{args.image_size}"
    stages = {}
    if (work / "stages.jsonl").exists():
        for line in (work / "stages.jsonl").read_text().splitlines():
            row = json.loads(line)
            stages[row["trials_per_task"]] = row["tuning_s_total"]

    lowered = tvm_lower.lower(graph, cast_params(graph, params, "float32"))
    rows, runs = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        # The hand-written schedules, measured once with MetaSchedule's builder and runner, as tune=True does.
        hand = tvm_tune.open_database(Path(tmp) / "hand-db", target, create=True).hand
        seeded = tvm_tune.seed(lowered.mod, target, hand, Path(tmp) / "seed-logs")
        print(f"measured {seeded} hand-written schedules", flush=True)
        for k in (int(v) for v in args.points.split(",")):
            # Two series: MetaSchedule alone (k = 0: TVM's plain loops), and MetaSchedule seeded with the
            # hand-written schedules, measured now and added to the first k records (k = 0: the hand schedules).
            for series in ("metaschedule", "seeded"):
                db, n = None, 0
                if k > 0:
                    path, n = truncated_database(work, k, Path(tmp) / f"{series}{k}")
                    opened = tvm_tune.open_database(path, target)
                    opened.hand = hand if series == "seeded" else None
                    db = opened.for_compile
                start = time.perf_counter()
                built = tvm_compile.build(lowered.mod, target, db, hand_schedules=series == "seeded")
                build_s = time.perf_counter() - start
                name = f"{series} k={k}"
                runs[name] = vm_runner(built.executable, x)
                rows.append({"candidate": name, "series": series, "trials_per_task": k, "trials": n,
                             "hand_records": seeded if series == "seeded" and k else 0, "hits": built.hits,
                             "tasks": built.tasks,
                             "hand_scheduled": sum(built.hand_scheduled.values()), "build_s": round(build_s, 2),
                             "tuning_s": stages.get(k)})
                print(f"{name}: {n} records, {built.hits}/{built.tasks} hits, "
                      f"built in {build_s:.1f} s", flush=True)
    peers = {"torch eager": ("torch", {"threads": args.threads}),
             "onnxruntime": ("onnxruntime", {"threads": args.threads})}
    for name, (backend, options) in peers.items():
        b = cb.backends.get(backend)
        if b.available()[0]:
            runs[name] = b.compile(graph, params, **options)
            rows.append({"candidate": name})

    errors = {name: compare(fn(x), ref, "float32").max_rel for name, fn in runs.items()}
    timings = time_rounds(runs, x, args.rounds, args.calls, args.pause)
    for row in rows:
        row.update(timings[row["candidate"]], max_rel_error=float(f"{errors[row['candidate']]:.3g}"))
    table = pd.DataFrame(rows)
    torch_ms = table.loc[table.candidate == "torch eager", "median_ms"]
    if len(torch_ms):
        table["vs_torch"] = (float(torch_ms.iloc[0]) / table["median_ms"]).round(3)  # > 1: faster than torch
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"tuning_curve_{args.model}_b{args.batch}"
    table.to_csv(stem.with_suffix(".csv"), index=False)
    print(table.to_string(index=False))
    plot(table, stem.with_suffix(".png"), f"{args.model}, batch {args.batch}, {args.image_size}², "
                                           f"{args.threads} threads, {target['mcpu']}")
    return 0


def time_rounds(runs: dict, x, rounds: int, calls: int, pause: float) -> dict[str, dict[str, float]]:
    """Median and quartiles (ms) of each candidate, timed in ``rounds`` rounds of ``calls`` calls each.

    Within a round each candidate's calls run back to back, after a pause and an untimed call: TVM's pool and
    torch's OpenMP threads spin for a while after a call, and on 2 cores a spinning neighbour slows whoever
    runs next. Rounds interleave the candidates, so drift in the machine's load spreads over all of them.
    """
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            time.sleep(pause)
            fn(x)
            for _ in range(calls):
                t0 = time.perf_counter()
                fn(x)
                samples[name].append(time.perf_counter() - t0)
    out = {}
    for name, s in samples.items():
        q = statistics.quantiles(s, n=4)
        out[name] = {"median_ms": round(statistics.median(s) * 1e3, 2), "q1_ms": round(q[0] * 1e3, 2),
                     "q3_ms": round(q[2] * 1e3, 2)}
    return out


def vm_runner(executable, x):
    import tvm
    from tvm import relax

    main = relax.VirtualMachine(executable, tvm.cpu(0))["main"]
    return lambda a: main(tvm.runtime.tensor(a)).numpy()


def plot(table, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    labels = {"metaschedule": "TVM + MetaSchedule, first k trials per task (k = 0: TVM's plain loops)",
              "seeded": "same, seeded with the hand-written schedules (k = 0: those alone)"}
    for series, label in labels.items():
        rows = table[table.series == series]
        ax.errorbar(rows.trials_per_task, rows.median_ms, yerr=[rows.median_ms - rows.q1_ms,
                                                                rows.q3_ms - rows.median_ms],
                    marker="o", capsize=3, label=label)
    peers = table[table.series.isna()]
    for (_, row), style in zip(peers.iterrows(), ("--", ":"), strict=False):
        ax.axhline(row.median_ms, linestyle=style, color="gray", label=f"{row.candidate} ({row.median_ms:.1f} ms)")
    ax.set_xscale("symlog", linthresh=4)
    points = sorted(table.trials_per_task.dropna().unique())
    ax.set_xticks(points, [f"{k:g}" for k in points])
    ax.minorticks_off()
    ax.set_yscale("log")
    ax.set_xlabel("tuning trials per task (0 = untuned)")
    ax.set_ylabel("latency, median (ms, log scale)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
