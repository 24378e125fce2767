"""Helpers the subcommands share: argument parsing of lists, ``-b`` and ``--image-size`` (one parser each, in
convbench.bench.specs, for run, check, passes and profile), JSON and table output."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from ..bench.errors import BenchError
from ..bench.specs import BackendSpec, image_sizes_for, parse_backends, parse_image_sizes
from ..cli import UsageError

BACKENDS_HELP = ("comma-separated backends, each optionally NAME:KEY=VALUE… (e.g. torch:channels_last=false; "
                 "`convbench backends --options` lists them), or 'all' (every registered backend; one that cannot "
                 "run here is reported as skipped/unsupported with its reason)")
IMAGE_SIZE_HELP = "comma-separated input sizes: integers, 'full' (each model's own) or 'small' (reduced, quick)"


def add_backend_module(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend-module", action="append", default=[], metavar="MODULE_OR_FILE",
                   help="import this module (dotted name or .py file) to register extra backends; repeatable")


def backends_arg(value: str) -> list[BackendSpec]:
    """``-b``: names checked against the registry, options against each backend, before any work."""
    try:
        return parse_backends(value)
    except BenchError as e:
        raise UsageError(str(e)) from None


def image_sizes_arg(value: str, model_names: Sequence[str]) -> dict[str, list[int]]:
    """``--image-size`` resolved for each model (all bad input is reported before any work)."""
    try:
        items = parse_image_sizes(value)
        return {m: image_sizes_for(m, items) for m in model_names}
    except BenchError as e:
        raise UsageError(str(e)) from None


def split_list(value: str, known: Sequence[str], what: str) -> list[str]:
    """Parse "a,b" (or "all") into names, each checked against ``known``."""
    items = [v.strip() for v in value.split(",") if v.strip()]
    if items == ["all"]:
        return list(known)
    unknown = [v for v in items if v not in known]
    if unknown or not items:
        raise UsageError(f"unknown {what} {', '.join(map(repr, unknown)) or repr(value)}; "
                         f"known {what}s: {', '.join(known)} (or 'all')")
    return items


def int_list(value: str, what: str) -> list[int]:
    try:
        items = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{what} must be a comma-separated list of integers, got {value!r}") from None
    if not items or any(v < 1 for v in items):
        raise UsageError(f"{what} must be integers ≥ 1, got {value!r}")
    return items


def print_json(doc: Any) -> None:
    json.dump(doc, sys.stdout, indent=1, default=_jsonable)
    sys.stdout.write("\n")


def _jsonable(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, tuple | set):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def print_table(rows: list[dict[str, Any]], title: str | None = None) -> None:
    """A plain-text table on stdout (pandas formats; rich is for progress, not for pipes)."""
    import pandas as pd

    if title:
        print(title)
    if not rows:
        print("(no rows)")
        return
    print(pd.DataFrame(rows).to_string(index=False))
