"""The NumPy reference against torch eager on one model, same process, same thread count, rounds interleaved.

The foundation's goal: the reference (im2col + one BLAS matmul per group, no graph passes) within 2× of torch's
time on ResNet-50, batch 1, 224×224. Also reports the reference with the "default" pass pipeline (BN folded, conv
epilogues fused), which is what `convbench run -b numpy` can be asked for.

    python benchmarks/reference_vs_torch.py [-m resnet50] [--batch 1] [--threads 2] [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-m", "--model", default="resnet50")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--calls", type=int, default=5, help="timed calls per candidate per round")
    args = p.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before numpy/torch load their BLAS

    import numpy as np
    import torch

    import convbench as cb

    torch.set_num_threads(args.threads)
    g = cb.models.build(args.model, batch=args.batch, image_size=args.image_size)
    params = cb.models.init_params(g, seed=0)
    x = np.random.default_rng(0).standard_normal(g.inputs["input"].shape).astype(np.float32)
    candidates = {
        "torch eager": cb.backends.get("torch").compile(g, params, threads=args.threads),
        "numpy reference": cb.backends.get("numpy").compile(g, params),
        "numpy passes=default": cb.backends.get("numpy").compile(g, params, passes="default"),
    }
    ref = candidates["numpy reference"](x)
    for name, exe in candidates.items():
        err = np.abs(exe(x) - ref).max() / np.abs(ref).max()
        print(f"{name:22s} max rel diff vs reference {err:.2e}")
    samples: dict[str, list[float]] = {k: [] for k in candidates}
    for _ in range(args.rounds):
        for name, exe in candidates.items():
            for _ in range(args.calls):
                t0 = time.perf_counter()
                exe(x)
                samples[name].append(time.perf_counter() - t0)
    base = statistics.median(samples["torch eager"])
    print(f"\n{args.model} batch {args.batch}, {args.threads} threads, {args.rounds}×{args.calls} calls each")
    for name, s in samples.items():
        med = statistics.median(s)
        q = statistics.quantiles(s, n=4)
        print(f"{name:22s} median {med * 1e3:8.1f} ms  IQR {(q[2] - q[0]) * 1e3:6.1f} ms  "
              f"{med / base:5.2f}× torch eager's time")


if __name__ == "__main__":
    main()
