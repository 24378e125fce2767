"""``convbench check -m MODELS -b BACKENDS [--dtype] [--batch] [--image-size] [--json]``: correctness against the
NumPy reference in float64, one row per model × backend × dtype (status, max abs/rel error, top-1/top-5).

Exit 0 when nothing failed; 1 when a case failed or errored; 2 on bad arguments. A backend that is not
available here, or does not support a dtype or an op, is reported as skipped with its reason, not failed.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .. import models
from ..backends import registry
from ..backends.correctness import TOLERANCES
from ..cli import UsageError
from ..testing import CaseResult, model_case, run_case
from ._common import int_list, print_json, print_table, split_list
from .backends import load_backend_modules


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--models", required=True, help="comma-separated zoo names, or 'all'")
    p.add_argument("-b", "--backends", required=True,
                   help="comma-separated backends, each optionally NAME:KEY=VALUE… (e.g. torch:channels_last=false)"
                        ", or 'all'")
    p.add_argument("--dtype", default="float32", help=f"comma-separated dtypes ({', '.join(TOLERANCES)})")
    p.add_argument("--batch", default="1", help="comma-separated batch sizes (default 1)")
    p.add_argument("--image-size", default="full",
                   help="'full' (each model's own, default), 'small' (reduced, quick) or an integer")
    p.add_argument("--json", action="store_true", help="print a JSON document instead of a table")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-case progress on stderr")
    p.add_argument("--backend-module", action="append", default=[], metavar="MODULE_OR_FILE",
                   help="import this module (dotted name or .py file) to register extra backends; repeatable")


def parse_backends(value: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, name, options) per ``-b`` item; names are checked against the registry."""
    from ..bench.errors import BenchError
    from ..bench.schema import parse_backend_spec

    known = registry.names()
    if value.strip() == "all":
        return [(n, n, {}) for n in known]
    specs = [v.strip() for v in value.split(",") if v.strip()]
    if not specs:
        raise UsageError(f"no backend given in {value!r}; known backends: {', '.join(known)} (or 'all')")
    out = []
    for spec in specs:
        try:
            name, options = parse_backend_spec(spec)
        except BenchError as e:
            raise UsageError(str(e)) from None
        if name not in known:
            raise UsageError(f"unknown backend {name!r}; known backends: {', '.join(known)} (or 'all')")
        out.append((spec, name, options))
    return out


def image_size(value: str, model: str) -> int:
    spec = models.spec(model)
    if value in ("full", "small"):
        return spec.image_size if value == "full" else spec.small_image_size
    try:
        size = int(value)
    except ValueError:
        raise UsageError(f"--image-size must be 'full', 'small' or an integer, got {value!r}") from None
    if size < spec.min_image_size:
        raise UsageError(f"--image-size {size} is below {model}'s minimum {spec.min_image_size}")
    return size


def run(args: argparse.Namespace) -> int:
    load_backend_modules(args.backend_module)
    model_names = split_list(args.models, models.names(), "model")
    backends = parse_backends(args.backends)
    dtypes = split_list(args.dtype, list(TOLERANCES), "dtype")
    batches = int_list(args.batch, "--batch")
    sizes = {m: image_size(args.image_size, m) for m in model_names}  # all bad input is reported before any work
    rows: list[dict[str, Any]] = []
    for model in model_names:  # model-major: the reference is computed once per model and batch
        for batch in batches:
            case = model_case(model, batch, sizes[model])
            for label, name, options in backends:
                for dtype in dtypes:
                    r = _run(name, case, dtype, options)
                    row = {**r.to_dict(), "model": model, "batch": batch, "image_size": sizes[model],
                           "backend": label}
                    rows.append(row)
                    if not (args.quiet or args.json):
                        print(f"{case.id} {label} {dtype}: {r.status} ({r.seconds:.1f} s)", file=sys.stderr)
    bad = [r for r in rows if r["status"] in ("fail", "error")]
    if args.json:
        print_json(rows)
    else:
        print_table([_table_row(r) for r in rows])
        notes = [r for r in rows if r["status"] != "pass"]
        for r in notes:
            print(f"\n{r['case_id']} {r['backend']} {r['dtype']} [{r['status']}]: {r['message']}")
        counts = {s: sum(r["status"] == s for r in rows) for s in ("pass", "fail", "error", "skip")}
        print("\n" + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    return 1 if bad else 0


def _run(name: str, case: Any, dtype: str, options: dict[str, Any]) -> CaseResult:
    try:
        backend = registry.get(name)
    except Exception as e:  # a third-party backend that does not import is an error of that row, not a crash
        return CaseResult(case.id, name, dtype, "error", message=f"backend {name!r} failed to load: "
                                                                 f"{type(e).__name__}: {e}")
    return run_case(backend, case, dtype, **options)


def _table_row(r: dict[str, Any]) -> dict[str, Any]:
    a = r["agreement"] or {}

    def num(key: str, fmt: str) -> str:
        return format(a[key], fmt) if a.get(key) is not None else "-"

    return {"model": r["model"], "batch": r["batch"], "size": r["image_size"], "backend": r["backend"],
            "dtype": r["dtype"], "status": r["status"], "max abs err": num("max_abs", ".3g"),
            "max rel err": num("max_rel", ".3g"), "bound": num("bound", ".3g"), "top-1": num("top1", ".2f"),
            "top-5": num("top5", ".2f"), "seconds": f"{r['seconds']:.1f}"}
