"""pytest-benchmark suite: every backend available here × a few models (not part of `make test`).

    pytest benchmarks/test_backends.py --benchmark-only                     # all
    pytest benchmarks/test_backends.py --benchmark-only -k "torch and lenet5"
    pytest benchmarks/test_backends.py --benchmark-only -k "not triton"     # no GPU: Triton's interpreter is slow
    pytest benchmarks/ --benchmark-only --benchmark-save=base; … --benchmark-compare=0001

Each benchmark first checks the executable against the float64 reference (a fast wrong answer is not a
result), then lets pytest-benchmark time calls of it. Threads follow OMP_NUM_THREADS; the sweep harness
(`convbench run`) is the tool for isolated, resumable, reported measurements.
"""

from __future__ import annotations

import functools
import os

import pytest

import convbench as cb
from convbench.backends.correctness import compare
from convbench.bench.workload import compile_options, make_workload, reference

# (model, image size, batch): a tiny net, a real one at reduced and at full size.
WORKLOADS = [("lenet5", None, 1), ("lenet5", None, 8), ("resnet18", 64, 1), ("resnet18", 64, 8),
             ("resnet18", None, 1)]


def _available() -> list[str]:
    out = []
    for name in cb.backends.names():
        try:
            if cb.backends.get(name).available()[0]:
                out.append(name)
        except Exception:  # a backend that does not import is simply not benchmarked here
            continue
    return out


@functools.cache
def _workload(model: str, size: int | None, batch: int):
    w = make_workload(model, batch, size)  # what a sweep's case runs, with its float64 reference
    return w.graph, w.params, w.input, reference(w)


@pytest.mark.parametrize("backend", _available())
@pytest.mark.parametrize(("model", "size", "batch"), WORKLOADS,
                         ids=[f"{m}-{s or 'full'}-b{b}" for m, s, b in WORKLOADS])
def test_forward(benchmark, backend, model, size, batch):
    g, params, x, ref = _workload(model, size, batch)
    threads = int(os.environ.get("OMP_NUM_THREADS", "0")) or None
    b = cb.backends.get(backend)
    exe = b.compile(g, params, **compile_options(b, "float32", threads, {}))  # threads where it is an option
    agreement = compare(exe(x), ref, exe.report.accuracy_dtype if exe.report else "float32")
    assert agreement.ok, agreement.reason
    report = exe.report.to_dict() if exe.report else {}
    benchmark.extra_info.update({"flops": cb.analysis.summarize(g).flops, "batch": batch,
                                 "max_rel": agreement.max_rel, **{k: str(v) for k, v in report.items()}})
    benchmark(exe, x)
