"""``convbench models [--json]``: the zoo with its input shape, layer counts, params, MACs and FLOPs."""

from __future__ import annotations

import argparse

from .. import models
from ..ir.analysis import summarize
from ._common import in_range, print_json, print_table


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print a JSON document instead of a table")
    p.add_argument("--image-size", type=int, default=None, help="input size (default: each model's own)")


def rows(image_size: int | None = None) -> list[dict]:
    out = []
    for name in models.names():
        s = summarize(models.build(name, image_size=image_size))
        out.append({
            "name": name, "input_shape": list(s.input_shape), "nodes": len(s.layers),
            "conv_layers": s.conv_layers, "linear_layers": s.linear_layers, "params": s.params,
            "param_mib": s.param_bytes / 2**20, "macs": s.macs, "flops": s.flops,
            "activation_peak_mib": s.activation_peak_bytes / 2**20,
        })
    return out


def run(args: argparse.Namespace) -> int:
    in_range(args.image_size, "--image-size", 1)
    table = rows(args.image_size)
    if args.json:
        print_json(table)
        return 0
    print_table([{
        "model": r["name"], "input": "×".join(map(str, r["input_shape"])), "conv": r["conv_layers"],
        "fc": r["linear_layers"], "params": f"{r['params']:,}", "size MiB": f"{r['param_mib']:.1f}",
        "GMACs": f"{r['macs'] / 1e9:.3f}", "GFLOPs": f"{r['flops'] / 1e9:.3f}",
    } for r in table])
    return 0
