"""The Triton backend against torch on a CUDA GPU: every conv/linear layer shape of the chosen models, kernel
against cuDNN/cuBLAS in NCHW and in channels_last, then whole models (Triton with and without its CUDA graph)
against torch eager and torch.compile. Writes one harness-format JSONL record per measurement (``convbench
report`` reads them), prints the ratios and each layer's achieved TFLOP/s.

    python benchmarks/triton_gpu.py --tune --batch 1,32 -o reports/triton-gpu/triton_gpu.jsonl   # ResNet-50 fp16
    python benchmarks/triton_gpu.py -m resnet50,vgg16 --dtype float32 --batch 32 -o out.jsonl
    python benchmarks/triton_gpu.py --dry-run          # CPU: the interpreter on LeNet-5, proves the wiring

Layer timings use ``triton.testing.do_bench`` (CUDA events, L2 flushed between calls). Triton runs the layer as
the backend's default plan does: channels-last input, the NHWC implicit GEMM with the fused bias + ReLU
epilogue, its configuration from the tuned table (``--tune`` tunes the missing ones: the pruned candidates of
`kernels.triton.configs`, each checked against torch before it is timed, winners saved as JSON for this GPU and
triton, so a second run does not re-tune). torch: ``F.conv2d`` then ``relu_`` (cuDNN does not fuse them in
eager mode), once on NCHW and once on channels_last tensors. Whole-model timings run on device-resident inputs
(no host copies). float32 compares IEEE against IEEE (cuDNN's TF32 off) unless ``--tf32``. Each layer's output
is checked against torch's with the dtype's tolerance, so a fast wrong kernel cannot look good.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
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
from convbench.backends.triton import config_dirs, config_table  # noqa: E402
from convbench.backends.triton.graphs import graphed  # noqa: E402
from convbench.kernels.triton import configs, gemm, runtime  # noqa: E402
from convbench.kernels.triton import conv2d as k_conv  # noqa: E402
from convbench.kernels.triton import linear as k_linear  # noqa: E402

TENSOR_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense fp16/bf16 tensor-core peaks (datasheets)


def timer(args: argparse.Namespace, tuning: bool = False) -> Callable[[Callable[[], Any]], list[float]]:
    """Seconds per call, one sample per call: CUDA events on GPU, a wall clock under the interpreter."""
    if not runtime.INTERPRET:
        import triton.testing

        warm, rep = (5, 20) if tuning else (args.warmup_ms, args.rep_ms)
        return lambda fn: [ms / 1e3 for ms in triton.testing.do_bench(fn, warmup=warm, rep=rep, return_mode="all")]

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


def layer_key(node: Any, shapes: dict[str, Any], dtype: str) -> str:
    """The tuned-config key of a layer, as the backend's lowering computes it."""
    if node.op == "linear":
        n, k = shapes["weight"]
        return configs.layer_key(dtype, int(np.prod(shapes["out"][:-1])), n, k, (1, 1), (1, 1), (0, 0), (1, 1), 1)
    a, (o, cg, kh, kw), (nb, _, oh, ow) = node.attrs, shapes["weight"], shapes["out"]
    return configs.layer_key(dtype, nb * oh * ow, o // a.groups, cg, (kh, kw), a.stride, a.padding, a.dilation,
                             a.groups)


