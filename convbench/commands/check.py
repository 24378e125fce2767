"""``convbench check -m MODELS -b BACKENDS [--dtype] [--int8] [--batch] [--image-size] [--input] [--json]``:
correctness against the NumPy reference in float64, one row per model × size × batch × backend × dtype (status, max
abs/rel error, top-1/top-5; an int8 row quantized with ``--int8``'s settings, as ``convbench run`` quantizes).
``--input real``: pretrained weights on the bundled photographs, plus top-1 against their labels, top-1 agreement
with the reference and softmax KL divergence.

Exit 0 when something ran and nothing failed; 1 when a case failed or errored, or when nothing ran at all (every
case skipped); 2 on bad arguments. A backend that is not available here, or does not support a dtype or an op, is
reported as skipped with its reason (``convbench run`` records the same cases as unsupported, with the same
reason), not failed.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .. import models
from ..backends import registry
from ..backends.base import unavailable_reason
from ..backends.correctness import TOLERANCES
from ..bench.errors import BenchError
from ..bench.workload import check_real_input
from ..cli import UsageError
from ..ir.autodiff import NoVjpError
from ..testing import CaseResult, model_case, run_case
from ..testing.train_check import run_train_case
from ._common import (
    add_backend_module,
    add_int8_argument,
    add_workload_arguments,
    backends_arg,
    image_sizes_arg,
    int8_arg,
    int_list,
    print_json,
    print_table,
    real_batch,
    split_list,
)
from .backends import load_backend_modules


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_workload_arguments(p, backends=None)
    add_int8_argument(p)
    p.add_argument("--mode", choices=("inference", "train"), default="inference",
                   help="train: one SGD step (loss, every gradient, every parameter after it) against the float64 "
                        "reference trainer (convbench/testing/train_check.py)")
    p.add_argument("--json", action="store_true", help="print a JSON document instead of a table")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-case progress on stderr")
    add_backend_module(p)


def run(args: argparse.Namespace) -> int:
    load_backend_modules(args.backend_module)
    model_names = split_list(args.models, models.names(), "model")
    backends = backends_arg(args.backends, {"dtype": "give it with --dtype"})  # threads: not an axis of check
    dtypes = split_list(args.dtype, list(TOLERANCES), "dtype")
    batches = int_list(args.batch or real_batch(args.input), "--batch")
    sizes = image_sizes_arg(args.image_size, model_names)  # all bad input is reported before any work
    int8 = int8_arg(args.int8, dtypes, args.dtype)
    if args.input == "real":
        for model in model_names:
            for batch in batches:
                try:
                    check_real_input(model, batch)
                except BenchError as e:
                    raise UsageError(str(e)) from None
    rows: list[dict[str, Any]] = []
    for model in model_names:  # model-major: the reference is computed once per model, size and batch
        for size in sizes[model]:
            for batch in batches:
                # as `convbench run` plans: only the int8 rows carry --int8 (in their id), on the same arrays
                cases = {d: model_case(model, batch, size, **({} if args.input == "random" else {"input": args.input}),
                                       **({"int8": int8} if d == "int8" and int8 else {})) for d in dtypes}
                for spec in backends:
                    for dtype in dtypes:
                        r = (_run_train(spec.name, model, batch, size, dtype, spec.options) if args.mode == "train"
                             else _run(spec.name, cases[dtype], dtype, spec.options))
                        rows.append({**r.to_dict(), "model": model, "batch": batch, "image_size": size,
                                     "backend": spec.label, **({"int8": int8} if dtype == "int8" and int8 else {})})
                        if not (args.quiet or args.json):
                            print(f"{r.case_id} {spec.label} {dtype}: {r.status} ({r.seconds:.1f} s)",
                                  file=sys.stderr)
    bad = [r for r in rows if r["status"] in ("fail", "error")]
    if args.json:
        print_json(rows)
    else:
        print_table([_table_row(r, int8) for r in rows])
        notes = [r for r in rows if r["status"] != "pass"]
        for r in notes:
            print(f"\n{r['case_id']} {r['backend']} {r['dtype']} [{r['status']}]: {r['message']}")
        counts = {s: sum(r["status"] == s for r in rows) for s in ("pass", "fail", "error", "skip")}
        print("\n" + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    if all(r["status"] == "skip" for r in rows):  # a check that checked nothing is not a success
        print(f"convbench check: nothing ran: all {len(rows)} case(s) were skipped (reasons above)", file=sys.stderr)
        return 1
    return 1 if bad else 0


def _run(name: str, case: Any, dtype: str, options: dict[str, Any]) -> CaseResult:
    try:
        backend = registry.get(name)
        why = unavailable_reason(backend, dtype)  # the words `convbench run` records for the same case
    except Exception as e:  # a third-party backend that does not import is an error of that row, not a crash
        return CaseResult(case.id, name, dtype, "error", message=f"backend {name!r} failed to load: "
                                                                 f"{type(e).__name__}: {e}")
    if why:
        return CaseResult(case.id, name, dtype, "skip", message=why)
    return run_case(backend, case, dtype, **options)


def _run_train(name: str, model: str, batch: int, size: int, dtype: str, options: dict[str, Any]) -> CaseResult:
    try:
        return run_train_case(registry.get(name), model, batch, size, dtype, **options)
    except NoVjpError as e:  # the model cannot be differentiated: bad input, one error naming node and op
        raise UsageError(str(e)) from None


def _table_row(r: dict[str, Any], int8: str) -> dict[str, Any]:
    """``int8``: --int8 as parsed; given, the table has a column saying which rows it quantized."""
    a = r["agreement"] or {}

    def num(key: str, fmt: str) -> str:
        return format(a[key], fmt) if a.get(key) is not None else "-"

    return {"model": r["model"], "batch": r["batch"], "size": r["image_size"], "backend": r["backend"],
            "dtype": r["dtype"], **({"int8": r.get("int8") or "-"} if int8 else {}), "status": r["status"],
            "max abs err": num("max_abs", ".3g"), "max rel err": num("max_rel", ".3g"), "bound": num("bound", ".3g"),
            "top-1": num("top1", ".2f"), "top-5": num("top5", ".2f"), **_accuracy_cells(r.get("accuracy")),
            "seconds": f"{r['seconds']:.1f}"}


def _accuracy_cells(acc: dict[str, Any] | None) -> dict[str, str]:
    """Real input only: top-1 against the photographs' labels, agreement with the reference, softmax KL."""
    if acc is None:
        return {}
    labelled = "-" if acc["top1"] is None else f"{acc['top1']:.2f}"
    return {"top-1 labels": labelled, "top-1 agree": f"{acc['top1_agreement']:.2f}", "KL": f"{acc['kl']:.2g}"}
