"""``convbench profile -m MODEL -b BACKEND``: time per node (each compiled alone on the backend), beside the
whole graph's time; ``-o DIR`` also writes profile.json and the per-layer roofline (layers_roofline.png).
``--openvino`` puts OpenVINO's own per-layer counters on the same network beside it, mapped to the nodes by name
(bench/profile.py: map_layers), by layer and by kind of layer (vs_openvino.{json,md,png} in ``-o``).
``--dtype int8 --int8 KEY=VALUE,…`` quantizes as ``run --int8`` does, both sides alike; the profile records it.

Runs in this process: BLAS thread pools follow OMP_NUM_THREADS/OPENBLAS_NUM_THREADS of the environment.
Exit 1 when the backend cannot run the model here (not available, a dtype or op it lacks: the reason ``check``
and ``run`` give), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .. import models
from ..backends.correctness import TOLERANCES
from ..bench import plugins
from ..bench.errors import BenchError, UnsupportedCase
from ..bench.output import write_atomic
from ..bench.schema import int8_tag
from ..bench.workload import make_workload
from ..cli import UsageError
from ._common import (
    MAX_THREADS,
    add_backend_module,
    add_int8_argument,
    backends_arg,
    image_sizes_arg,
    in_range,
    int8_arg,
    print_json,
    print_table,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", required=True, help="zoo model name")
    p.add_argument("-b", "--backend", default="numpy",
                   help="one backend, optionally NAME:KEY=VALUE… (default numpy); as -b of run and check")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--image-size", default="full",
                   help="one input size: an integer, 'full' (the model's own, default) or 'small'")
    p.add_argument("--dtype", default="float32", choices=list(TOLERANCES))
    add_int8_argument(p)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--top", type=int, default=20, help="rows to print, slowest first (0 = all)")
    add_backend_module(p)
    p.add_argument("-o", "--output", default=None, help="directory for profile.json and layers_roofline.png")
    p.add_argument("--json", action="store_true", help="print the profile as JSON")
    p.add_argument("--openvino", action="store_true",
                   help="beside OpenVINO's own per-layer counters on the same network at the same precision (f32 "
                        "forced for float32), mapped to the nodes by name; -o also writes vs_openvino.{json,md,png}")


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
    int8 = int8_arg(args.int8, [args.dtype], args.dtype)
    out = Path(args.output) if args.output else None
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"cannot create {out}: {e.strerror or e}") from None
    try:
        prof = profile(args.model, spec.label, args.batch, size, args.dtype, args.threads, int8=int8)
    except UnsupportedCase as e:  # nothing to profile: the reason check and run give, not bad input
        print(f"convbench profile: {spec.label} cannot run {args.model} in {args.dtype} here: {e}", file=sys.stderr)
        return 1
    doc = prof.to_dict()
    if args.openvino:
        try:
            compared = _vs_openvino(args, size, int8, prof, out)
        except UnsupportedCase as e:
            print(f"convbench profile: OpenVINO cannot run {args.model} here: {e}", file=sys.stderr)
            return 1
        doc["openvino"] = compared
    if out is not None:
        from ..bench.calibrate import calibrate

        calib = calibrate(args.dtype, args.threads)
        doc["calibration"] = calib
        write_atomic(out / "profile.json", json.dumps(doc, indent=1))
        layer_roofline(prof, out / "layers_roofline.png", calib["gemm_gflops"], calib["bandwidth_gbs"])
    if args.json:
        print_json(doc)
        return 0
    if args.openvino:
        _print_vs_openvino(doc["openvino"], prof.backend, args.top)
    rows = sorted(prof.nodes, key=lambda n: -(n.median_s or 0))
    rows = rows[: args.top] if args.top else rows
    print_table([{
        "node": n.name, "op": n.op, "output": "×".join(map(str, n.output_shape)),
        "median ms": "—" if n.median_s is None else f"{n.median_s * 1e3:.3f}",
        "share": "—" if n.median_s is None else f"{n.median_s / prof.nodes_total_s:.1%}",
        "GFLOP/s": "—" if n.gflops is None else f"{n.gflops:.1f}", "FLOP/byte": f"{n.intensity:.1f}",
        "error": n.error,
    } for n in rows], title=f"{prof.model}@{prof.image_size} b{prof.batch} {prof.dtype}{int8_tag(prof.int8)} on "
                             f"{prof.backend}")
    print(f"whole graph median {prof.graph_median_s * 1e3:.3f} ms; sum of nodes {prof.nodes_total_s * 1e3:.3f} ms "
          f"({prof.nodes_total_s / prof.graph_median_s:.2f}× the whole graph)")
    if out is not None:
        print(f"wrote {out / 'profile.json'} and {out / 'layers_roofline.png'}", file=sys.stderr)
    return 0


def _vs_openvino(args: argparse.Namespace, size: int, int8: str, prof: Any, out: Path | None) -> dict[str, Any]:
    """OpenVINO's counters on the same workload (int8: quantized with the same ``int8`` settings), mapped to the
    profile's nodes; written to ``out`` if given."""
    from dataclasses import asdict

    from ..bench.profile import by_kind, layers_vs_openvino_plot, map_layers, openvino_layers

    ov = openvino_layers(args.model, args.batch, size, args.threads, dtype=args.dtype, int8=int8)
    # int8: the QDQ graph's names, the graph both sides ran
    graph = make_workload(args.model, args.batch, size, dtype=args.dtype, int8=int8).graph
    groups = map_layers(graph, prof, ov)
    doc = {"graph_median_s": ov.graph_median_s, "layers_total_s": sum(g.ov_s or 0.0 for g in groups),
           "calls": ov.calls, "groups": [asdict(g) for g in groups], "by_kind": by_kind(groups)}
    if out is not None:
        write_atomic(out / "vs_openvino.json", json.dumps(doc, indent=1))
        write_atomic(out / "vs_openvino.md", _vs_openvino_md(doc, prof))
        layers_vs_openvino_plot(groups, prof.backend, out / "vs_openvino.png")
    return doc


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v * 1e3:.3f}"


