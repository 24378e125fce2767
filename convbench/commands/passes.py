"""``convbench passes -m MODELS -b BACKENDS``: the pass ablation study — per model × backend × pipeline, node
count, FLOPs, activation memory (naive sum, liveness peak, planned arena) and the measured latency and speed-up
over the ``none`` pipeline (paired timing by default, or the sweep harness); written to ``-o DIR`` as report.md
with two plots."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from .. import models
from ..bench import ablation, machine
from ..bench.ablation_paired import PairedPolicy, read_paired, run_paired
from ..bench.errors import BenchError
from ..bench.output import write_atomic
from ..bench.runner import MAX_GEMM_N, MAX_TIMEOUT_S, Sweep, default_threads, run_sweep
from ..bench.schema import scan
from ..bench.specs import parse_image_sizes
from ..bench.stats import Policy
from ..cli import UsageError
from ..ir.passes import PIPELINES, resolve
from ._common import (
    MAX_THREADS,
    add_workload_arguments,
    backends_arg,
    image_sizes_arg,
    in_range,
    print_json,
    print_table,
    split_list,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_workload_arguments(p, backends="numpy", batches=False, dtypes=False)
    p.add_argument("-p", "--pipelines", default="none,default,all",
                   help=f"comma-separated pipelines ({', '.join(PIPELINES)}) or pass lists joined by '+', "
                        "e.g. fold_batch_norm+fuse (default none,default,all; 'none' is the baseline and is "
                        "always included)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("-o", "--output", default="reports/passes", help="report directory (default reports/passes)")
    p.add_argument("--timing", choices=("paired", "sweep", "none"), default="paired",
                   help="paired (default): all pipelines of a model × backend in one process, called in rotation; "
                        "sweep: the harness's cases in --rounds rounds; none: static columns only")
    p.add_argument("--rounds", type=int, default=3,
                   help="--timing sweep: run the sweep this many times, each round every pipeline back to back; "
                        "speed-ups are taken within a round, then the median over rounds (default 3)")
    p.add_argument("--resume", action="store_true",
                   help="keep what OUTPUT already holds: paired rows of OUTPUT/paired.jsonl (a model × backend whose "
                        "pipelines all ran ok is not timed again), sweep cases of OUTPUT/ablation-round*.jsonl")
    p.add_argument("--note", action="append", default=[], help="a line for the report's notes; repeatable")
    p.add_argument("--threads", type=int, default=None, help="threads per case (default: physical cores)")
    p.add_argument("--min-time", type=float, default=None,
                   help="timed seconds at least: per model × backend when paired (2), per case in a sweep (0.5)")
    p.add_argument("--max-time", type=float, default=None,
                   help="timed seconds at most: per model × backend when paired (20), per case in a sweep (5)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per case before it is killed (600)")
    p.add_argument("--gemm-size", type=int, default=2048, help="N of the GEMM that calibrates the peak (2048)")
    p.add_argument("--title", default="convbench: what each pass buys", help="report title")
    p.add_argument("--json", action="store_true", help="print the table as JSON instead of text")
    p.add_argument("--train", action="store_true",
                   help="also each pass of the last --pipelines entry on every model's train step, per backend: "
                        "whether it still applies in train mode (section 'Passes in train mode')")


def _pipelines(value: str) -> list[str]:
    names = [ablation.BASELINE]
    for item in (v.strip() for v in value.split(",") if v.strip()):
        try:
            name = resolve(item)[0]
        except Exception as e:
            raise UsageError(str(e)) from None
        if name not in names:
            names.append(name)
    return names


AXES = {"dtype": "the pass study measures float32", "threads": "give it with --threads"}


def _backends(value: str) -> list[str]:
    """``-b`` as every command parses it; a pipeline is this command's own axis, not a backend option."""
    specs = backends_arg(value, AXES)
    for spec in specs:
        if "passes" in spec.options:
            raise UsageError(f"backend {spec.label!r}: give pipelines with --pipelines, not as a backend option")
    return [spec.label for spec in specs]


