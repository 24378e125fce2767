"""Which passes of a pipeline still apply to a model's train step (``convbench passes --train``).

For each pass of the pipeline, in order, on the inference graph and on the train-step graph (`ir.train.train_step`:
train-mode forward, loss, backward) as the backend would see them (its ``supports`` decides what ``fuse`` may
fuse): the node counts before and after, and a verdict for train mode —

- ``applies``: it rewrites the train step, and the backend's step compiled with the pipeline up to this pass
  computes the same loss, gradients and next BN statistics as its step without passes (the training tolerance,
  each tensor on its own scale: `convbench.testing.train_check.compare_step`);
- ``breaks``: it rewrites the train step and the backend's step then disagrees, or no longer compiles (the error
  is shown) — a pass a train-mode compile must not run on that backend;
- ``does not apply``: it rewrites the inference graph but finds nothing in the train step, with the reason
  (`WHY_NOT`: BN folding needs BN's inference form, whose statistics are constants; train-mode BN normalises with
  the batch's own);
- ``nothing to do``: it changes neither graph of this model;
- ``not judged``: it rewrites the step after an earlier pass already broke it.
``plan_memory`` rewrites nothing; it is checked by running like a rewrite (the numpy backend runs its arena).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .. import models
from ..backends import get
from ..ir.passes import resolve, run_pipeline
from ..ir.passes.pipeline import PLAN_MEMORY
from ..ir.train import train_step
from .specs import parse_backend_spec
from .workload import SEED

WHY_NOT = {
    "fold_batch_norm": "the train step's BN is batch_norm_train, normalising with the batch's own statistics "
                       "(new every step): there is no constant affine map to fold into the conv",
    "fuse": "every conv/linear output a chain would absorb is also read by the backward (a vjp node saves it), "
            "so the activation is not its only reader",
}
COLUMNS = ("model", "backend", "pass", "inference nodes", "train nodes", "in train mode")


def _placeholders(graph: Any) -> dict[str, np.ndarray]:
    from .ablation import placeholder_params

    return placeholder_params(graph)


def _outputs(backend: Any, step: Any, params: dict, x: np.ndarray, labels: np.ndarray, passes: str,
             options: dict) -> tuple:
    """(loss, gradients, next buffers) of the backend's step compiled with ``passes``."""
    values = step.split(backend.compile(step.graph, params, passes=passes, **options).run([x, labels]))
    return values.loss, values.grads, values.buffers


def train_pass_rows(model: str, image_size: int, batch: int, backend: str, pipeline: str = "all") -> list[dict]:
    """One row per pass of ``pipeline``: what it does to ``model``'s inference graph and train step on
    ``backend``, and whether it still applies in train mode (module docstring)."""
    from ..testing.train_check import batch_of, compare_step

    name, options = parse_backend_spec(backend)
    be = get(name)
    graph = models.build(model, batch=batch, image_size=image_size)
    step = train_step(graph)
    _, passes = resolve(pipeline)
    inference = run_pipeline(graph, _placeholders(graph), passes, supports=be.supports).records
    train = run_pipeline(step.graph, _placeholders(step.graph), passes, supports=be.supports).records
    params = models.init_params(graph, seed=SEED)
    x, labels = batch_of(graph, SEED)
    baseline: tuple | None = None
    broken = ""  # the pass after which the step broke: a later pass runs on top of it and is not judged
    rows = []
    for k, (ri, rt) in enumerate(zip(inference, train, strict=True)):
        changed_train = rt.nodes_after != rt.nodes_before or rt.name == PLAN_MEMORY
        if changed_train and broken:
            verdict = f"not judged: it runs after {broken!r}, which already breaks the step"
        elif changed_train:
            try:
                baseline = baseline or _outputs(be, step, params, x, labels, "none", options)
                got = _outputs(be, step, params, x, labels, "+".join(passes[:k + 1]), options)
                a = compare_step(got, baseline, "float32")
                verdict = (f"applies (step agrees, {a.max_rel:.1e})" if a.ok
                           else f"breaks: the step disagrees ({a.reason})")
            except Exception as e:  # the backend cannot compile the rewritten step: the pass must not run there
                verdict = f"breaks: {type(e).__name__}: {' '.join(str(e).split())[:160]}"
            broken = rt.name if verdict.startswith("breaks") else ""
        elif ri.nodes_after != ri.nodes_before:
            verdict = "does not apply: " + WHY_NOT.get(rt.name, "it finds nothing to rewrite in the train step")
        else:
            verdict = "nothing to do (neither graph of this model)"
        rows.append({"model": f"{model}@{image_size}", "backend": backend, "pass": rt.name,
                     "inference nodes": f"{ri.nodes_before} → {ri.nodes_after}",
                     "train nodes": f"{rt.nodes_before} → {rt.nodes_after}", "in train mode": verdict})
    return rows


TRAIN_METHOD = (
    "Passes in train mode: each pass of the pipeline in order, on the inference graph and on the train step "
    "(train-mode forward, loss, backward: ir/train.py) as the backend sees them. 'applies': it rewrites the train "
    "step and the backend's step compiled with the pipeline up to it gives the same loss, gradients and BN "
    "statistics as without passes (training tolerance); 'breaks': it rewrites the step and the step then "
    "disagrees or does not compile; 'does not apply': it rewrites inference only, with the reason."
)


def train_table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(COLUMNS))
