"""TVM with the shipped tuning database against torch eager (and ONNX Runtime), same process, same threads.

    python benchmarks/tvm_vs_torch.py -m resnet50 --batch 1,8 --threads 2 -o reports/tvm

Each candidate is compiled through its backend exactly as `convbench run` would (TVM picks up the database
shipped for the model and this CPU by itself; ``exe.report.details`` says how much of the graph it covered),
checked against the float64 reference, then timed in interleaved rounds (see ``tvm_curve.time_rounds``). Writes
``tvm_vs_torch_<model>.csv`` under ``-o`` and prints the table; ``× torch`` above 1 means faster than torch.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-m", "--model", default="resnet50")
    p.add_argument("--batch", default="1,8")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=3)
    p.add_argument("--pause", type=float, default=0.5)
    p.add_argument("-o", "--out", type=Path, default=ROOT / "reports" / "tvm")
    args = p.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    import numpy as np
    import pandas as pd
    from tvm_curve import time_rounds

    import convbench as cb
    from convbench.backends.correctness import compare

    rows = []
    for batch in (int(b) for b in args.batch.split(",")):
        graph = cb.models.build(args.model, batch=batch, image_size=args.image_size)
        params = cb.models.init_params(graph, seed=0)
        x = np.random.default_rng(0).standard_normal(graph.inputs["input"].shape).astype(np.float32)
        ref = cb.backends.get("numpy").compile(graph, params, dtype="float64")(x.astype(np.float64))
        runs, info = {}, {}
        for name in ("tvm", "torch", "onnxruntime"):
            backend = cb.backends.get(name)
            if not backend.available()[0]:
                continue
            start = time.perf_counter()
            exe = backend.compile(graph, params, threads=args.threads)
            info[name] = {"compile_s": round(time.perf_counter() - start, 1),
                          "max_rel_error": float(f"{compare(exe(x), ref, 'float32').max_rel:.3g}")}
            if name == "tvm":
                d = exe.report.details
                info[name].update(db_hits=d.db_hits, db_tasks=d.db_tasks, db_hand_hits=d.db_hand_hits,
                                  warnings="; ".join(exe.report.warnings),
                                  db_trials_per_task=(d.db_tuning or {}).get("trials_per_task"),
                                  db_tuning_s=(d.db_tuning or {}).get("tuning_s"))
            runs[name] = exe
        timings = time_rounds(runs, x, args.rounds, args.calls, args.pause)
        torch_ms = timings["torch"]["median_ms"]
        for name in runs:
            rows.append({"model": args.model, "batch": batch, "threads": args.threads, "backend": name,
                         **timings[name], "x_torch": round(torch_ms / timings[name]["median_ms"], 3),
                         "images_per_s": round(batch / timings[name]["median_ms"] * 1e3, 1), **info[name]})
        del runs
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / f"tvm_vs_torch_{args.model}.csv", index=False)
    print(table.drop(columns=["warnings"], errors="ignore").to_string(index=False))
    for w in table.get("warnings", pd.Series(dtype=str)).dropna():
        if w:
            print("warning:", w)
    return 0


if __name__ == "__main__":
    sys.exit(main())
