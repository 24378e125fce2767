"""``convbench run -m MODELS -b BACKENDS --batch 1,8 -o results.jsonl``: a benchmark sweep, one child process per
case, one JSONL line per case (see convbench.bench)."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

from .. import models
from ..backends.correctness import TOLERANCES
from ..bench import plugins
from ..bench.errors import BenchError
from ..bench.runner import MAX_GEMM_N, MAX_TIMEOUT_S, Sweep, default_threads, plan, run_sweep
from ..bench.schema import Case
from ..bench.specs import parse_image_sizes
from ..bench.stats import Policy
from ..cli import UsageError
from ._common import (
    MAX_THREADS,
    add_backend_module,
    add_int8_argument,
    add_workload_arguments,
    backends_arg,
    in_range,
    int8_arg,
    int_list,
    real_batch,
    split_list,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_workload_arguments(p, backends="all")
    p.add_argument("--threads", type=int, default=None, help="threads per case (default: physical cores)")
    add_int8_argument(p)
    p.add_argument("--mode", choices=("inference", "train"), default="inference",
                   help="train: time whole train steps (forward, loss, backward, SGD momentum 0.9, weight decay "
                        "1e-4) and check the first against the float64 reference trainer (bench/train_case.py)")
    p.add_argument("--scenario", choices=("latency", "throughput"),
                   help="latency: batch 1 only (report p90); throughput: only the largest --batch (images/s)")
    p.add_argument("-o", "--output", default=None,
                   help="JSONL file to append to (results.jsonl); with --cluster a directory (results/)")
    p.add_argument("--resume", action="store_true", help="complete an interrupted sweep: skip cases already there")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per case before it is killed (600)")
    p.add_argument("--min-time", type=float, default=None,
                   help="timed seconds per case at least (0.5, or --max-time if that is less)")
    p.add_argument("--max-time", type=float, default=5.0, help="timed seconds per case at most (5)")
    p.add_argument("--target-iqr", type=float, default=0.05, help="stop when IQR/median falls below this (0.05)")
    p.add_argument("--warmup", type=float, default=0.2, help="warm-up seconds per case, after ≥1 call (0.2)")
    p.add_argument("--time-interpreters", action="store_true",
                   help="time a backend that runs under an interpreter (Triton on a CPU); by default it is checked "
                        "with one call and not timed: its time is the interpreter's")
    p.add_argument("--no-skip-dominated", action="store_true",
                   help="run a case even when its backend already timed out on a workload with fewer FLOPs")
    add_backend_module(p)
    p.add_argument("--gemm-size", type=int, default=2048,
                   help="N of the N×N×N GEMM that calibrates the peak (2048); 0 skips the calibration")
    p.add_argument("--machine", default=None, help="machine label in the results (default: host name)")
    p.add_argument("--cluster", default=None, metavar="ADDRESS",
                   help="run on a Ray cluster (an address, or local:N for N local nodes): one case at a time per "
                        "node, -o a directory with one results file per machine (docs/cluster.md)")
    p.add_argument("--machines", default=None, help="with --cluster: only these machines (comma-separated names)")
    p.add_argument("--on", action="append", default=[], metavar="KEY=TEXT",
                   help="with --cluster: only machines whose tag KEY contains TEXT (gpu=H100, cpu=EPYC); repeatable")
    p.add_argument("--interleave", action="store_true",
                   help="one live worker per case of each workload group, timed in rounds in rotated order with an "
                        "idle gap; records per-round medians and load (bench/interleave.py)")
    p.add_argument("--rounds", type=int, default=10, help="with --interleave: rounds (10)")
    p.add_argument("--round-calls", type=int, default=5,
                   help="with --interleave: calls per case per round at most (5; fewer where --max-time over all "
                        "rounds would be exceeded)")
    p.add_argument("--round-gap", type=float, default=0.2, help="with --interleave: idle seconds before each (0.2)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")


def build_sweep(args: argparse.Namespace) -> Sweep:
    try:
        plugins.load_all(args.backend_module)
        model_names = split_list(args.models, models.names(), "model")
        backends = backends_arg(args.backends)
        batches = int_list(args.batch or real_batch(args.input), "--batch")
        if args.scenario == "latency":
            batches = [1]
        elif args.scenario == "throughput":
            batches = [max(batches)]
        dtypes = split_list(args.dtype, list(TOLERANCES), "dtype")
        if args.mode == "train" and args.input != "random":  # bench/train_case.py: one seeded batch with labels
            raise UsageError("--mode train runs on the seeded random batch; --input real is for inference")
        in_range(args.threads, "--threads", 1, MAX_THREADS)
        in_range(args.gemm_size, "--gemm-size", 0, MAX_GEMM_N)
        in_range(args.timeout, "--timeout", 0, MAX_TIMEOUT_S, open_low=True)
        for value, flag in ((args.min_time, "--min-time"), (args.max_time, "--max-time"), (args.warmup, "--warmup")):
            in_range(value, flag, 0, MAX_TIMEOUT_S)
        in_range(args.target_iqr, "--target-iqr", 0, 1, open_low=True)
        min_time = min(0.5, args.max_time) if args.min_time is None else args.min_time
        if not 0 <= min_time <= args.max_time:
            raise UsageError(f"need 0 ≤ --min-time ≤ --max-time, got {min_time:g} and {args.max_time:g}")
        policy = Policy(warmup_s=args.warmup, min_time_s=min_time, max_time_s=args.max_time,
                        target_iqr_rel=args.target_iqr, time_interpreted=args.time_interpreters)
        sizes = parse_image_sizes(args.image_size)
        int8 = int8_arg(args.int8, dtypes, args.dtype)
        cases = plan(model_names, backends, batches, dtypes, sizes, args.threads or default_threads(), args.input,
                     args.mode, int8)
    except (BenchError, ValueError) as e:
        raise UsageError(str(e)) from None
    output = Path(args.output or ("results" if getattr(args, "cluster", None) else "results.jsonl"))
    return Sweep(cases, output, policy, args.timeout, args.resume, args.overwrite,
                 tuple(args.backend_module), args.machine, args.gemm_size, not args.no_skip_dominated)


def run(args: argparse.Namespace) -> int:
    sweep = build_sweep(args)
    signal.signal(signal.SIGTERM, _interrupt)
    # Python leaves SIGINT ignored when it started ignored (a background job of a non-interactive shell, or a parent
    # that ignored it): Ctrl-C or `kill -INT` would then not stop the sweep, which must end, record and exit 130.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    progress = _Progress(quiet=args.quiet)
    try:
        with progress:  # the bar appears with the plan, after the output was checked and locked
            counts = _sweep(sweep, args, progress.event)
    except BenchError as e:
        raise UsageError(str(e)) from None
    except KeyboardInterrupt:
        print(f"convbench run: interrupted; {sweep.output} holds every finished case, "
              f"--resume completes the sweep", file=sys.stderr)
        return 130
    if not args.quiet:
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "nothing to do"
        print(f"convbench run: {summary}; results in {sweep.output}", file=sys.stderr)
    return 0


def _sweep(sweep: Sweep, args: argparse.Namespace, event: Any) -> dict[str, int]:
    if args.interleave:
        if args.cluster is not None:
            raise BenchError("--interleave runs on this machine; it does not combine with --cluster")
        from ..bench.interleave import Rounds, run_interleaved

        return run_interleaved(sweep, Rounds(args.rounds, args.round_calls, args.round_gap), event)
    if args.cluster is None:
        if args.machines or args.on:
            raise BenchError("--machines and --on select the nodes of a --cluster")
        return run_sweep(sweep, event)
    if args.machine:
        raise BenchError("--machine labels this one machine; on a --cluster each node is named by its "
                         "'convbench-machine' label (docs/cluster.md)")
    from ..bench.cluster import run_cluster  # imports Ray only when asked for

    def on_event(kind: str, case: Case | None, data: dict[str, Any] | None) -> None:
        if kind == "warning" and data:  # e.g. a node whose Ray memory monitor is on
            print(f"convbench run: warning: {data['message']}", file=sys.stderr)
        event(kind, case, data)

    return run_cluster(sweep, args.cluster, [m.strip() for m in (args.machines or "").split(",") if m.strip()],
                       args.on, on_event)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


class _Progress:
    """A rich progress bar on stderr and one line per finished case (stdout stays clean)."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> _Progress:
        return self

    def _start(self) -> None:
        """At the sweep's plan: an output that is refused fails before any bar is drawn."""
        if not self.quiet:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=Console(stderr=True))
            self.bar.__enter__()

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def event(self, kind: str, case: Case | None, data: dict[str, Any] | None) -> None:
        if kind == "plan" and self.bar is None:
            self._start()
        if self.bar is None:
            return
        if kind == "plan" and data:
            if data["done"]:
                self.bar.console.print(f"resuming: {data['done']} case(s) already done, {data['todo']} to run")
            self.task = self.bar.add_task("sweep", total=data["todo"])
        elif kind == "calibrate" and data:
            self.bar.update(self.task, description=f"calibrating GEMM peak ({data['dtype']}, {data['threads']} thr)")
        elif kind == "reference" and case is not None:
            self.bar.update(self.task, description=f"float64 reference {case.model}@{case.image_size} b{case.batch}")
        elif kind == "start" and case is not None:
            self.bar.update(self.task, description=case.id)
        elif kind == "round" and data:  # --interleave: the group's workers are set up, timing in rounds
            self.bar.update(self.task, description=f"round {data['round']}/{data['of']} of {data['group']}")
        elif kind == "done" and case is not None and data is not None:
            self.bar.console.print(_line(data))
            self.bar.advance(self.task)


def _line(r: dict[str, Any]) -> str:
    from rich.markup import escape  # messages quote code ("[1, 2]"): not markup

    if r["status"] != "ok":
        return f"[red]{r['status']:>11}[/] {escape(r['case_id'])}  {escape(r['message'][:160])}"
    # a train case's verdict is its first step against the float64 reference trainer
    t, verdict = r.get("timing"), (r.get("correctness") or (r.get("train") or {}).get("gradients") or {}).get("ok")
    correct = {True: "", False: "  [red]MISMATCH vs float64 reference[/]", None: "  (no reference)"}[verdict]
    if t is None:  # checked, not timed (an interpreter)
        return f"[green]{'ok':>11}[/] {escape(r['case_id'])}  {escape(r['message'])}{correct}"
    return (f"[green]{'ok':>11}[/] {escape(r['case_id'])}  median {t['median'] * 1e3:.3f} ms  "
            f"p90 {t['p90'] * 1e3:.3f} ms  {r['throughput_ips']:.1f} img/s  n={t['n']}{correct}")
