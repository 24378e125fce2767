"""The Triton backend against torch on a CUDA GPU: every conv/linear layer shape of the chosen models, kernel
against cuDNN/cuBLAS, then whole models against torch eager and torch.compile. Writes one harness-format JSONL
record per measurement (``convbench report`` reads them) and prints the ratios.

    python benchmarks/triton_gpu.py                      # ResNet-50, fp16, batch 32: layers + whole model
    python benchmarks/triton_gpu.py -m resnet50,vgg16,mobilenet_v2 --dtype float32 --batch 1,32 -o out.jsonl
    python benchmarks/triton_gpu.py --allow-cpu -m lenet5 --batch 1 --dtype float32   # smoke test, interpreter

Layer timings use ``triton.testing.do_bench`` (CUDA events, L2 flushed between calls); both sides compute the
same thing: the conv with bias and ReLU (torch: ``F.conv2d`` then ``relu_``, which cuDNN does not fuse in eager
mode), both in NCHW. Whole-model timings run on device-resident inputs (no host copies): the Triton plan
against the torch backend's fx module in eager mode and under ``torch.compile`` (inductor). float32 compares
IEEE against IEEE (cuDNN's TF32 off) unless ``--tf32``, which turns TF32 on for both. Each layer's output is
also checked against torch's with the dtype's tolerance, so a fast wrong kernel cannot look good.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from convbench import models
from convbench.backends.correctness import compare
from convbench.backends.triton import BACKEND as TRITON
from convbench.bench.calibrate import calibrate
from convbench.bench.machine import fingerprint
from convbench.bench.schema import SCHEMA_VERSION, append_record
from convbench.bench.stats import summarize
from convbench.ir.analysis import summarize as analyse

ok, why = TRITON.available()  # chooses native vs interpreter before anything imports triton
if not ok:
    sys.exit(f"triton backend not available: {why}")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from convbench.backends import torch as torch_backend  # noqa: E402
from convbench.kernels.triton import conv2d as k_conv  # noqa: E402
from convbench.kernels.triton import linear as k_linear  # noqa: E402
from convbench.kernels.triton import runtime  # noqa: E402


def timer(args: argparse.Namespace) -> Callable[[Callable[[], Any]], list[float]]:
    """Seconds per call, one sample per call: CUDA events on GPU, a wall clock under the interpreter."""
    if not runtime.INTERPRET:
        import triton.testing

        return lambda fn: [ms / 1e3 for ms in triton.testing.do_bench(fn, warmup=args.warmup_ms, rep=args.rep_ms,
                                                                      return_mode="all")]

    def wall(fn: Callable[[], Any]) -> list[float]:
        fn()
        samples = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
        return samples

    return wall


def layers(model: str, batch: int, size: int) -> list[tuple[str, Any, dict[str, Any]]]:
    """(name, node, input shapes) of every distinct conv2d/linear shape in the model, first occurrence."""
    g = models.build(model, batch=batch, image_size=size)
    seen, out = set(), []
    for node in g.nodes:
        if node.op not in ("conv2d", "linear"):
            continue
        shapes = tuple(g.types[i].shape for i in node.inputs[:2])
        key = (node.op, shapes, node.attrs)
        if key not in seen:
            seen.add(key)
            out.append((node.name, node, {"x": shapes[0], "weight": shapes[1], "out": g.types[node.name].shape}))
    return out


def layer_pair(node: Any, shapes: dict[str, Any], dtype: torch.dtype, tf32: bool):
    """(triton fn, torch fn) computing activation(layer(x) + bias) on random device data."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(shapes["x"], generator=gen).to(runtime.DEVICE, dtype)
    w = (torch.randn(shapes["weight"], generator=gen) / np.sqrt(np.prod(shapes["weight"][1:]))).to(runtime.DEVICE)
    b = torch.randn(shapes["weight"][0], generator=gen).to(runtime.DEVICE)
    if node.op == "conv2d":
        a = node.attrs
        packed = k_conv.pack_weight(w, b, a.groups, dtype)
        wt, bt = w.to(dtype), b.to(dtype)
        return (lambda: k_conv.conv2d(x, packed, stride=a.stride, padding=a.padding, dilation=a.dilation,
                                      activation="relu", tf32=tf32),
                lambda: F.conv2d(x, wt, bt, a.stride, a.padding, a.dilation, a.groups).relu_())
    packed = k_linear.pack_weight(w, b, dtype)
    wt, bt = w.to(dtype), b.to(dtype)
    return (lambda: k_linear.linear(x, packed, activation="relu", tf32=tf32),
            lambda: F.linear(x, wt, bt).relu_())


