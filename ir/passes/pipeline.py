"""Named pass pipelines and the loop that runs them, verifying the graph after every pass.

| pipeline | passes                                                                                   |
|----------|------------------------------------------------------------------------------------------|
| none     | —                                                                                        |
| default  | remove_identity, fold_batch_norm, constant_fold, dead_code, fuse                         |
| all      | default, then plan_memory (one arena for every activation; the numpy backend runs in it) |

A pipeline may also be given as pass names, a list or one string joined by "+" (``convbench passes -p
fold_batch_norm`` ablates that pass alone).
``fuse`` creates fused nodes only where the target backend's ``supports`` accepts them, so every pipeline
yields a graph the backend can run. ``plan_memory`` is an analysis, not a rewrite: it comes last.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import IRError
from ..graph import Graph, Node
from ..verify import verify
from .constant_fold import fold_constants
from .dead_code import eliminate_dead_code
from .fold_batch_norm import fold_batch_norm
from .fuse import fuse
from .memory_plan import MemoryPlan, plan_memory
from .remove_identity import remove_identity

Params = dict[str, np.ndarray]
Supports = Callable[[Node], bool]


@dataclass(frozen=True)
class Pass:
    name: str
    run: Callable[[Graph, Params, Supports | None], tuple[Graph, Params]]
    summary: str


def _graph_only(fn: Callable[[Graph, Supports | None], Graph]
                ) -> Callable[[Graph, Params, Supports | None], tuple[Graph, Params]]:
    """Adapt a ``graph -> graph`` pass: the parameters follow the graph (the ones it no longer reads go)."""

    def run(graph: Graph, params: Params, supports: Supports | None) -> tuple[Graph, Params]:
        new = fn(graph, supports)
        return new, {k: params[k] for k in new.params if k in params}

    return run


# The explicit list of passes, in the order the "all" pipeline applies them.
PASSES: dict[str, Pass] = {p.name: p for p in (
    Pass("remove_identity", _graph_only(lambda g, s: remove_identity(g)), "drop dropout and no-op nodes"),
    Pass("fold_batch_norm", lambda g, p, s: fold_batch_norm(g, p), "fold BN into the conv/linear before it"),
    Pass("constant_fold", lambda g, p, s: fold_constants(g, p), "evaluate nodes that read only parameters"),
    Pass("dead_code", _graph_only(lambda g, s: eliminate_dead_code(g)), "drop nodes no output depends on"),
    Pass("fuse", _graph_only(fuse), "conv/linear + residual add + activation as one node"),
)}
PLAN_MEMORY = "plan_memory"

DEFAULT = ("remove_identity", "fold_batch_norm", "constant_fold", "dead_code", "fuse")
PIPELINES: dict[str, tuple[str, ...]] = {"none": (), "default": DEFAULT, "all": (*DEFAULT, PLAN_MEMORY)}


@dataclass(frozen=True)
class PassRecord:
    name: str
    nodes_before: int
    nodes_after: int
    seconds: float


@dataclass(frozen=True)
class PipelineResult:
    graph: Graph
    params: Params
    pipeline: str  # the name asked for, or the pass names joined with "+"
    passes: tuple[str, ...]
    records: tuple[PassRecord, ...] = ()
    plan: MemoryPlan | None = None

    def describe(self) -> dict:
        """What result files record about the pipeline that ran."""
        d = {"pipeline": self.pipeline, "passes": list(self.passes),
             "nodes": [self.records[0].nodes_before if self.records else len(self.graph), len(self.graph)]}
        if self.plan is not None:
            d["memory_plan"] = self.plan.to_dict()
        return d


def resolve(pipeline: str | Sequence[str] | None) -> tuple[str, tuple[str, ...]]:
    """(display name, pass names) for a pipeline name, or pass names: a list, or one string joined by "," or
    "+" (the display name joins them with "+", so it resolves to the same passes)."""
    if pipeline is None:
        return "none", ()
    if isinstance(pipeline, str) and pipeline in PIPELINES:
        return pipeline, PIPELINES[pipeline]
    parts = pipeline.replace("+", ",").split(",") if isinstance(pipeline, str) else pipeline
    names = tuple(p.strip() for p in parts if p.strip())
    known = (*PASSES, PLAN_MEMORY)
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise IRError(f"unknown pipeline or pass(es) {unknown or [pipeline]}; pipelines: {', '.join(PIPELINES)}; "
                      f"passes: {', '.join(known)}")
    if PLAN_MEMORY in names[:-1]:
        raise IRError(f"{PLAN_MEMORY} plans the final graph: it must be the last pass, got {list(names)}")
    return "+".join(names), names


def run_pipeline(graph: Graph, params: Mapping[str, np.ndarray], pipeline: str | Sequence[str] | None = "default",
                 supports: Supports | None = None, itemsize: int | None = None) -> PipelineResult:
    """Apply a pipeline; ``supports`` is the target backend's capability query (for ``fuse``), ``itemsize``
    the element size the backend computes in (for ``plan_memory``). Inputs are not modified."""
    name, names = resolve(pipeline)
    params = dict(params)
    records, plan = [], None
    for pass_name in names:
        start, before = time.perf_counter(), len(graph)
        if pass_name == PLAN_MEMORY:
            plan = plan_memory(graph, itemsize=itemsize)
        else:
            try:
                graph, params = PASSES[pass_name].run(graph, params, supports)
                verify(graph)
            except IRError as e:
                raise IRError(f"pass {pass_name!r} on {graph.name}: {e}") from e
        records.append(PassRecord(pass_name, before, len(graph), time.perf_counter() - start))
    return PipelineResult(graph, params, name, names, tuple(records), plan)