def layer_fns(node: Any, shapes: dict[str, Any], dtype: torch.dtype, tf32: bool):
    """(triton fn(config), {label: torch fn}) computing relu(layer(x) + bias) on random device data: Triton on
    channels-last memory (the plan's layout), torch on NCHW and on channels_last."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(shapes["x"], generator=gen).to(runtime.DEVICE, dtype)
    w = (torch.randn(shapes["weight"], generator=gen) / np.sqrt(np.prod(shapes["weight"][1:]))).to(runtime.DEVICE)
    b = torch.randn(shapes["weight"][0], generator=gen).to(runtime.DEVICE)
    wt, bt = w.to(dtype), b.to(dtype)
    if node.op == "conv2d":
        a = node.attrs
        packed = k_conv.pack_weight(w, b, a.groups, dtype, layout="nhwc")
        xc, wc = x.to(memory_format=torch.channels_last), wt.to(memory_format=torch.channels_last)
        return (lambda cfg: k_conv.conv2d(xc, packed, stride=a.stride, padding=a.padding, dilation=a.dilation,
                                          activation="relu", tf32=tf32, config=cfg),
                {"torch": lambda: F.conv2d(x, wt, bt, a.stride, a.padding, a.dilation, a.groups).relu_(),
                 "torch:channels_last": lambda: F.conv2d(xc, wc, bt, a.stride, a.padding, a.dilation,
                                                         a.groups).relu_()})
    packed = k_linear.pack_weight(w, b, dtype)
    return (lambda cfg: k_linear.linear(x, packed, activation="relu", tf32=tf32, config=cfg),
            {"torch": lambda: F.linear(x, wt, bt).relu_()})


def ours_ttgir(node: Any, shapes: dict[str, Any], dtype: torch.dtype,
               config: gemm.GemmConfig | None) -> tuple[str, gemm.GemmConfig]:
    """The TTGIR of the channels-last GEMM as it runs this conv layer (the compiled kernel its launch returns),
    and the configuration it ran with."""
    a = node.attrs
    x = torch.randn(shapes["x"], device=runtime.DEVICE, dtype=dtype).to(memory_format=torch.channels_last)
    packed = k_conv.pack_weight(torch.randn(shapes["weight"], device=runtime.DEVICE), None, a.groups, dtype, "nhwc")
    out = torch.empty(shapes["out"], device=runtime.DEVICE, dtype=dtype).to(memory_format=torch.channels_last)
    (o, cg, kh, kw), (nb, _, oh, ow) = shapes["weight"], shapes["out"]
    config = config or gemm.default_config(nb * oh * ow, o // a.groups, cg, kh * kw, a.groups, runtime.sm_count())
    compiled = gemm.launch(x, packed, out, None, a.stride, a.padding, a.dilation, "relu", 0.0, 0.0, "ieee", config)
    return compiled.asm["ttgir"], config


def tune_layer(args, node, shapes, ours, reference, dtype: str) -> gemm.GemmConfig:
    """The fastest candidate of the pruned space that agrees with torch (`configs.tune`)."""
    if node.op == "linear":
        (n, k), m, taps, groups = shapes["weight"], int(np.prod(shapes["out"][:-1])), 1, 1
    else:
        (o, k, kh, kw), (nb, _, oh, ow) = shapes["weight"], shapes["out"]
        n, m, taps, groups = o // node.attrs.groups, nb * oh * ow, kh * kw, node.attrs.groups
    # nearest the default tile first, at most --tune-max of them (each costs a compile)
    cands = sorted(configs.candidates(m, n, k, taps, groups, runtime.sm_count()),
                   key=lambda c: (abs(np.log2(c.block_m * c.block_n / 128**2)), c.split_k, c.block_k))
    cands = cands[:2] if runtime.INTERPRET else cands[:args.tune_max]  # the dry run: the wiring only
    tol = "tf32" if args.tf32 and dtype == "float32" else dtype
    correct = lambda y: compare(y.float().cpu().numpy(), reference, tol).reason  # noqa: E731
    seconds = lambda fn: statistics.median(timer(args, tuning=True)(fn))  # noqa: E731
    best, trials = configs.tune(cands, ours, correct, seconds)
    rejected = sum(t.seconds is None for t in trials)
    print(f"    tuned {len(trials)} candidates ({rejected} rejected): {best}")
    return best


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


def peak_tflops() -> float | None:
    if runtime.INTERPRET:
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in TENSOR_TFLOPS.items() if k in name), None)


def bench_layers(args, base, model, batch, size, dtype, table, tuned) -> list[tuple[float, float]]:
    """Every layer shape: Triton (tuned config) vs torch NCHW and channels_last; returns (÷NCHW, ÷CL) ratios."""
    tdtype, bench, ratios, peak = runtime.DTYPES[dtype], timer(args), [], peak_tflops()
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = args.tf32
    tol = "tf32" if args.tf32 and dtype == "float32" else dtype
    print(f"\n{model} b{batch} {size}px {dtype}: layer  triton_ms  nchw_ms  cl_ms  ÷nchw  ÷cl  TFLOP/s"
          + (f" (of {peak:.0f})" if peak else ""))
    for name, node, shapes in layers(model, batch, size):
        ours, theirs = layer_fns(node, shapes, tdtype, args.tf32)
        key = layer_key(node, shapes, dtype)
        reference = theirs["torch"]().double().cpu().numpy()
        config = tuned.get(key) or (table.get(key) if table else None)
        if config is None and args.tune and time.monotonic() < args.tune_deadline:
            config = tuned[key] = tune_layer(args, node, shapes, ours, reference, dtype)
        agreement = compare(ours(config).float().cpu().numpy(), reference, tol)
        samples = {"triton": bench(lambda config=config, ours=ours: ours(config)),
                   **{k: bench(f) for k, f in theirs.items()}}
        med = {k: statistics.median(v) for k, v in samples.items()}
        cl = med.get("torch:channels_last", med["torch"])
        ratios.append((med["triton"] / med["torch"], med["triton"] / cl))
        flops = 2 * int(np.prod(shapes["out"])) * int(np.prod(shapes["weight"][1:]))
        layer = {"layer": name, "op": node.op, **shapes, "attrs": repr(node.attrs), "config": repr(config),
                 "config_key": key, "ratio_vs_torch": ratios[-1][0], "ratio_vs_channels_last": ratios[-1][1]}
        weights, acts = int(np.prod(shapes["weight"])), int(np.prod(shapes["x"])) + int(np.prod(shapes["out"]))
        itemsize = torch.empty(0, dtype=tdtype).element_size()
        memory = {"static_param_bytes": weights * itemsize, "static_activation_peak_bytes": acts * itemsize}
        info = {"flops": flops, "macs": flops // 2, "params": weights, "param_bytes": 4 * weights,
                "activation_sum_bytes": 4 * acts}  # float32 bytes, as the harness records them
        for backend, times in samples.items():
            append_record(args.output, record(base, f"{model}/{name}", backend, batch, size, dtype, times, flops,
                                              layer=layer, memory=memory, model_info=info,
                                              correctness={**agreement.to_dict(), "reference": "torch"}))
        if node.op == "conv2d" and shapes["weight"][2:] == (3, 3) and not runtime.INTERPRET and not args.dumped:
            dump = args.output.parent / f"{model}_{name}_b{batch}_{dtype}.ttgir"  # the 3×3 kernel, issue 20 item 5
            ttgir, cfg = ours_ttgir(node, shapes, tdtype, config)
            dump.write_text(ttgir)
            args.dumped = True
            print(f"    TTGIR of {name} written to {dump}: {gemm.async_loads(ttgir)} async-copy loads"
                  f" ({cfg.block_m}×{cfg.block_n}×{cfg.block_k} tile)")
        flag = "" if agreement.ok else f"  DISAGREES (max rel {agreement.max_rel:.2g})"
        print(f"  {name:28s} {med['triton'] * 1e3:8.3f} {med['torch'] * 1e3:8.3f} {cl * 1e3:8.3f}"
              f" {ratios[-1][0]:5.2f}× {ratios[-1][1]:5.2f}× {flops / med['triton'] / 1e12:7.1f}{flag}")
    return ratios


def bench_model(args, base, model, batch, size, dtype) -> None:
    g = models.build(model, batch=batch, image_size=size)
    params = models.init_params(g, seed=0, calibrate=False)
    x = torch.randn(g.inputs["input"].shape, generator=torch.Generator().manual_seed(0))
    tdtype, bench = runtime.DTYPES[dtype], timer(args)
    exe = TRITON.compile(g, params, dtype=dtype, tf32=args.tf32, cuda_graph=False)
    feed = {"input": x.to(runtime.DEVICE, tdtype)}
    with torch.inference_mode():
        replay, state = graphed(exe.artifact.execute, feed, True, runtime.INTERPRET)
    contenders: dict[str, Callable[[], Any]] = {"triton:cuda_graph=false": lambda: exe.artifact.execute(feed)[0]}
    if state == "on":
        contenders["triton"] = lambda: replay(feed)[0]
    else:
        print(f"  triton with a CUDA graph: skipped ({state})")
    info = analyse(g)
    model_info = {"flops": info.flops, "macs": info.macs, "params": info.params, "param_bytes": info.param_bytes,
                  "activation_sum_bytes": info.activation_sum_bytes}
    with torch.inference_mode():
        gm = torch_backend.lower(g, params, dtype, device=str(runtime.DEVICE))
        reference = torch_backend.lower(g, params, "float32", device=str(runtime.DEVICE))(x.to(runtime.DEVICE))[0]
        xt = x.to(runtime.DEVICE, tdtype)
        contenders["torch"] = lambda: gm(xt)[0]
        if args.no_compile or runtime.INTERPRET:
            print("  torch.compile: skipped" + (" (no GPU: the dry run)" if runtime.INTERPRET else ""))
        else:
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
                                 "fallback_nodes": list(exe.fallback_nodes)}} if label.startswith("triton") else {}
            append_record(args.output, record(base, model, label, batch, size, dtype, samples, info.flops,
                                              memory=memory, model_info=model_info, **extra,
                                              correctness={**agreement.to_dict(), "reference": "torch float32"}))
    line = "  ".join(f"{k} {batch / v:8.1f} img/s" for k, v in medians.items())
    print(f"{model} b{batch} {dtype}: {line}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-m", "--models", default="resnet50")
    p.add_argument("--batch", default="32", help="comma-separated batch sizes")
    p.add_argument("--dtype", default="float16", help="comma-separated: float32, float16, bfloat16")
    p.add_argument("--image-size", type=int, default=None, help="default: each model's own")
    p.add_argument("--tf32", action="store_true", help="TF32 float32 matmuls on both sides")
    p.add_argument("--tune", action="store_true", help="tune the layers the config table lacks, save the table")
    p.add_argument("--tune-max", type=int, default=8, help="candidates tuned per layer (nearest the default first)")
    p.add_argument("--tune-budget-s", type=float, default=150, help="stop tuning (defaults from then on) after this")
    p.add_argument("--no-layers", action="store_true")
    p.add_argument("--no-models", action="store_true")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile in the whole-model runs")
    p.add_argument("--warmup-ms", type=int, default=25)
    p.add_argument("--rep-ms", type=int, default=100)
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="default: reports/triton-gpu/triton_gpu.jsonl (the dry run: a temporary file)")
    p.add_argument("--allow-cpu", action="store_true", help="run under the interpreter (no timings worth reading)")
    p.add_argument("--dry-run", action="store_true", help="CPU wiring check: LeNet-5, batch 1, float32, under the "
                                                          "interpreter, GPU-only parts skipped with a message")
    args = p.parse_args()
    if args.dry_run:
        args.models, args.batch, args.dtype, args.allow_cpu, args.tune = "lenet5", "1", "float32", True, True
        args.output = args.output or Path(tempfile.mkdtemp()) / "triton_gpu_dry_run.jsonl"
        print("dry run: " + ("no CUDA GPU, the interpreter runs the kernels; tuning tries 2 candidates a layer and "
                             "saves nothing; CUDA graphs, torch.compile and the tensor-core peak are skipped"
                             if runtime.INTERPRET else "on the GPU"))
    if runtime.INTERPRET and not args.allow_cpu:
        sys.exit("no CUDA GPU here: the kernels would run under Triton's interpreter; pass --dry-run to smoke-test")
    args.output = args.output or Path("reports/triton-gpu/triton_gpu.jsonl")
    args.tune_deadline, args.dumped = time.monotonic() + args.tune_budget_s, False
    dtypes = args.dtype.split(",")
    base = {"schema": SCHEMA_VERSION, "run_id": uuid.uuid4().hex[:12], "device": TRITON.device(),
            "machine": fingerprint(), "calibration": {d: calibrate(d) for d in dtypes}}
    gpu = TRITON.device_name()
    table = config_table(None, gpu)
    tuned: dict[str, gemm.GemmConfig] = {}
    print(f"tuned configs: {table.path} ({len(table.configs)} layers)" if table else "tuned configs: none yet")
    summary = []
    for model in args.models.split(","):
        size = args.image_size or models.spec(model).image_size
        for dtype in dtypes:
            for batch in (int(b) for b in args.batch.split(",")):
                if not args.no_layers:
                    summary.append((model, dtype, batch, bench_layers(args, base, model, batch, size, dtype, table,
                                                                      tuned)))
                if tuned and gpu:  # saved before the model runs, which compile the plan with this table
                    import triton

                    table = configs.merged(table, gpu, triton.__version__, tuned)
                    path = configs.save(table, config_dirs()[1] / configs.file_name(gpu, triton.__version__))
                    configs.save(table, args.output.parent / path.name)
                    print(f"tuned configs saved: {path} and {args.output.parent / path.name}")
                    tuned = {}
                if not args.no_models:
                    bench_model(args, base, model, batch, size, dtype)
    for model, dtype, batch, ratios in summary:
        for k, what in ((0, "cuDNN NCHW"), (1, "cuDNN channels_last")):
            rs = [r[k] for r in ratios]
            geo = float(np.exp(np.mean(np.log(rs))))
            print(f"{model} {dtype} b{batch}: {len(rs)} layer shapes, triton/{what} time: geomean {geo:.2f}×, "
                  f"worst {max(rs):.2f}×, within 1.1×: {sum(r <= 1.1 for r in rs)}, within 1.5×: "
                  f"{sum(r <= 1.5 for r in rs)}")
    print(f"records appended to {args.output}")


if __name__ == "__main__":
    main()