def run(args: argparse.Namespace) -> int:
    model_names = split_list(args.models, models.names(), "model")
    backends, pipelines = _backends(args.backends), _pipelines(args.pipelines)
    out = Path(args.output)
    sizes = image_sizes_arg(args.image_size, model_names)
    in_range(args.batch, "--batch", 1)
    in_range(args.rounds, "--rounds", 1, 1000)
    in_range(args.threads, "--threads", 1, MAX_THREADS)
    in_range(args.timeout, "--timeout", 0, MAX_TIMEOUT_S, open_low=True)
    in_range(args.gemm_size, "--gemm-size", 0, MAX_GEMM_N)
    in_range(args.min_time, "--min-time", 0, MAX_TIMEOUT_S)
    in_range(args.max_time, "--max-time", 0, MAX_TIMEOUT_S)
    paired = args.timing == "paired"
    min_time = args.min_time if args.min_time is not None else (2.0 if paired else 0.5)
    max_time = args.max_time if args.max_time is not None else (20.0 if paired else 5.0)
    if not 0 <= min_time <= max_time:
        raise UsageError(f"need 0 ≤ --min-time ≤ --max-time, got {min_time} and {max_time}")
    done = _resumed(out, args) if args.resume else {}  # what --resume keeps is checked before any work

    static, per_pass = [], []
    for model in model_names:
        for size in sizes[model]:
            print(f"convbench passes: static figures of {model}@{size}", file=sys.stderr)
            for backend in backends:
                static += [ablation.static_row(model, size, args.batch, backend, p) for p in pipelines]
            per_pass += ablation.pass_rows(model, size, args.batch, backends[0])
    timed, results = None, []
    threads = args.threads or default_threads()
    if args.timing == "paired":
        policy = PairedPolicy(min_time_s=min_time, max_time_s=max_time)
        path, rows = out / "paired.jsonl", []
        label = machine.label(machine.fingerprint())
        for model in model_names:
            for size in sizes[model]:
                for backend in backends:
                    key = (model, size, args.batch, backend, threads)
                    if all((*key, p) in done for p in pipelines):
                        rows += [done[(*key, p)] for p in pipelines]
                        continue
                    print(f"convbench passes: timing {model}@{size} on {backend} ({len(pipelines)} pipelines, "
                          f"paired)", file=sys.stderr)
                    rows += [{**r, "machine": label, "threads": threads} for r in
                             run_paired(model, size, args.batch, backend, pipelines, threads, policy, args.timeout)]
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))  # a crash never leaves half a file
        timed, results = pd.DataFrame(rows).rename(columns={"cycles": "samples"}), ["paired.jsonl"]
    elif args.timing == "sweep":
        paths = [out / f"ablation-round{k + 1}.jsonl" for k in range(args.rounds)]
        try:
            cases = ablation.cases(model_names, backends, pipelines, args.batch, parse_image_sizes(args.image_size),
                                   threads)
            policy = Policy(min_time_s=min_time, max_time_s=max_time)
            for k, path in enumerate(paths):
                print(f"convbench passes: round {k + 1} of {args.rounds}: {len(cases)} cases", file=sys.stderr)
                sweep = Sweep(cases, path, policy, args.timeout, resume=args.resume, overwrite=not args.resume,
                              gemm_n=args.gemm_size)
                run_sweep(sweep, _progress)
        except BenchError as e:
            raise UsageError(str(e)) from None
        timed, results = ablation.measured(paths), [p.name for p in paths]
    table = ablation.ablation_table(pd.DataFrame(static), timed)
    train = _train_rows(model_names, sizes, args.batch, backends, pipelines[-1]) if args.train else None
    report = ablation.write_report(table, pd.DataFrame(per_pass), out, args.title,
                                   notes=args.note, results=results,
                                   timing=None if args.timing == "none" else args.timing, train=train)
    if args.json:
        print_json(table.to_dict(orient="records"))
    else:
        print_table(ablation.display(table).to_dict(orient="records"))
        if train is not None:
            print("\npasses in train mode:")
            print_table(train.to_dict(orient="records"))
        print(f"\nreport: {report}")
    return 0


def _train_rows(model_names: list[str], sizes: dict[str, list[int]], batch: int, backends: list[str],
                pipeline: str) -> pd.DataFrame:
    """``--train``: each pass of ``pipeline`` on each model's train step, per backend (bench/ablation_train.py)."""
    from ..bench.ablation_train import train_pass_rows, train_table

    rows = []
    for model in model_names:
        for size in sizes[model]:
            for backend in backends:
                print(f"convbench passes: {pipeline} on the train step of {model}@{size}, {backend}", file=sys.stderr)
                rows += train_pass_rows(model, size, batch, backend, pipeline)
    return train_table(rows)


def _resumed(out: Path, args: argparse.Namespace) -> dict[tuple, dict]:
    """``--resume``: the paired rows kept, or the sweep rounds' files checked; `UsageError` names a bad line."""
    try:
        if args.timing == "paired":
            return _paired_done(out / "paired.jsonl")
        for k in range(args.rounds if args.timing == "sweep" else 0):
            if (out / f"ablation-round{k + 1}.jsonl").exists():
                scan(out / f"ablation-round{k + 1}.jsonl")
    except BenchError as e:
        raise UsageError(str(e)) from None
    return {}


def _paired_done(path: Path) -> dict[tuple, dict]:
    """Rows of an earlier paired run that ended ok, by (model, size, batch, backend, threads, pipeline)."""
    if not path.exists():
        return {}
    rows = read_paired(path)
    return {(r["model"], r["image_size"], r["batch"], r["backend"], r.get("threads"), r["pipeline"]): r
            for r in rows if r.get("status") == "ok"}


def _progress(kind: str, case, record) -> None:
    if kind == "done" and case is not None and record is not None:
        median = (record.get("timing") or {}).get("median")
        took = f"{median * 1e3:.2f} ms" if median else record.get("message", "")[:100]
        print(f"convbench passes: {case.id}: {record['status']} {took}", file=sys.stderr)
