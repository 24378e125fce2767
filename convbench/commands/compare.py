"""``convbench compare BASE.jsonl NEW.jsonl [--factor 1.1] [--format md|json]``: regressions between two sweeps.

Exit 1 when a case regressed (median ratio > factor with Mann-Whitney p < alpha, or a case that broke) or a case
of the base is missing from the new file (unless ``--allow-subset``), else 0; 2 when a file does not read, is
empty, or holds a median that is not a positive finite number.
"""

from __future__ import annotations

import argparse
import sys

from ..bench.compare import compare_records
from ..bench.errors import BenchError
from ..bench.schema import read_records
from ..cli import UsageError
from ._common import in_range, print_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("base", help="results JSONL of the baseline")
    p.add_argument("new", help="results JSONL to check against it")
    p.add_argument("--factor", type=float, default=1.1, help="slow-down that counts as a regression (1.1)")
    p.add_argument("--alpha", type=float, default=0.01, help="significance level of the Mann-Whitney U test (0.01)")
    p.add_argument("--format", choices=("md", "json"), default="md", help="output format (md)")
    p.add_argument("--allow-subset", action="store_true",
                   help="accept a new file that lacks some of the base's cases (by default a missing case fails)")


def run(args: argparse.Namespace) -> int:
    in_range(args.factor, "--factor", 1)
    in_range(args.alpha, "--alpha", 0, 1, open_low=True, open_high=True)
    try:
        base, new = read_records(args.base), read_records(args.new)
        result = compare_records(base, new, args.factor, args.alpha, args.allow_subset)
    except BenchError as e:
        raise UsageError(str(e)) from None
    if args.format == "json":  # the markdown carries its warnings in the document itself
        for w in result.warnings:
            print(f"convbench compare: warning: {w}", file=sys.stderr)
        print_json(result.to_dict())
    else:
        print(result.to_markdown())
    return 1 if result.failed else 0
