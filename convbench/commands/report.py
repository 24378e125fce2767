"""``convbench report RESULTS.jsonl [MORE.jsonl | DIR …] -o reports/NAME``: report.md, index.html (self-contained)
and PNG plots from one or more results files (several machines merge, grouped by machine); a directory, such as a
``--cluster`` sweep's output, stands for the results files in it."""

from __future__ import annotations

import argparse
import sys

from ..bench.errors import BenchError
from ..cli import UsageError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", nargs="+", help="results JSONL files (from convbench run), or directories of them")
    p.add_argument("-o", "--output", required=True, help="directory to write (created if missing)")
    p.add_argument("--title", default=None, help="report title (default: from the directory name)")


def run(args: argparse.Namespace) -> int:
    from ..bench.report import write_report

    try:
        done = write_report(args.results, args.output, args.title)
    except BenchError as e:
        raise UsageError(str(e)) from None
    removed = f"; removed {', '.join(done.removed)} of an older report" if done.removed else ""
    print(f"convbench report: wrote {', '.join(done.written)} to {done.directory}{removed}", file=sys.stderr)
    return 0
