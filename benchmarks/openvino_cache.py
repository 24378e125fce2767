"""The OpenVINO backend's compile with ``cache_dir``: the first compile (an empty cache) against a second one, each in a
fresh process (issue 16: "a second compile with cache_dir set is at least 5× faster than the first").

Each round takes a new empty cache directory and runs, each in its own child process (bench/launch.py), first
``cold`` (the entry and OpenVINO's blob are written), then ``warm`` (convbench's entry and OpenVINO's blob are
loaded); with ``--plain`` also a compile without ``cache_dir``, for what caching costs the first compile. A child
builds the workload (seeded: every child has the same graph and weights), sets the backend up (``available()``:
``import openvino`` and its device plugins, ~0.1-0.2 s a process pays once whatever it compiles, reported apart as
``setup``), times ``backend.compile`` (the figure is the template's ``report.compile_s``: options, verify, the cache,
pipeline, lowering, OpenVINO, the read-back; the first compile of its process), runs it once, and reports the parts
and a hash of the output, so cold and warm are shown to compute the same. The ratio is printed for compile_s and
for setup + compile_s (a whole fresh process's share).

    cd /work/main && .venv/bin/python benchmarks/openvino_cache.py -m resnet50 --batch 1 --threads 2 --rounds 3
    .venv/bin/python benchmarks/openvino_cache.py -m lenet5 --image-size 32 --rounds 1 --plain   # a smoke run
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODULE = "benchmarks.openvino_cache"
TARGET = 5.0  # the acceptance: warm at least 5× faster than cold


def compile_once(job: dict[str, Any]) -> dict[str, Any]:
    """The child: one compile, timed by the template, one run, its parts reported."""
    import numpy as np

    from convbench.backends import get
    from convbench.bench.workload import make_workload

    w = make_workload(job["model"], job["batch"], job["image_size"])
    start = time.perf_counter()
    backend = get("openvino")
    ok, why = backend.available()  # imports openvino, loads its device plugins: once per process
    if not ok:
        return {"status": "unsupported", "message": why}
    setup_s = time.perf_counter() - start
    options = {"threads": job["threads"], "precision": job["precision"]}
    if job["cache_dir"] is not None:
        options["cache_dir"] = job["cache_dir"]
    exe = backend.compile(w.graph, w.params, **options)
    out = np.ascontiguousarray(exe(w.input), dtype=np.float32)
    d, r = exe.report.details, exe.report
    return {"status": "ok", "compile_s": r.compile_s, "setup_s": setup_s, "cache_hit": d.cache_hit,
            "loaded_from_cache": d.loaded_from_cache, "lower_s": d.lower_s, "ov_compile_s": d.ov_compile_s,
            "cache_s": d.cache_s, "rest_s": r.compile_s - d.cache_s - d.lower_s - d.ov_compile_s,
            "precision_ran": d.precision_ran, "warnings": list(r.warnings),
            "output_sha1": hashlib.sha1(out.tobytes()).hexdigest()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-m", "--model", default="resnet50")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--image-size", type=int, default=None, help="default: the model's own")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", default="f32")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--plain", action="store_true", help="also a compile without cache_dir each round")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per child")
    args = p.parse_args()
    from convbench.bench.launch import child_env, run_child

    env = {**child_env(args.threads), "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                                                   os.environ.get("PYTHONPATH")]))}
    kinds = ("plain", "cold", "warm") if args.plain else ("cold", "warm")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ov-cache-bench-") as tmp:
        for r in range(args.rounds):
            cache_dir = Path(tmp) / f"cache-{r}"  # empty each round: the cold compile fills it
            for kind in kinds:
                job = {"model": args.model, "batch": args.batch, "image_size": args.image_size,
                       "threads": args.threads, "precision": args.precision,
                       "cache_dir": None if kind == "plain" else str(cache_dir)}
                child = run_child(MODULE, job, env, args.timeout, Path(tmp))
                row = {"round": r, "kind": kind, "status": child.status, **child.result}
                rows.append(row)
                if child.status != "ok":
                    print(f"round {r} {kind}: {child.status}: {child.result.get('message')}", file=sys.stderr)
                    return 1
                print(f"round {r} {kind:>5}: setup {row['setup_s']:.3f}, compile_s {row['compile_s']:.3f}  "
                      f"(cache {row['cache_s']:.3f}, "
                      f"lower {row['lower_s']:.3f}, openvino {row['ov_compile_s']:.3f}, the rest "
                      f"{row['rest_s']:.3f}; hit {row['cache_hit']}, "
                      f"openvino blob {row['loaded_from_cache']})", file=sys.stderr)
    _summary(rows, args)
    return 0


def _summary(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    by = {(r["round"], r["kind"]): r for r in rows}
    ratios = [by[k, "cold"]["compile_s"] / by[k, "warm"]["compile_s"] for k in range(args.rounds)]
    whole = [(by[k, "cold"]["compile_s"] + by[k, "cold"]["setup_s"]) / (by[k, "warm"]["compile_s"]
                                                                         + by[k, "warm"]["setup_s"])
             for k in range(args.rounds)]
    same = all(by[k, "cold"]["output_sha1"] == by[k, "warm"]["output_sha1"] for k in range(args.rounds))
    hits = all(by[k, "warm"]["cache_hit"] and by[k, "warm"]["loaded_from_cache"] for k in range(args.rounds))
    print(f"\n{args.model} b{args.batch}, {args.precision}, {args.threads} thread(s), {args.rounds} round(s), "
          f"each compile in a fresh process")
    for kind in ("plain", "cold", "warm"):
        times = [r["compile_s"] for r in rows if r["kind"] == kind]
        if times:
            print(f"{kind:>5} compile_s: median {statistics.median(times):.3f} s  "
                  f"({', '.join(f'{t:.3f}' for t in times)})")
    med = statistics.median(ratios)
    print(f"cold / warm: median {med:.2f}× (per round {', '.join(f'{x:.2f}' for x in ratios)}); "
          f"target ≥ {TARGET:g}×: {'met' if med >= TARGET else 'NOT met'}; warm hit both caches: {hits}; "
          f"cold and warm outputs identical: {same}")
    print(f"(setup + compile_s) cold / warm: median {statistics.median(whole):.2f}× "
          f"(per round {', '.join(f'{x:.2f}' for x in whole)})")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1].endswith("job.json"):  # a child started by bench/launch.py
        from convbench.bench.launch import child_main

        sys.exit(child_main(sys.argv[1:], compile_once))
    sys.exit(main())
