"""A train-mode case (``convbench run --mode train``): the worker's child times whole training steps.

One step = the backend's run of the step's gradient graph (`ir.train.train_step`: train-mode forward, the
softmax cross-entropy loss, the backward for every parameter) on one fixed seeded batch with labels, then the
step's optimizer update (SGD, momentum 0.9, weight decay 1e-4: `ir.optim`). The optimizer is outside the graph
(docs/training.md): the backend's own `ir.optim.Updater` applies it where the backend has one (``updater``: the
torch backend's is torch.optim's fused kernel), else `ir.optim.NumpyUpdater`, in the backend's arithmetic dtype,
carrying the parameters and momentum from step to step; its share of a step is recorded
(``train.update_median_s``). The executable's own weights are the ones it was compiled with, so every
timed step differentiates at the same point — which changes no step's amount of work.

Recorded: the step latency distribution (``timing``), img/s, train GFLOP/s over ``ir.train_counts``'
``total_flops`` (so ``peak_fraction`` is against the calibrated GEMM peak), the static step memory
(``train.step_peak_bytes``) next to the measured peak RSS (``memory``), and the first step's agreement with the
float64 reference trainer — loss, every gradient, every parameter after the update, each on its own scale
(``train.gradients``: `convbench.testing.train_check.compare_step`, the training tolerance column).

A backend that cannot train (not available, or a train-step op among its declared gaps) is `train_unsupported`:
the runner records it without starting a child, with the words ``check --mode train`` skips it with.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..backends.base import Backend, updater_for
from .workload import SEED, make_workload

LR = 0.1  # the torchvision ResNet recipe's SGD learning rate (momentum 0.9, weight decay 1e-4: `ir.optim.SGD`)


def train_unsupported(backend: Backend, dtype: str) -> str | None:
    """Why ``backend`` cannot run a train step in ``dtype`` here, or None. A third-party backend that declares
    no ``gaps`` is tried: its compile says what it cannot lower."""
    from ..testing.train_check import train_skip_reason

    if not hasattr(backend, "gaps"):
        from ..backends.base import unavailable_reason

        return unavailable_reason(backend, dtype)
    return train_skip_reason(backend, dtype)


def describe(optimizer: Any) -> str:
    """"sgd(lr=0.1, momentum=0.9, weight_decay=0.0001)": the update and its hyper-parameters."""
    from dataclasses import fields

    return f"{optimizer.name}(" + ", ".join(f"{f.name}={getattr(optimizer, f.name)}" for f in fields(optimizer)) + ")"


class Stepper:
    """The timed step: the backend's gradient graph, then the optimizer (`backends.base.updater_for`) on the
    trained parameters and state it keeps. ``parameters()`` converts them back to NumPy: once, for the check, not
    per step."""

    def __init__(self, exe: Any, step: Any, params: dict[str, np.ndarray], x: np.ndarray, labels: np.ndarray,
                 dtype: str, backend: Backend | None = None):
        from ..backends.template import cast_params

        self.exe, self.step, self.inputs = exe, step, [x, labels]
        # the update's arithmetic, as check's: float64 for a float64 step, else float32
        self.params = cast_params(step.forward, params, "float64" if dtype == "float64" else "float32")
        self.updater = updater_for(backend, step.optimizer, {p: self.params[p] for p in step.trained}, exe)
        self.update_s: list[float] = []

    def __call__(self) -> Any:
        """One step; its `ir.train.StepValues` (loss, gradients, next buffers)."""
        values = self.step.split(self.exe.run(self.inputs))
        t0 = time.perf_counter()
        self.updater.step(values.grads)
        self.update_s.append(time.perf_counter() - t0)
        return values

    def parameters(self) -> dict[str, np.ndarray]:
        """Every parameter after the steps so far: the trained ones as the updater has them, the rest as given."""
        return {**self.params, **self.updater.params()}


def run_train_case(job: dict[str, Any], backend: Backend, case: Any) -> dict[str, Any]:
    """The child's part of a train-mode record (bench/worker.py calls it for a case whose mode is train)."""
    from ..backends.numpy_train import NumpyTrainer
    from ..ir.analysis import summarize
    from ..ir.optim import SGD
    from ..ir.train import train_step
    from ..ir.train_counts import train_counts
    from ..testing.train_check import batch_of, compare_step, reference_update
    from .errors import UnsupportedCase
    from .memory import DevicePeak, PhasePeak
    from .record import Memory, TrainInfo
    from .stats import Policy, measure
    from .worker import measured_compile

    why = train_unsupported(backend, case.dtype)
    if why:
        return {"status": "unsupported", "message": why}
    if case.input != "random":
        return {"status": "unsupported", "message": "--mode train runs on the seeded random batch only (the "
                                                     "photographs are an accuracy check, not a training set)"}
    w = make_workload(case.model, case.batch, case.image_size)
    step = train_step(w.graph, SGD(lr=LR))  # NoVjpError names the node and op: the case's error
    counts = train_counts(step)
    x, labels = batch_of(w.graph, SEED)
    x = x.astype(np.float32)  # as an inference workload's input: the backend and the reference see the same values
    out: dict[str, Any] = {"status": "ok", "message": ""}
    s = summarize(w.graph)
    out["model_info"] = {k: v for k, v in s.to_dict(layers=False).items() if k not in ("model", "input_shape")}
    out["model_info"]["nodes"] = len(step.graph.nodes)
    device = backend.device() if hasattr(backend, "device") else "cpu"
    try:
        c = measured_compile(backend, step.graph, w.params, case, device)
    except UnsupportedCase as e:
        return {**out, "status": "unsupported", "message": str(e)}
    exe, report, baseline, compile_peak, compile_dev = c.exe, c.report, c.baseline, c.peak, c.device_peak
    out["compile"] = c.info.to_dict()

    stepper = Stepper(exe, step, w.params, x, labels, case.dtype, backend)
    with PhasePeak() as run_peak, DevicePeak(device) as run_dev:
        first = stepper()  # the first step, from the initial parameters: what is compared
        got = (first.loss, first.grads, {**stepper.parameters(), **first.buffers})
        m = measure(stepper, Policy(**job["policy"]))
    median = m.stats.median
    out.update(device=device, timing=m.to_dict(), throughput_ips=case.batch / median,
               gflops=counts.total_flops / median / 1e9)
    peaks = [p for p in (compile_dev.peak_bytes, run_dev.peak_bytes) if p is not None]
    out["memory"] = Memory(
        rss_baseline_bytes=baseline, compile_rss_peak_delta_bytes=compile_peak.delta_bytes,
        run_rss_peak_delta_bytes=run_peak.delta_bytes,
        rss_peak_delta_bytes=max(compile_peak.peak_bytes, run_peak.peak_bytes) - baseline, method=run_peak.method,
        device_peak_bytes=max(peaks) if peaks else None, static_activation_peak_bytes=counts.activation_peak_bytes,
        static_param_bytes=counts.param_bytes + counts.buffer_bytes,
    ).to_dict()
    update_median = float(np.median(stepper.update_s[1:] or stepper.update_s))  # the timed steps' updates
    del exe, stepper

    # after the measurement, so neither its time nor its memory is the case's: the float64 reference's one step
    accuracy_dtype = report.accuracy_dtype if report is not None else case.dtype
    ref = NumpyTrainer(step, w.params, "float64").step(x, labels=labels)
    # the update judged on the backend's own gradients, as check --mode train judges it (testing/train_check.py)
    want = (ref.loss, ref.grads, {**ref.params, **reference_update(step, w.params, first.grads)})
    agreement = compare_step(got, want, accuracy_dtype)
    out["train"] = TrainInfo(
        optimizer=describe(step.optimizer), total_flops=counts.total_flops, forward_flops=counts.forward_flops,
        backward_flops=counts.backward_flops, optimizer_flops=counts.optimizer_flops,
        ratio_to_inference=counts.ratio_to_inference, step_peak_bytes=counts.step_peak_bytes,
        saved_activation_bytes=counts.saved_activation_bytes, loss=first.loss, update_median_s=update_median,
        gradients=agreement.to_dict(),
    ).to_dict()
    return out
