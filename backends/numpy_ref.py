"""The NumPy reference backend: the interpreter loop over each op's reference implementation.

float32 by default; ``dtype="float64"`` gives the oracle every other backend is judged against.
Parameters are cast once, at compile time. ``passes=`` applies a pass pipeline first ("none" by default);
``memory_plan=True`` (implied by the "all" pipeline) runs every activation out of one planned arena.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..ir import interpreter
from ..ir.graph import Graph, Node
from ..ir.passes import plan_memory, run_pipeline
from ..ir.verify import verify
from .base import BackendError, Executable
from .numpy_arena import arena_runner

DTYPES = ("float32", "float64")


class NumpyBackend:
    name = "numpy"
    dtypes = DTYPES

    def available(self) -> tuple[bool, str]:
        return True, f"numpy {np.__version__}"

    def version(self) -> str:
        return np.__version__

    def device(self) -> str:
        return "cpu"

    def supports(self, node: Node) -> bool:
        return True  # every registered op carries its reference

    def compile(self, graph: Graph, params: Mapping[str, np.ndarray], dtype: str = "float32",
                **options: Any) -> Executable:
        if dtype not in DTYPES:
            raise BackendError(f"numpy backend: dtype {dtype!r} is not supported; use one of {DTYPES}")
        unknown = set(options) - {"threads", "fallback", "passes", "memory_plan"}
        if unknown:
            raise BackendError(f"numpy backend: unknown option(s) {sorted(unknown)}")
        start = time.perf_counter()
        verify(graph)
        # passes run on the backend's dtype, so the float64 oracle folds BN in float64
        itemsize = np.dtype(dtype).itemsize
        pipeline = run_pipeline(graph, cast_params(graph, params, dtype), options.get("passes"), self.supports,
                                itemsize)
        graph = pipeline.graph
        weights = cast_params(graph, pipeline.params, dtype)
        info = {"dtype": dtype, "passes": pipeline.pipeline, "pipeline": pipeline.describe()}
        # arena mode: asked for, or implied by a pipeline that planned memory (memory_plan=False opts out)
        if options.get("memory_plan", pipeline.plan is not None):
            plan = pipeline.plan or plan_memory(graph, itemsize=itemsize)
            run, _ = arena_runner(graph, weights, plan, dtype)
            info["memory_plan"] = plan.to_dict()
        else:
            frees = interpreter.last_uses(graph)
            input_names = list(graph.inputs)

            def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
                feed = {n: np.asarray(x, dtype=dtype) for n, x in zip(input_names, inputs, strict=True)}
                return interpreter.run(graph, weights, feed, frees=frees)

        info["compile_s"] = time.perf_counter() - start
        return Executable(graph, self.name, run, info)


def cast_params(graph: Graph, params: Mapping[str, np.ndarray], dtype: str) -> dict[str, np.ndarray]:
    """The graph's parameters as contiguous arrays of ``dtype``; a missing or misshapen one is named."""
    missing = [p for p in graph.params if p not in params]
    if missing:
        raise BackendError(f"{graph.name}: {len(missing)} parameter(s) missing, e.g. {missing[:3]}")
    out = {}
    for name, t in graph.params.items():
        a = np.asarray(params[name])
        if a.shape != t.shape:
            raise BackendError(f"{graph.name}: parameter {name!r} has shape {a.shape}, the graph expects {t.shape}")
        out[name] = np.ascontiguousarray(a, dtype=dtype)
    return out


BACKEND = NumpyBackend()
