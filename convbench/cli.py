"""The ``convbench`` command line. Each subcommand is one module under ``convbench/commands/``.

Exit codes: 0 success, 1 a check or comparison found a problem, 2 bad input (unknown model/backend/op, bad
arguments, an input file that does not read: graph JSON, results JSONL). Errors are one line on stderr (a
message that lists several problems is joined with "; "); ``--json`` output is JSON only.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .bench.errors import BenchError
from .ir.errors import IRError

# Explicit list: subcommand name -> module under convbench.commands (imported only when used, so
# `convbench models` does not pay for importing torch).
COMMANDS: dict[str, str] = {
    "models": "Zoo: name, input shape, layers, params, MACs, FLOPs.",
    "summary": "Per-layer table of one model (or a graph JSON file).",
    "backends": "Backends registered here: available or why not, version, device, dtypes.",
    "check": "Correctness of backends against the float64 NumPy reference; exit 1 on any mismatch.",
    "run": "Benchmark sweep: one isolated process per case, results appended to a JSONL file.",
    "report": "Report from results files: report.md, a self-contained index.html and PNG plots.",
    "compare": "Regressions between two results files (ratio of medians + Mann-Whitney U); exit 1 if any.",
    "profile": "Time per node of one model on one backend (feeds the per-layer roofline).",
    "tune": "A TVM tuning database for this CPU within a time budget; later TVM compiles pick it up.",
    "passes": "Pass ablation: nodes, FLOPs, arena memory and speed-up per model × backend × pipeline.",
    "classify": "Top-k ImageNet classes of photographs (bundled by name, or image files) with pretrained weights.",
}


class UsageError(Exception):
    """Bad input from the user: reported as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    # allow_abbrev=False everywhere: a prefix is never silently read as a longer option (`--mode` is not `--models`)
    parser = argparse.ArgumentParser(prog="convbench", description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"convbench.commands.{name}")
        p = sub.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _version() -> str:
    from . import __version__

    return f"convbench {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except BrokenPipeError:  # `convbench models | head`
        return 0
    except (UsageError, IRError, KeyError, BenchError, OSError) as e:  # OSError: a file that cannot be read/written
        message = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        print(f"convbench {args.command}: error: {one_line(message)}", file=sys.stderr)
        return 2


def one_line(message: str) -> str:
    """A message of several lines (an ONNX import's node list, a checkpoint's key list) as one line."""
    parts = [part.strip() for part in message.splitlines() if part.strip()]
    return "".join(p + ("" if i == len(parts) - 1 else " " if p.endswith(":") else "; ")
                   for i, p in enumerate(parts)) or message


if __name__ == "__main__":
    sys.exit(main())
