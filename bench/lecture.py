"""The lectures' two model tables, regenerated from the IR with the lecture's own figures beside ours.

"Comparison of CNN architecture" quotes each model's size in MB; "VGG19 vs ResNet50" quotes parameters and
FLOPs, but with the two rows swapped: 25M / 3.8B are ResNet-50's (He et al. count 3.8 billion multiply-adds)
and 138M / 15.3B are VGG-16's, not VGG-19's. Our columns come from ``summarize`` (MACs in torchvision's
convention) and the measured ones from the results being reported.
"""

from __future__ import annotations

import pandas as pd

from ..ir import ops

# (zoo name, lecture's row name, lecture's size in MB)
LECTURE_SIZES: tuple[tuple[str, str, float], ...] = (
    ("alexnet", "AlexNet", 238), ("vgg16", "VGG-16", 540), ("vgg19", "VGG-19", 560),
    ("googlenet", "GoogLeNet", 40), ("resnet50", "ResNet-50", 100), ("resnet152", "ResNet-152", 235),
)
# (zoo name, lecture's row name, lecture's params, lecture's FLOPs) — as printed, i.e. swapped.
LECTURE_VGG_RESNET: tuple[tuple[str, str, str, str], ...] = (
    ("vgg19", "VGG19", "25M", "3.8B"),
    ("resnet50", "ResNet50", "138M", "15.3B"),
)
SWAP_NOTE = ("The lecture's rows are swapped: 25M parameters / 3.8B FLOPs are ResNet-50's (its paper counts "
             "multiply-adds as FLOPs) and 138M / 15.3B are VGG-16's; VGG-19 has 143.7M parameters and 19.6 GMACs.")


WEIGHT_OPS = ops.with_trait("contraction")  # the layers "AlexNet 8, ResNet-50 50" count (a fused node is one)


def depth(graph) -> int:
    """Weight layers (conv, linear) on the longest input-to-output path: what "AlexNet 8, GoogLeNet 22,
    ResNet-50 50 layers" counts. Parallel branches (inception, shortcut convs) add count, not depth."""
    d: dict[str, int] = {}
    for node in graph.nodes:
        before = max((d.get(i, 0) for i in graph.activation_inputs(node)), default=0)
        d[node.name] = before + (node.op in WEIGHT_OPS)
    return max((d.get(o, 0) for o in graph.outputs), default=0)


def _static(name: str) -> dict:
    from .. import models
    from ..ir.analysis import summarize

    g = models.build(name, batch=1)
    s = summarize(g)
    return {"input": "×".join(map(str, s.input_shape[1:])), "depth": depth(g), "conv": s.conv_layers,
            "fc": s.linear_layers, "params": s.params, "param_bytes": s.param_bytes, "macs": s.macs,
            "flops": s.flops}


def _measured(results: pd.DataFrame, name: str) -> dict:
    """Fastest batch-1 median and best images/s of a model at its own input size, over backends (float32)."""
    from .. import models

    if results.empty:
        return {}
    ok = results[(results.model == name) & (results.status == "ok") & (results.dtype == "float32")
                 & (results.image_size == models.spec(name).image_size)]
    if ok.empty:
        return {}
    out = {}
    b1 = ok[ok.batch == 1]
    if not b1.empty:
        best = b1.loc[b1.median_s.idxmin()]
        out["latency"] = f"{best.median_s * 1e3:.2f} ms ({best.backend})"
    best = ok.loc[ok.throughput_ips.idxmax()]
    out["throughput"] = f"{best.throughput_ips:.1f} img/s ({best.backend}, b{best.batch})"
    return out


def comparison_table(results: pd.DataFrame) -> pd.DataFrame:
    """The lecture's "Comparison of CNN architecture" table, ours beside theirs."""
    rows = []
    for name, title, lecture_mb in LECTURE_SIZES:
        s, m = _static(name), _measured(results, name)
        rows.append({
            "model": title, "input": s["input"], "depth (weight layers)": s["depth"],
            "conv": s["conv"], "fc": s["fc"],
            "params (M)": f"{s['params'] / 1e6:.1f}", "size MB (ours)": f"{s['param_bytes'] / 1e6:.0f}",
            "size MiB (ours)": f"{s['param_bytes'] / 2**20:.0f}", "size MB (lecture)": f"{lecture_mb:g}",
            "GMACs": f"{s['macs'] / 1e9:.2f}", "batch-1 latency (measured)": m.get("latency", "not measured"),
            "throughput (measured)": m.get("throughput", "not measured"),
        })
    return pd.DataFrame(rows)


def vgg_resnet_table(results: pd.DataFrame) -> pd.DataFrame:
    """The lecture's "VGG19 vs ResNet50" table: its (swapped) figures, ours, and measured speed."""
    rows = []
    for name, title, lecture_params, lecture_flops in LECTURE_VGG_RESNET:
        s, m = _static(name), _measured(results, name)
        rows.append({
            "model": title, "params (lecture)": lecture_params, "FLOPs (lecture)": lecture_flops,
            "params (ours)": f"{s['params'] / 1e6:.1f}M", "MACs (ours)": f"{s['macs'] / 1e9:.2f}B",
            "FLOPs (ours, 2×MAC + rest)": f"{s['flops'] / 1e9:.2f}B",
            "batch-1 latency (measured)": m.get("latency", "not measured"),
            "throughput (measured)": m.get("throughput", "not measured"),
        })
    return pd.DataFrame(rows)
