"""``convbench profile -m MODEL -b BACKEND``: time per node (each compiled alone on the backend), beside the
whole graph's time; ``-o DIR`` also writes profile.json and the per-layer roofline (layers_roofline.png).

Runs in this process: BLAS thread pools follow OMP_NUM_THREADS/OPENBLAS_NUM_THREADS of the environment.
Exit 1 when the backend cannot run the model here (not available, a dtype or op it lacks: the reason ``check``
and ``run`` give), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import models
from ..backends.correctness import TOLERANCES
from ..bench import plugins
from ..bench.errors import BenchError, UnsupportedCase
from ..bench.output import write_atomic
from ..cli import UsageError
from ._common import MAX_THREADS, add_backend_module, backends_arg, image_sizes_arg, in_range, print_json, print_table


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", required=True, help="zoo model name")
    p.add_argument("-b", "--backend", default="numpy",
                   help="one backend, optionally NAME:KEY=VALUE… (default numpy); as -b of run and check")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--image-size", default="full",
                   help="one input size: an integer, 'full' (the model's own, default) or 'small'")
    p.add_argument("--dtype", default="float32", choices=list(TOLERANCES))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--top", type=int, default=20, help="rows to print, slowest first (0 = all)")
    add_backend_module(p)
    p.add_argument("-o", "--output", default=None, help="directory for profile.json and layers_roofline.png")
    p.add_argument("--json", action="store_true", help="print the profile as JSON")


def run(args: argparse.Namespace) -> int:
    from ..bench.profile import layer_roofline, profile

    try:
        plugins.load_all(args.backend_module)
    except BenchError as e:
        raise UsageError(str(e)) from None
    models.spec(args.model)
    (spec, *more) = backends_arg(args.backend)
    (size, *other) = image_sizes_arg(args.image_size, [args.model])[args.model]
    if more or other:
        raise UsageError("profile takes one backend and one image size")
    in_range(args.batch, "--batch", 1)
    in_range(args.threads, "--threads", 1, MAX_THREADS)
    in_range(args.top, "--top", 0)
    out = Path(args.output) if args.output else None
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"cannot create {out}: {e.strerror or e}") from None
    try:
        prof = profile(args.model, spec.label, args.batch, size, args.dtype, args.threads)
    except UnsupportedCase as e:  # nothing to profile: the reason check and run give, not bad input
        print(f"convbench profile: {spec.label} cannot run {args.model} in {args.dtype} here: {e}", file=sys.stderr)
        return 1
    doc = prof.to_dict()
    if out is not None:
        from ..bench.calibrate import calibrate

        calib = calibrate(args.dtype, args.threads)
        doc["calibration"] = calib
        write_atomic(out / "profile.json", json.dumps(doc, indent=1))
        layer_roofline(prof, out / "layers_roofline.png", calib["gemm_gflops"], calib["bandwidth_gbs"])
    if args.json:
        print_json(doc)
        return 0
    rows = sorted(prof.nodes, key=lambda n: -(n.median_s or 0))
    rows = rows[: args.top] if args.top else rows
    print_table([{
        "node": n.name, "op": n.op, "output": "×".join(map(str, n.output_shape)),
        "median ms": "—" if n.median_s is None else f"{n.median_s * 1e3:.3f}",
        "share": "—" if n.median_s is None else f"{n.median_s / prof.nodes_total_s:.1%}",
        "GFLOP/s": "—" if n.gflops is None else f"{n.gflops:.1f}", "FLOP/byte": f"{n.intensity:.1f}",
        "error": n.error,
    } for n in rows], title=f"{prof.model}@{prof.image_size} b{prof.batch} {prof.dtype} on {prof.backend}")
    print(f"whole graph median {prof.graph_median_s * 1e3:.3f} ms; sum of nodes {prof.nodes_total_s * 1e3:.3f} ms "
          f"({prof.nodes_total_s / prof.graph_median_s:.2f}× the whole graph)")
    if out is not None:
        print(f"wrote {out / 'profile.json'} and {out / 'layers_roofline.png'}", file=sys.stderr)
    return 0
