"""ONNX Runtime against torch eager on the same graph, weights, threads and NumPy-in/NumPy-out boundary.

Variants: the torch backend (eager fx module, BN folded, channels_last: its default), the torch backend in NCHW,
and the onnxruntime backend (intra-op spinning off, its default). Each is first checked against the float64
reference. Calls are interleaved round-robin, one call of each variant per round, so drift from other load on the
machine hits every variant alike; the figure is the median over rounds of the per-round ratio torch / ORT
(> 1: ORT is faster), with the 25th-75th percentile of those ratios.

Second experiment, why ``spinning`` is off by default: torch is timed right after an ORT call, in alternation
after an ORT session whose idle threads spin and after one whose threads sleep.

    .venv/bin/python benchmarks/ort_vs_torch.py --model resnet50 --batch 1 --threads 2 --rounds 30
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from convbench import models
from convbench.backends import get
from convbench.backends.correctness import compare
from convbench.testing.cases import reference_outputs


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, q2, q3 = np.percentile(values, [25, 50, 75])
    return float(q1), float(q2), float(q3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--image-size", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()

    g = models.build(args.model, batch=args.batch, image_size=args.image_size)
    params = models.init_params(g, seed=0)
    x = np.random.default_rng(0).standard_normal(g.inputs["input"].shape).astype(np.float32)
    (ref,) = reference_outputs(g, params, {"input": x})
    torch_be, ort_be = get("torch"), get("onnxruntime")
    variants = {
        "torch eager (channels_last)": torch_be.compile(g, params, threads=args.threads),
        "torch eager (NCHW)": torch_be.compile(g, params, threads=args.threads, channels_last=False),
        "onnxruntime": ort_be.compile(g, params, threads=args.threads),
    }
    print(f"{args.model} batch {args.batch} input {g.inputs['input'].shape[2:]}, {args.threads} threads, "
          f"{args.rounds} rounds")
    for name, exe in variants.items():
        a = compare(exe(x), ref, "float32")
        print(f"  {name:28s} correct: {a.ok} (max rel err {a.max_rel:.2e}, top-1 {a.top1})")
        for _ in range(3):
            exe(x)

    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, exe in variants.items():
            samples[name].append(timed(lambda exe=exe: exe(x)))
    ort = samples["onnxruntime"]
    print(f"\n  {'variant':28s} {'median ms':>10s} {'IQR ms':>16s}   torch/ORT per round: median [p25, p75]")
    for name, s in samples.items():
        q1, q2, q3 = quartiles(s)
        line = f"  {name:28s} {q2 * 1e3:10.1f} {q1 * 1e3:7.1f}–{q3 * 1e3:<7.1f}"
        if name != "onnxruntime":
            r1, r2, r3 = quartiles([t / o for t, o in zip(s, ort, strict=True)])
            line += f"   {r2:.2f}× [{r1:.2f}, {r3:.2f}]"
        print(line)

    spinning = ort_be.compile(g, params, threads=args.threads, spinning=True)
    sleeping = variants["onnxruntime"]
    after: dict[str, list[float]] = {"spinning": [], "sleeping": []}
    torch_exe = variants["torch eager (channels_last)"]
    for _ in range(args.rounds):
        for label, session in (("spinning", spinning), ("sleeping", sleeping)):
            session(x)
            after[label].append(timed(lambda: torch_exe(x)))
    spin, sleep = quartiles(after["spinning"])[1], quartiles(after["sleeping"])[1]
    print(f"\n  torch right after an ORT call whose threads spin: {spin * 1e3:.1f} ms; sleep: {sleep * 1e3:.1f} ms "
          f"({spin / sleep:.2f}×)")


if __name__ == "__main__":
    main()
