"""The precision matrix: every backend × precision, ResNet-50 and EfficientNet-Lite0 at batch 1 and 8, in ONE harness
sweep (`bench.runner.run_sweep`: one isolated child per case, the JSONL records of ``convbench run``), then a summary
per model and batch: each cell's median latency, its speed-up over the same backend's float32, and its time next to
OpenVINO's at the same precision (> 1: slower than OpenVINO).

Precisions per backend: torch, onnxruntime, tvm and triton take them as ``dtype`` (float32, bfloat16, float16,
int8: the harness quantizes the graph for int8 and the backend runs its QDQ graph; a cell a backend cannot run is
recorded ``unsupported`` with its reason, never a float32 run); OpenVINO takes them as its ``precision`` option
(f32, bf16, f16 at dtype float32) and int8 as dtype int8. Random input (ResNet-50 has no shipped weights and batch 8
is more than the labelled photographs): the accuracy of each precision is judged on the real network by
tests/test_precision_real.py, not here.

On a quiet machine, 2 threads (one sweep, 80 cases; torch:compile=true compiles ~1 min a case):

    .venv/bin/python benchmarks/precision_matrix.py -o results/precision.jsonl --threads 2
    .venv/bin/python benchmarks/precision_matrix.py --summary results/precision.jsonl   # the tables again

A quick check that it runs (a tiny model, small inputs, short timing):

    .venv/bin/python benchmarks/precision_matrix.py -o /tmp/pm.jsonl --overwrite --models lenet5 --batches 1 \\
        --image-size small --max-time 0.2 --gemm-size 0 --backends torch,openvino
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence
from pathlib import Path

from convbench.backends.openvino import DTYPE_PRECISION
from convbench.bench.interleave import round_ratios
from convbench.bench.record import Record, load_records
from convbench.bench.runner import Sweep, plan, run_sweep
from convbench.bench.stats import Policy

MODELS = ("resnet50", "efficientnet_lite0")
BATCHES = (1, 8)
PRECISIONS = ("float32", "bfloat16", "float16", "int8")
# int8: onednn runs convs, residual adds, pools and pads on the codes (backends/onednn/quant_rules.py); torch
# eagerly runs its convs as oneDNN u8×s8 calls (backends/torch/quant_rules.py), the rest as exact fake-quant
# arithmetic; torch:compile=true is inductor's oneDNN u8×s8 kernels for the linears too.
# triton: add it on a GPU (its CPU interpreter is no timing)
DTYPE_BACKENDS = ("onednn", "torch", "torch:compile=true", "onnxruntime", "tvm")
# precision -> OpenVINO's precision option: the backend's own table (int8 is a dtype there, not an option)
OPENVINO = {"float32": "f32", **{k: v for k, v in DTYPE_PRECISION.items() if k != "int8"}}


def cases(models: Sequence[str], batches: Sequence[int], backends: Sequence[str], threads: int,
          image_sizes: Sequence[str]) -> list:
    """The sweep's cases: each dtype backend at every precision, OpenVINO's precisions as its option."""
    out = []
    for b in backends:
        if b.split(":")[0] == "openvino":
            for option in OPENVINO.values():
                out += plan(models, [f"{b}:precision={option}"], batches, ["float32"], image_sizes, threads)
            out += plan(models, [b], batches, ["int8"], image_sizes, threads)
        else:
            out += plan(models, [b], batches, PRECISIONS, image_sizes, threads)
    return out


def precision_of(r: Record) -> str:
    """A record's precision: OpenVINO's option where it set one, else the case's dtype."""
    option = r.case.options.get("precision")
    by_option = {v: k for k, v in OPENVINO.items()}
    return by_option.get(option, r.case.dtype) if r.case.dtype == "float32" else r.case.dtype


def backend_of(r: Record) -> str:
    """The backend label without OpenVINO's precision (one row per backend configuration)."""
    return ":".join(p for p in r.case.backend.split(":") if not p.startswith("precision="))


