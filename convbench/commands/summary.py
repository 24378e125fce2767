"""``convbench summary MODEL [--json]``: per layer name, op, output shape, params, MACs, FLOPs, activation bytes."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import models
from ..ir.analysis import summarize
from ..ir.serialize import load
from ._common import in_range, print_json, print_table


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a zoo model name, or a graph JSON file")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print a JSON document instead of a table")


def run(args: argparse.Namespace) -> int:
    in_range(args.batch, "--batch", 1)
    in_range(args.image_size, "--image-size", 1)
    if args.model.endswith(".json") and Path(args.model).exists():
        graph = load(args.model)
    else:
        graph = models.build(args.model, batch=args.batch, image_size=args.image_size)
    s = summarize(graph)
    if args.json:
        print_json(s.to_dict())
        return 0
    print_table([{
        "name": r.name, "op": r.op, "output": "×".join(map(str, r.output_shape)), "params": f"{r.params:,}",
        "MACs": f"{r.macs:,}", "FLOPs": f"{r.flops:,}", "act KiB": f"{r.activation_bytes / 1024:.1f}",
    } for r in s.layers], title=f"{s.model}: input {'×'.join(map(str, s.input_shape))}")
    print(f"\ntotal: {s.params:,} params ({s.param_bytes / 2**20:.1f} MiB), {s.macs:,} MACs, {s.flops:,} FLOPs, "
          f"{s.conv_layers} conv + {s.linear_layers} fc layers; activations: peak "
          f"{s.activation_peak_bytes / 2**20:.2f} MiB with reuse, {s.activation_sum_bytes / 2**20:.2f} MiB naive sum")
    return 0
