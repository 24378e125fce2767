"""``convbench compare BASE.jsonl NEW.jsonl [--factor 1.1] [--format md|json]``: regressions between two sweeps.

Exit 1 when a case regressed (median ratio > factor with Mann-Whitney p < alpha, or a case that broke), else 0.
"""

from __future__ import annotations

import argparse
import sys

from ..bench.compare import compare_records
from ..bench.errors import BenchError
from ..bench.schema import read_records
from ..cli import UsageError
from ._common import print_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("base", help="results JSONL of the baseline")
    p.add_argument("new", help="results JSONL to check against it")
    p.add_argument("--factor", type=float, default=1.1, help="slow-down that counts as a regression (1.1)")
    p.add_argument("--alpha", type=float, default=0.01, help="significance level of the Mann-Whitney U test (0.01)")
    p.add_argument("--format", choices=("md", "json"), default="md", help="output format (md)")


def run(args: argparse.Namespace) -> int:
    if args.factor < 1:
        raise UsageError(f"--factor must be ≥ 1, got {args.factor}")
    if not 0 < args.alpha < 1:
        raise UsageError(f"--alpha must be in (0, 1), got {args.alpha}")
    try:
        base, new = read_records(args.base), read_records(args.new)
    except BenchError as e:
        raise UsageError(str(e)) from None
    result = compare_records(base, new, args.factor, args.alpha)
    if args.format == "json":  # the markdown carries its warnings in the document itself
        for w in result.warnings:
            print(f"convbench compare: warning: {w}", file=sys.stderr)
        print_json(result.to_dict())
    else:
        print(result.to_markdown())
    return 1 if result.regressions else 0
