"""Helpers the subcommands share: argument parsing of lists, ``-b`` and ``--image-size`` (one parser each, in
convbench.bench.specs, for run, check, passes and profile), ``--int8`` (models.calibration, for run, check and
profile), JSON and table output."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from ..bench.errors import BenchError
from ..bench.specs import CASE_AXES, BackendSpec, image_sizes_for, parse_backends, parse_image_sizes
from ..cli import UsageError

BACKENDS_HELP = ("comma-separated backends, each optionally NAME:KEY=VALUE… (e.g. torch:channels_last=false; "
                 "`convbench backends --options` lists them), or 'all' (every registered backend; one that cannot "
                 "run here is reported as skipped/unsupported with its reason)")
MAX_THREADS = 4096  # beyond it --threads is a typo, not a machine
IMAGE_SIZE_HELP = "comma-separated input sizes: integers, 'full' (each model's own) or 'small' (reduced, quick)"


def add_workload_arguments(p: argparse.ArgumentParser, backends: str | None, *, batches: bool = True,
                           dtypes: bool = True) -> None:
    """The case axes check, run and passes share, worded once: -m, -b (``backends`` is the default, None:
    required), --batch (a list; ``batches=False``: the command adds its own), --dtype, --image-size, --input."""
    from ..backends.correctness import TOLERANCES

    p.add_argument("-m", "--models", required=True, help="comma-separated zoo names, or 'all'")
    if backends is None:
        p.add_argument("-b", "--backends", required=True, help=BACKENDS_HELP)
    else:
        p.add_argument("-b", "--backends", default=backends, help=f"{BACKENDS_HELP} (default {backends})")
    if batches:
        p.add_argument("--batch", default=None,
                       help="comma-separated batch sizes (default 1; with --input real, every labelled photograph)")
    if dtypes:
        p.add_argument("--dtype", default="float32", help=f"comma-separated dtypes ({', '.join(TOLERANCES)})")
    p.add_argument("--image-size", default="full", help=IMAGE_SIZE_HELP + " (default full)")
    if dtypes:
        add_input_argument(p)


def add_input_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", choices=("random", "real"), default="random",
                   help="random: seeded random weights and input (default); real: the model's pretrained weights on "
                        "the bundled labelled photographs (batch at most their number), with accuracy metrics")


def add_int8_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--int8", default="", metavar="KEY=VALUE,...",
                   help="how --dtype int8 quantizes: observer=minmax|percentile (percentile), views=N calibration "
                        "views a photograph (4), weight_bits=8|7 (per-channel symmetric weights; default 7 on an x86 "
                        "CPU without VNNI, whose int8 kernels saturate at 8 bits, else 8), weight_clip=mse|absmax "
                        "(mse: each channel's range of least rounding error), bias_correction=on|off (on: biases "
                        "absorb the weights' mean rounding shift). In the case id and record")


def int8_arg(value: str, dtypes: Sequence[str], dtype_flag: str) -> str:
    """``--int8`` checked and spelled one way (`models.calibration.parse_int8`, `int8_spec`), or one `UsageError`
    naming the flag: settings with no int8 among ``dtypes`` (``dtype_flag``: --dtype as given) would be ignored."""
    if not value.strip():
        return ""
    if "int8" not in dtypes:
        raise UsageError(f"--int8 {value} says how to quantize, but --dtype {dtype_flag} has no int8")
    from ..models.calibration import int8_spec, parse_int8  # the quantizer's imports, only when asked for

    try:
        return int8_spec(parse_int8(value))
    except ValueError as e:
        raise UsageError(f"--int8: {e}") from None


def real_batch(input: str) -> str:
    """--batch when not given: 1, or with real input the whole set of labelled photographs."""
    if input != "real":
        return "1"
    from ..models import images

    return str(len(images.PHOTOS))


def add_backend_module(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend-module", action="append", default=[], metavar="MODULE_OR_FILE",
                   help="import this module (dotted name or .py file) to register extra backends; repeatable")


def backends_arg(value: str, axes: Mapping[str, str] = CASE_AXES) -> list[BackendSpec]:
    """``-b``: names checked against the registry, options against each backend, before any work; an option that
    is an axis of the command's cases (``axes``: dtype, threads) is refused with the flag to use instead."""
    try:
        return parse_backends(value, axes)
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


def in_range(value: float | int | None, flag: str, low: float, high: float = math.inf, *,
             open_low: bool = False, open_high: bool = False) -> None:
    """A numeric flag is finite and in range, or `UsageError` naming the flag (``--factor nan`` would turn a
    regression check off without a word, ``--timeout nan`` the watchdog). None (not given) passes."""
    if value is None:
        return
    lowest, highest = f"{'>' if open_low else '≥'} {low:g}", f"{'<' if open_high else '≤'} {high:g}"
    span = lowest + (f" and {highest}" if high < math.inf else "")
    if not math.isfinite(value):
        raise UsageError(f"{flag} must be a finite number {span}, got {value:g}")
    if value < low or (open_low and value == low) or value > high or (open_high and value == high):
        raise UsageError(f"{flag} must be {span}, got {value:g}")


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