def vs_openvino(r: Record, ov: Record) -> str:
    """``r``'s time over OpenVINO's at the same precision: round by round where both ran interleaved in one group
    (``convbench run --interleave``: the median ratio, min–max over the rounds), else the ratio of the medians."""
    a, b = r.interleave, ov.interleave
    if a is not None and b is not None and a.group == b.group and (ratios := round_ratios(a, b)):
        return f" {statistics.median(ratios):.2f}ov({min(ratios):.2f}–{max(ratios):.2f})"
    return f" {r.median_s / ov.median_s:.2f}ov"


def summary(records: Sequence[Record]) -> str:
    """One table per (model, image size, batch): rows backend, columns precision; a cell is median ms, × over the
    backend's own float32, and × OpenVINO's time at that precision (`vs_openvino`); other statuses print as the
    status."""
    lines = []
    groups = sorted({(r.case.model, r.case.image_size, r.case.batch) for r in records})
    for model, size, batch in groups:
        rows = [r for r in records if (r.case.model, r.case.image_size, r.case.batch) == (model, size, batch)]
        cell = {(backend_of(r), precision_of(r)): r for r in rows}
        threads = sorted({r.case.threads for r in rows})
        lines.append(f"\n{model} {size}px batch {batch}, threads {','.join(map(str, threads))}: median ms, "
                     f"speed-up over the backend's float32 (↑), time / OpenVINO's at the precision (ov)")
        lines.append(f"  {'backend':24s}" + "".join(f"{p:>34s}" for p in PRECISIONS))
        ov = {p: cell.get(("openvino", p)) for p in PRECISIONS}
        for backend in sorted({b for b, _ in cell}):
            base = cell.get((backend, "float32"))
            texts = []
            for p in PRECISIONS:
                r = cell.get((backend, p))
                if r is None:
                    texts.append("—")
                elif r.median_s is None:
                    texts.append(r.status)
                else:
                    up = f" {base.median_s / r.median_s:.2f}↑" if base is not None and base.median_s else ""
                    vs = (vs_openvino(r, ov[p]) if ov[p] is not None and ov[p].median_s
                          and backend != "openvino" else "")
                    wrong = "" if r.correct is not False else " WRONG"
                    texts.append(f"{1e3 * r.median_s:.2f}{up}{vs}{wrong}")
            lines.append(f"  {backend:24s}" + "".join(f"{t:>34s}" for t in texts))
        notes = {f"{backend_of(r)} {precision_of(r)}: {r.message}" for r in rows
                 if r.status != "ok" and r.message}
        lines += [f"    {n}" for n in sorted(notes)]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", type=Path, help="JSONL results file of the sweep")
    ap.add_argument("--summary", type=Path, help="print the tables of an existing results file, run nothing")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--batches", default=",".join(map(str, BATCHES)))
    ap.add_argument("--backends", default=",".join((*DTYPE_BACKENDS, "openvino")),
                    help="comma-separated backend specs (NAME:KEY=VALUE…); openvino gets its precisions as options")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--image-size", default="full", help="full, small, or pixels")
    ap.add_argument("--min-time", type=float, default=0.5)
    ap.add_argument("--max-time", type=float, default=5.0)
    ap.add_argument("--gemm-size", type=int, default=2048, help="GEMM calibration size (0: none, a quick check)")
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()
    if args.summary:
        print(summary(load_records(args.summary)))
        return
    if args.output is None:
        ap.error("give -o FILE to run the sweep, or --summary FILE")
    todo = cases(args.models.split(","), [int(b) for b in args.batches.split(",")], args.backends.split(","),
                 args.threads, [args.image_size])
    policy = Policy(min_time_s=min(args.min_time, args.max_time), max_time_s=args.max_time)
    sweep = Sweep(todo, args.output, policy, resume=args.resume, overwrite=args.overwrite, gemm_n=args.gemm_size)
    counts = run_sweep(sweep,
                       lambda kind, case, info: print(f"{kind:9s} {case.id if case else ''} "
                                                      f"{info.get('status', '') if kind == 'done' else ''}",
                                                      flush=True) if kind in ("done", "plan") else None)
    print("statuses:", counts)
    print(summary(load_records(args.output)))


if __name__ == "__main__":
    main()
