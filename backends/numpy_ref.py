"""The NumPy reference backend: the interpreter loop over each op's reference implementation.

float32 by default; ``dtype="float64"`` gives the oracle every other backend is judged against.
Parameters are cast once, at compile time. ``passes=`` applies a pass pipeline first ("none" by default);
``memory_plan=True`` (implied by the "all" pipeline) runs every activation out of one planned arena.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import interpreter, ops
from ..ir.passes import plan_memory
from .base import Options, option
from .numpy_arena import arena_runner
from .template import Built, Prepared, TemplateBackend


@dataclass(frozen=True)
class NumpyOptions(Options):
    memory_plan: bool | None = option(None, "run every activation out of one planned arena (default: when the "
                                            "pipeline planned memory, as 'all' does)")


@dataclass(frozen=True)
class NumpyDetails:
    memory_plan: dict | None  # the arena's figures (MemoryPlan.to_dict) when it ran in one


class NumpyBackend(TemplateBackend):
    name = "numpy"
    Options = NumpyOptions
    dtypes = ("float32", "float64")
    table = "ir/ops/ (each op's reference)"

    def available(self) -> tuple[bool, str]:
        return True, f"numpy {np.__version__}"

    def version(self) -> str:
        return np.__version__

    def lowered_ops(self) -> frozenset[str]:
        return frozenset(ops.names())  # every registered op carries its reference: the registry is the table

    def param_dtype(self, options: NumpyOptions) -> str:
        return options.dtype  # passes run on the backend's dtype, so the float64 oracle folds BN in float64

    def build(self, prepared: Prepared) -> Built:
        graph, weights, opts = prepared.graph, prepared.params, prepared.options
        dtype, plan = opts.dtype, prepared.pipeline.plan
        # arena mode: asked for, or implied by a pipeline that planned memory (memory_plan=False opts out)
        use_arena = opts.memory_plan if opts.memory_plan is not None else plan is not None
        if use_arena:
            plan = plan or plan_memory(graph, itemsize=np.dtype(dtype).itemsize)
            run, _ = arena_runner(graph, weights, plan, dtype)
            return Built(run, artifact=plan, details=NumpyDetails(plan.to_dict()))
        input_names = list(graph.inputs)

        def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
            feed = {n: np.asarray(x, dtype=dtype) for n, x in zip(input_names, inputs, strict=True)}
            return interpreter.run(graph, weights, feed)

        return Built(run, details=NumpyDetails(None))


BACKEND = NumpyBackend()