def record(base: dict[str, Any], model: str, backend: str, batch: int, size: int, dtype: str, samples: list[float],
           flops: int, **extra: Any) -> dict[str, Any]:
    """One result line in the harness's schema (bench/schema.py); layers are "models" named model/layer."""
    stats = summarize(samples)
    case = {"model": model, "image_size": size, "backend": backend, "backend_name": backend.split(":")[0],
            "options": {}, "batch": batch, "dtype": dtype, "threads": torch.get_num_threads()}
    calibration = base["calibration"][dtype]
    gemm = (calibration.get("cuda") or calibration)["gemm_gflops"]
    gflops = flops / stats.median / 1e9
    return {**{k: v for k, v in base.items() if k != "calibration"}, "calibration": calibration,
            "case_id": f"{model}@{size}/{backend}/b{batch}/{dtype}/gpu", "case": case, "status": "ok",
            "message": "", "started": datetime.now(timezone.utc).isoformat(), "timing": stats.to_dict(),
            "throughput_ips": batch / stats.median, "gflops": gflops, "peak_fraction": gflops / gemm, **extra}


def bench_layers(args, base, model, batch, size, dtype) -> list[float]:
    tdtype, bench, ratios = runtime.DTYPES[dtype], timer(args), []
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = args.tf32
    print(f"\n{model} b{batch} {size}px {dtype}: layer  triton_ms  torch_ms  ratio")
    for name, node, shapes in layers(model, batch, size):
        ours, theirs = layer_pair(node, shapes, tdtype, args.tf32)
        agreement = compare(ours().float().cpu().numpy(), theirs().double().cpu().numpy(),
                            "tf32" if args.tf32 and dtype == "float32" else dtype)
        t_ours, t_theirs = bench(ours), bench(theirs)
        ratio = statistics.median(t_ours) / statistics.median(t_theirs)
        ratios.append(ratio)
        flops = 2 * int(np.prod(shapes["out"])) * int(np.prod(shapes["weight"][1:]))
        layer = {"layer": name, "op": node.op, **shapes, "attrs": repr(node.attrs), "ratio_vs_torch": ratio}
        weights, acts = int(np.prod(shapes["weight"])), int(np.prod(shapes["x"])) + int(np.prod(shapes["out"]))
        itemsize = torch.empty(0, dtype=tdtype).element_size()
        memory = {"static_param_bytes": weights * itemsize, "static_activation_peak_bytes": acts * itemsize}
        info = {"flops": flops, "macs": flops // 2, "params": weights, "param_bytes": 4 * weights,
                "activation_sum_bytes": 4 * acts}  # float32 bytes, as the harness records them
        for backend, samples in (("triton", t_ours), ("torch", t_theirs)):
            append_record(args.output, record(base, f"{model}/{name}", backend, batch, size, dtype, samples, flops,
                                              layer=layer, memory=memory, model_info=info,
                                              correctness={**agreement.to_dict(), "reference": "torch"}))
        flag = "" if agreement.ok else f"  DISAGREES (max rel {agreement.max_rel:.2g})"
        print(f"  {name:32s} {statistics.median(t_ours) * 1e3:9.3f} {statistics.median(t_theirs) * 1e3:9.3f}"
              f"  {ratio:5.2f}×{flag}")
    return ratios