def _group_rows(doc: dict[str, Any], top: int) -> list[dict[str, str]]:
    rows = sorted(doc["groups"], key=lambda g: -max(g["backend_s"] or 0.0, g["ov_s"] or 0.0))
    return [{"OpenVINO layer": g["layer"], "kind": g["kind"], "kernel": g["exec_type"],
             "IR nodes": ", ".join(g["nodes"]) or "(OpenVINO only)", "backend ms": _ms(g["backend_s"]),
             "OpenVINO ms": _ms(g["ov_s"]),
             "×": f"{g['backend_s'] / g['ov_s']:.2f}" if g["backend_s"] and g["ov_s"] else "—"}
            for g in (rows[:top] if top else rows)]


def _kind_rows(doc: dict[str, Any]) -> list[dict[str, str]]:
    return [{"kind": r["kind"], "layers": str(r["layers"]), "backend ms": _ms(r["backend_s"]),
             "OpenVINO ms": _ms(r["ov_s"]), "gap ms": _ms(r["gap_s"])} for r in doc["by_kind"]]


def _print_vs_openvino(doc: dict[str, Any], backend: str, top: int) -> None:
    print_table(_group_rows(doc, top), title=f"{backend} nodes (each alone) against OpenVINO's layers")
    print_table(_kind_rows(doc), title="by kind of layer, largest gap first")
    print(f"OpenVINO whole graph median {doc['graph_median_s'] * 1e3:.3f} ms; sum of its layers "
          f"{doc['layers_total_s'] * 1e3:.3f} ms")


def _vs_openvino_md(doc: dict[str, Any], prof: Any) -> str:
    import pandas as pd

    from ..backends.openvino import DTYPE_PRECISION, HINT
    from ..bench.report import markdown_table

    precision = DTYPE_PRECISION.get(prof.dtype, "f32")  # the hint `openvino_layers` compiled with
    if precision in HINT:
        precision = f"its {precision} layers, the rest {HINT[precision]}"

    head = (f"# {prof.model}@{prof.image_size} b{prof.batch} {prof.dtype}: {prof.backend} against OpenVINO, "
            f"layer by layer\n\n{prof.backend}: each node compiled alone, whole graph "
            f"{prof.graph_median_s * 1e3:.3f} ms, sum of nodes {prof.nodes_total_s * 1e3:.3f} ms. OpenVINO (its "
            f"backend's lowering, {precision}, PERF_COUNT): "
            f"whole graph {doc['graph_median_s'] * 1e3:.3f} ms, sum of layers "
            f"{doc['layers_total_s'] * 1e3:.3f} ms. A row is one OpenVINO layer and the IR nodes it executes "
            "(a node OpenVINO lists as fused, or a folded BN, counts with the layer of its input; OpenVINO ms — : "
            "OpenVINO ran the nodes inside a layer of another name, a Subgraph).\n\n")
    return (head + "## By kind of layer, largest gap first\n\n" + markdown_table(pd.DataFrame(_kind_rows(doc)))
            + "\n\n## Layers, slowest first\n\n" + markdown_table(pd.DataFrame(_group_rows(doc, 0))) + "\n")
