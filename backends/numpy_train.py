"""The reference trainer: a `TrainStep`'s gradient graph on the NumPy interpreter, then the optimizer's NumPy
update — the float64 oracle every backend's train step is judged against (float32 too).

    step = train_step(models.build("resnet18", batch=8), SGD(lr=0.1))
    trainer = NumpyTrainer(step, params, dtype="float64")
    out = trainer.step(x, labels)          # StepResult: loss, grads, params and buffers after the update
    loss, grads = trainer.gradients(x, labels)   # the same forward and backward, no update

A backend that trains offers the same two calls (a train-mode compile of ``step.graph``, or its own autodiff of
``step.forward``) so `check --mode train` can compare loss, every gradient and every parameter after one step
tensor by tensor. Inputs are validated before anything runs: the model input's shape, and labels of the batch's
length, integer, within [0, classes) — each a `TrainInputError` naming what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..ir import interpreter
from ..ir.errors import IRError
from ..ir.ops.softmax_cross_entropy import check_labels
from ..ir.optim import State
from ..ir.train import TrainStep
from .template import cast_params

DTYPES = ("float64", "float32")


class TrainInputError(IRError):
    """An input or label array that does not fit the train step."""


@dataclass(frozen=True)
class StepResult:
    """One step: the loss and gradients at the parameters before it, the parameters and buffers after it."""

    loss: float
    grads: dict[str, np.ndarray]
    params: dict[str, np.ndarray]  # every parameter after the update (trained, frozen and buffers)


class NumpyTrainer:
    """Runs ``step`` on the reference interpreter in ``dtype``, holding the parameters and optimizer state."""

    def __init__(self, step: TrainStep, params: Mapping[str, np.ndarray], dtype: str = "float64"):
        if dtype not in DTYPES:
            raise ValueError(f"numpy trainer: dtype must be one of {DTYPES}, got {dtype!r}")
        self.step_def, self.dtype = step, dtype
        self.params = cast_params(step.forward, params, dtype)  # every model parameter, frozen ones too
        self.state: State = step.optimizer.init_state({p: self.params[p] for p in step.trained})
        self.steps = 0

    def _feed(self, inputs: tuple[np.ndarray, ...], labels: np.ndarray) -> dict[str, np.ndarray]:
        step = self.step_def
        names = step.input_names
        if len(inputs) != len(names):
            raise TrainInputError(f"{step.graph.name}: the train step takes {len(names)} input(s) {list(names)} "
                                  f"and labels, got {len(inputs)}")
        feed = {}
        for name, x in zip(names, inputs, strict=True):
            x = np.asarray(x, dtype=self.dtype)
            want = step.graph.inputs[name].shape
            if x.shape != want:
                raise TrainInputError(f"{step.graph.name}: input {name!r} must have shape {want}, got {x.shape}")
            feed[name] = x
        n, classes = step.graph.types[step.logits].shape
        try:
            feed[step.labels] = check_labels(labels, n, classes)
        except IRError as e:
            raise TrainInputError(f"{step.graph.name}: {e}") from None
        return feed

    def gradients(self, *inputs: np.ndarray, labels: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        """The loss and each trained parameter's gradient at the current parameters (nothing is updated)."""
        values = self._run(inputs, labels)
        return values.loss, values.grads

    def _run(self, inputs, labels):
        step = self.step_def
        feed = self._feed(tuple(inputs), labels)
        weights = {p: self.params[p] for p in step.graph.params}
        return step.split(interpreter.run(step.graph, weights, feed))

    def step(self, *inputs: np.ndarray, labels: np.ndarray) -> StepResult:
        """One training step: forward, loss, backward, the optimizer's update; returns what it computed."""
        values = self._run(inputs, labels)
        trained = {p: self.params[p] for p in values.grads}
        updated, self.state = self.step_def.optimizer.update(trained, values.grads, self.state)
        self.params = {**self.params, **updated,
                       **{b: v.astype(self.dtype, copy=False) for b, v in values.buffers.items()}}
        self.steps += 1
        return StepResult(values.loss, values.grads, dict(self.params))


def train_reference(step: TrainStep, params: Mapping[str, np.ndarray], inputs: tuple[np.ndarray, ...],
                    labels: np.ndarray, steps: int = 1, dtype: str = "float64") -> list[StepResult]:
    """``steps`` steps of the reference on one fixed batch (what the overfit check runs): each step's result."""
    trainer = NumpyTrainer(step, params, dtype)
    return [trainer.step(*inputs, labels=labels) for _ in range(steps)]