def bench_model(args, base, model, batch, size, dtype) -> None:
    g = models.build(model, batch=batch, image_size=size)
    params = models.init_params(g, seed=0, calibrate=False)
    x = torch.randn(g.inputs["input"].shape, generator=torch.Generator().manual_seed(0))
    tdtype, bench = runtime.DTYPES[dtype], timer(args)
    exe = TRITON.compile(g, params, dtype=dtype, tf32=args.tf32)
    feed = {"input": x.to(runtime.DEVICE, tdtype)}
    contenders: dict[str, Callable[[], Any]] = {"triton": lambda: exe.artifact.execute(feed)[0]}
    info = analyse(g)
    model_info = {"flops": info.flops, "macs": info.macs, "params": info.params, "param_bytes": info.param_bytes,
                  "activation_sum_bytes": info.activation_sum_bytes}
    with torch.inference_mode():
        gm = torch_backend.lower(g, params, dtype, device=str(runtime.DEVICE))
        reference = torch_backend.lower(g, params, "float32", device=str(runtime.DEVICE))(x.to(runtime.DEVICE))[0]
        xt = x.to(runtime.DEVICE, tdtype)
        contenders["torch"] = lambda: gm(xt)[0]
        if not args.no_compile:
            compiled = torch.compile(gm, backend="inductor", dynamic=False)
            compiled(xt)
            contenders["torch:compile=true"] = lambda: compiled(xt)[0]
        medians = {}
        for label, fn in contenders.items():
            if not runtime.INTERPRET:
                torch.cuda.reset_peak_memory_stats()
            agreement = compare(fn().float().cpu().numpy(), reference.double().cpu().numpy(),
                                "tf32" if args.tf32 and dtype == "float32" else dtype)
            samples = bench(fn)
            medians[label] = statistics.median(samples)
            memory = {"static_param_bytes": info.param_bytes,
                      "static_activation_peak_bytes": info.activation_peak_bytes,
                      "device_peak_bytes": None if runtime.INTERPRET else torch.cuda.max_memory_allocated(),
                      "method": None if runtime.INTERPRET else "torch CUDA allocator peak"}
            extra = {"compile": {"compile_s": exe.report.compile_s, "report": exe.report.to_dict(),
                                 "fallback_nodes": list(exe.fallback_nodes)}} if label == "triton" else {}
            append_record(args.output, record(base, model, label, batch, size, dtype, samples, info.flops,
                                              memory=memory,
                                              model_info=model_info, **extra,
                                              correctness={**agreement.to_dict(), "reference": "torch float32"}))
    line = "  ".join(f"{k} {batch / v:8.1f} img/s" for k, v in medians.items())
    print(f"{model} b{batch} {dtype}: {line}  (triton/torch time {medians['triton'] / medians['torch']:.2f}×)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-m", "--models", default="resnet50")
    p.add_argument("--batch", default="32", help="comma-separated batch sizes")
    p.add_argument("--dtype", default="float16", help="comma-separated: float32, float16, bfloat16")
    p.add_argument("--image-size", type=int, default=None, help="default: each model's own")
    p.add_argument("--tf32", action="store_true", help="TF32 float32 matmuls on both sides")
    p.add_argument("--no-layers", action="store_true")
    p.add_argument("--no-models", action="store_true")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile in the whole-model runs")
    p.add_argument("--warmup-ms", type=int, default=25)
    p.add_argument("--rep-ms", type=int, default=200)
    p.add_argument("-o", "--output", type=Path, default=Path("results_triton_gpu.jsonl"))
    p.add_argument("--allow-cpu", action="store_true", help="run under the interpreter (a smoke test, no timings "
                                                            "worth reading)")
    args = p.parse_args()
    if runtime.INTERPRET and not args.allow_cpu:
        sys.exit("no CUDA GPU here: the kernels would run under Triton's interpreter; pass --allow-cpu to smoke-test")
    dtypes = args.dtype.split(",")
    base = {"schema": SCHEMA_VERSION, "run_id": uuid.uuid4().hex[:12], "device": TRITON.device(),
            "machine": fingerprint(), "calibration": {d: calibrate(d) for d in dtypes}}
    summary = []
    for model in args.models.split(","):
        size = args.image_size or models.spec(model).image_size
        for dtype in dtypes:
            for batch in (int(b) for b in args.batch.split(",")):
                if not args.no_layers:
                    ratios = bench_layers(args, base, model, batch, size, dtype)
                    summary.append((model, dtype, batch, ratios))
                if not args.no_models:
                    bench_model(args, base, model, batch, size, dtype)
    for model, dtype, batch, ratios in summary:
        worst, geo = max(ratios), float(np.exp(np.mean(np.log(ratios))))
        within = {limit: sum(r <= limit for r in ratios) for limit in (1.5, 1.2)}
        print(f"{model} {dtype} b{batch}: {len(ratios)} layer shapes, triton/torch time: geomean {geo:.2f}×, worst "
              f"{worst:.2f}×, within 1.5×: {within[1.5]}, within 1.2×: {within[1.2]}")
    print(f"records appended to {args.output}")


if __name__ == "__main__":
    main()
