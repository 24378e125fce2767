"""convbench's OpenVINO backend against OpenVINO reading convbench's own ONNX export, and the peers, one process each.

Engines (each timed in its own child process, rotated over rounds so drift from other load hits all alike):

- ``openvino``: the backend (the IR lowered with the opset API, BN folded at lowering);
- ``openvino-onnx``: OpenVINO reading ``convbench.ir.onnx_export.to_onnx`` of the same graph and weights, compiled
  with the same properties (INFERENCE_PRECISION_HINT, PERFORMANCE_HINT latency, INFERENCE_NUM_THREADS) and called
  through the same one-request NumPy-in/NumPy-out loop: the same engine, so the ratio should be ~1;
- ``onnxruntime`` and ``torch``: convbench's backends at their defaults, the same threads.

Each child checks its output against the float64 reference, warms up, then times calls for ``--seconds``; it prints
one JSON line (median and p90 ms). The figure per engine is the median over rounds of the child medians.

``--cache`` instead measures model caching: a first compile into an empty ``cache_dir`` and a second one, each in a
fresh process (what a second ``convbench run`` of the same case sees), after OpenVINO's own start in that process
(the Core and its CPU plugin, timed apart: every process pays it once, cache or not).

    .venv/bin/python benchmarks/openvino_vs_peers.py --model resnet50 --batch 1 --threads 2 --rounds 5
    .venv/bin/python benchmarks/openvino_vs_peers.py --cache --model resnet18
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ENGINES = ("openvino", "openvino-onnx", "onnxruntime", "torch")


def _workload(model: str, batch: int, image_size: int | None):
    from convbench import models

    g = models.build(model, batch=batch, image_size=image_size)
    params = models.init_params(g, seed=0)
    x = np.random.default_rng(0).standard_normal(g.inputs["input"].shape).astype(np.float32)
    return g, params, x


def _openvino_onnx(g, params, threads: int, precision: str):
    """OpenVINO reading the ONNX export, the properties and call loop the backend uses."""
    import openvino as ov

    from convbench.ir.onnx_export import to_onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"{g.name}.onnx")
        to_onnx(g, params, path, check=False)
        core = ov.Core()
        compiled = core.compile_model(core.read_model(path), "CPU", {
            "INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads})
    assert compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == precision
    request = compiled.create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:
        request.infer({0: np.ascontiguousarray(x)}, share_inputs=True, share_outputs=True)
        return np.array(request.get_output_tensor(0).data, copy=True)

    return run


def child(args: argparse.Namespace) -> None:
    from convbench.backends import get
    from convbench.backends.correctness import compare
    from convbench.testing.cases import reference_outputs

    g, params, x = _workload(args.model, args.batch, args.image_size)
    start = time.perf_counter()
    if args.engine == "openvino-onnx":
        fn = _openvino_onnx(g, params, args.threads, args.precision)
    else:
        extra = {"precision": args.precision} if args.engine == "openvino" else {}
        fn = get(args.engine).compile(g, params, threads=args.threads, **extra)
    compile_s = time.perf_counter() - start
    (ref,) = reference_outputs(g, params, {"input": x})
    ok = compare(fn(x), ref, {"f32": "float32", "bf16": "bfloat16"}[args.precision]).ok
    for _ in range(5):
        fn(x)
    times, end = [], time.perf_counter() + args.seconds
    while time.perf_counter() < end or len(times) < 10:
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    print(json.dumps({"engine": args.engine, "ok": ok, "compile_s": compile_s, "n": len(times),
                      "median_ms": 1e3 * float(np.median(times)), "p90_ms": 1e3 * float(np.percentile(times, 90))}))


def _spawn(*argv: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def cache(args: argparse.Namespace) -> None:
    if args.cache_child:
        from convbench.backends import get

        g, params, _ = _workload(args.model, args.batch, args.image_size)
        backend, start = get("openvino"), time.perf_counter()
        backend.available(), backend.precisions()  # OpenVINO's per-process start: the Core and its CPU plugin
        startup_s = time.perf_counter() - start
        exe = backend.compile(g, params, threads=args.threads, cache_dir=args.cache_child)
        d = exe.report.details
        print(json.dumps({"compile_s": exe.report.compile_s, "ov_compile_s": d.ov_compile_s, "lower_s": d.lower_s,
                          "startup_s": startup_s, "loaded_from_cache": d.loaded_from_cache}))
        return
    with tempfile.TemporaryDirectory() as tmp:
        size = [] if args.image_size is None else ["--image-size", str(args.image_size)]
        common = ["--cache", "--model", args.model, "--batch", str(args.batch), "--threads", str(args.threads), *size]
        first, second = (_spawn(*common, "--cache-child", tmp) for _ in range(2))
    print(f"{args.model} b{args.batch}: load average {os.getloadavg()[0]:.2f}")
    for name, r in (("first", first), ("second", second)):
        print(f"  {name:6s} compile {r['compile_s']:.3f} s (OpenVINO compile_model {r['ov_compile_s']:.3f} s, "
              f"lowering {r['lower_s']:.3f} s), loaded_from_cache={r['loaded_from_cache']}; before it, "
              f"OpenVINO's start in the process {r['startup_s']:.3f} s")
    print(f"  first / second: {first['compile_s'] / second['compile_s']:.1f}× (compile_model alone "
          f"{first['ov_compile_s'] / second['ov_compile_s']:.1f}×)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--image-size", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="f32", choices=("f32", "bf16"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--engine", help=argparse.SUPPRESS)  # set in a child
    ap.add_argument("--cache", action="store_true", help="measure the first and the second compile with cache_dir")
    ap.add_argument("--cache-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.cache:
        return cache(args)
    if args.engine:
        return child(args)
    engines = args.engines.split(",")
    size = [] if args.image_size is None else ["--image-size", str(args.image_size)]
    common = ["--model", args.model, "--batch", str(args.batch), "--threads", str(args.threads),
              "--precision", args.precision, "--seconds", str(args.seconds), *size]
    load = [os.getloadavg()[0]]
    results: dict[str, list[dict]] = {e: [] for e in engines}
    for r in range(args.rounds):
        for e in engines[r % len(engines):] + engines[: r % len(engines)]:  # rotated: no engine always goes first
            results[e].append(_spawn(*common, "--engine", e))
        load.append(os.getloadavg()[0])
    print(f"{args.model} b{args.batch} {args.precision}, {args.threads} threads, {args.rounds} rounds of "
          f"{args.seconds:g} s; load average {min(load):.2f}–{max(load):.2f}")
    medians = {e: float(np.median([x["median_ms"] for x in rs])) for e, rs in results.items()}
    base = medians.get("openvino")
    for e, rs in results.items():
        ratio = f"  {medians[e] / base:.3f}× the backend" if base and e != "openvino" else ""
        print(f"  {e:14s} median {medians[e]:8.2f} ms  p90 {np.median([x['p90_ms'] for x in rs]):8.2f} ms  "
              f"correct {all(x['ok'] for x in rs)}{ratio}")


if __name__ == "__main__":
    main()
