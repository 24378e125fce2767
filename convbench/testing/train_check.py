"""``check --mode train``: one train step of a zoo model on a backend against the float64 NumPy reference trainer.

The backend compiles the step's gradient graph (`ir.train.train_step`) through its compile template like any graph
and runs it on one fixed batch; the step's optimizer (ir/optim.py, SGD with momentum 0.9 and weight decay 1e-4)
is applied to its gradients in its dtype, as the reference applies it in float64 (the optimizer is outside the
graph: docs/training.md). Compared tensor by tensor on the tensor's own scale: the loss, every gradient, every
parameter after the step (buffers included); the worst tensor is named. A gradient that is 0 in exact arithmetic
(a BN β feeding a conv into another train-mode BN) is rounding noise on any scale of its own, so every gradient
is also allowed the tolerance's ``floor`` of the model's largest gradient (`TRAIN_TOLERANCES`).

A trained parameter after the step is judged against the reference optimizer's update of the backend's own
gradients (`reference_update`): the after-step tensors check the update, and a gradient's error is judged once, on
the gradient's bound. Against the reference's own update that error would be judged again, lr times it on the
parameter's scale without the floor: GoogLeNet (64 px, batch 4) on torch float32 on an AVX2 CPU, where one ReLU
input of inception4e.branch2.1 (+1.0e-5, 4e-6 of that tensor's max) closes at float32 resolution, has that
weight's gradient off by 0.044 (bound 0.085 with the floor) and the weight after the step off by 0.05 · 0.044 =
0.0022 against 1% of its max, 0.0019. Replaying that one flip in the float64 reference reproduces the gradients
to 8e-6.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .. import models
from ..backends.base import Backend, unavailable_reason, updater_for
from ..backends.correctness import Agreement, tolerance
from ..backends.numpy_train import NumpyTrainer
from ..backends.template import cast_params
from ..ir import ops
from ..ir.optim import SGD
from ..ir.train import TrainStep, train_step
from .runner import CaseResult


def train_skip_reason(backend: Backend, dtype: str) -> str | None:
    """Why ``backend`` cannot run a train step in ``dtype`` here: unavailable, or its gaps name a train-step op."""
    why = unavailable_reason(backend, dtype)
    if why:
        return why
    gaps = {op: r for op, r in backend.gaps.items() if op in ops.with_trait("training")}
    return f"{sorted(gaps)[0]}: {gaps[sorted(gaps)[0]]}" if gaps else None


def batch_of(graph, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed batch: standard-normal images and uniform labels."""
    rng = np.random.default_rng(seed)
    shape = next(iter(graph.inputs.values())).shape
    return rng.standard_normal(shape), rng.integers(0, graph.types[graph.outputs[0]].shape[1], shape[0])


def backend_step(backend: Backend, step, params: dict[str, np.ndarray], x: np.ndarray, labels: np.ndarray,
                 dtype: str, **options: Any) -> tuple[float, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One step on ``backend``: (loss, gradients, every parameter after the update)."""
    exe = backend.compile(step.graph, params, dtype=dtype, **options)
    values = step.split(exe.run([x, labels]))
    current = cast_params(step.forward, params, "float64" if dtype == "float64" else "float32")
    # the backend's own update where it has one (torch: torch.optim's fused kernel), as the harness times it
    updater = updater_for(backend, step.optimizer, {p: current[p] for p in values.grads}, exe)
    updater.step(values.grads)
    return values.loss, values.grads, {**current, **updater.params(), **values.buffers}


def reference_update(step: TrainStep, params: dict[str, np.ndarray],
                     grads: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The trained parameters after one step of ``step``'s optimizer from ``params``, applied in float64 to
    ``grads`` (a backend's gradients): what the backend's own update must compute from them."""
    start = cast_params(step.forward, params, "float64")
    trained = {p: start[p] for p in grads}
    grads64 = {k: np.asarray(v, np.float64) for k, v in grads.items()}
    return step.optimizer.update(trained, grads64, step.optimizer.init_state(trained))[0]


def compare_step(got: tuple, want: tuple, dtype: str) -> Agreement:
    """The worst tensor of (loss, gradients, parameters after the step) on its own scale."""
    tol = tolerance(dtype, "train")
    (loss, grads, after), (rloss, rgrads, rafter) = got, want
    floor = tol.atol * max((float(np.abs(g).max()) for g in rgrads.values()), default=0.0)
    tensors = [("loss", np.asarray(loss), np.asarray(rloss), 0.0)]
    tensors += [(f"gradient of {k}", grads[k], v, floor) for k, v in rgrads.items()]
    tensors += [(f"{k} after the step", after[k], v, 0.0) for k, v in rafter.items()]
    worst: tuple[float, str, float, float, float] | None = None
    for name, y, ref, extra in tensors:
        y, ref = np.asarray(y, np.float64), np.asarray(ref, np.float64)
        if y.shape != ref.shape or not np.isfinite(y).all():
            return Agreement(False, float("inf"), float("inf"), 0.0, dtype,
                             reason=f"{name}: shape {y.shape} / non-finite values (reference {ref.shape})")
        scale = float(np.abs(ref).max()) if ref.size else 0.0
        err = float(np.abs(y - ref).max()) if ref.size else 0.0
        bound = tol.rtol * scale + extra + 1e-30
        if worst is None or err / bound > worst[0]:
            worst = (err / bound, name, err, scale, bound)
    assert worst is not None
    ratio, name, err, scale, bound = worst
    ok = ratio <= 1.0
    reason = f"worst tensor: {name}: max abs error {err:.3g}, max|ref| {scale:.3g}, bound {bound:.3g}"
    return Agreement(ok, err, err / scale if scale else 0.0, bound, dtype, reason=reason)


def run_train_case(backend: Backend, model: str, batch: int, size: int, dtype: str = "float32",
                   **options: Any) -> CaseResult:
    """`check --mode train` for one model × size × batch × backend × dtype; never raises for the backend."""
    case_id = f"{model}-b{batch}-s{size}-train"
    start = time.perf_counter()
    why = train_skip_reason(backend, dtype)
    if why:
        return CaseResult(case_id, backend.name, dtype, "skip", message=why)
    graph = models.build(model, batch=batch, image_size=size)
    params = models.init_params(graph)
    step = train_step(graph, SGD(lr=0.05))  # raises NoVjpError naming the node and op: the caller's bad input
    x, labels = batch_of(graph)
    r = NumpyTrainer(step, params, "float64").step(x, labels=labels)
    try:
        got = backend_step(backend, step, params, x, labels, dtype, **options)
    except Exception as e:  # the backend's failure is this row's error, not a crash
        return CaseResult(case_id, backend.name, dtype, "error", message=f"{type(e).__name__}: {e}",
                          seconds=time.perf_counter() - start)
    a = compare_step(got, (r.loss, r.grads, {**r.params, **reference_update(step, params, got[1])}), dtype)
    return CaseResult(case_id, backend.name, dtype, "pass" if a.ok else "fail", a,
                      "" if a.ok else a.reason, time.perf_counter() - start)
