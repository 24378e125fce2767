"""Optimizers of a train step: the update rule in NumPy (the reference every backend's update is checked against),
its state, its FLOPs and its memory. The semantics are torch.optim's, term for term, so a float64 step agrees
with ``torch.optim.SGD`` / ``torch.optim.Adam`` to rounding.

Why the update is not IR nodes: it is an elementwise map over parameter-shaped tensors that every framework
already owns (torch.optim's fused multi-tensor kernels, TVM's relax.training optimizers), it mutates state a pure
value graph would have to thread through as twice as many inputs and outputs, and it is never where a backend's
correctness is in doubt. A train step is therefore (gradient graph, optimizer): a backend runs the graph and
applies ``update`` (or its own equivalent of it); `ir.train.train_counts` counts both.

Who applies it: an `Updater` holds the trained parameters and the optimizer's state between steps. A backend may
provide its own (``backend.updater(optimizer, params, exe)``, docs/training.md: the torch backend's is
torch.optim's fused kernel); `NumpyUpdater` (this module's ``update``) is the fallback every other backend gets.

Weight decay is L2 added to the gradient (torch's ``weight_decay``, not AdamW's decoupled form) and applies to
every trained parameter, BN's γ and β and the biases included, as torch.optim does by default and the
torchvision reference recipe (SGD, momentum 0.9, weight decay 1e-4) uses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .errors import IRError
from .graph import TensorType

State = dict[str, dict[str, np.ndarray]]  # parameter -> its state tensors by name


@dataclass(frozen=True)
class SGD:
    """torch.optim.SGD(lr, momentum, weight_decay, dampening=0, nesterov=False).

    g = ∇ + wd·p;  buf = momentum·buf + g (buf = g at the first step);  p = p − lr·buf.
    FLOPs: 6 per parameter element (2 for the decay, 2 for the momentum, 2 for the step); with momentum 0,
    4 (decay and step). State: one momentum buffer per parameter (none with momentum 0).
    """

    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4

    name = "sgd"

    def __post_init__(self) -> None:
        if self.lr <= 0 or not 0 <= self.momentum < 1 or self.weight_decay < 0:
            raise IRError(f"sgd: need lr > 0, 0 ≤ momentum < 1, weight_decay ≥ 0, got {self}")

    @property
    def flops_per_element(self) -> int:
        return 6 if self.momentum else 4

    @property
    def flop_rule(self) -> str:
        return ("6 per parameter element (decay 2, momentum 2, step 2)" if self.momentum
                else "4 per parameter element (decay 2, step 2)")

    def state_tensors(self) -> int:
        """Parameter-shaped state tensors per parameter."""
        return 1 if self.momentum else 0

    def init_state(self, params: Mapping[str, np.ndarray]) -> State:
        return {name: {} for name in params}  # torch creates the buffer at the first step, from the gradient

    def update(self, params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray],
               state: State) -> tuple[dict[str, np.ndarray], State]:
        """New parameters and state; parameters without a gradient are left as they are (torch skips them)."""
        new_params, new_state = dict(params), {k: dict(v) for k, v in state.items()}
        for name, grad in grads.items():
            p = params[name]
            t = p.dtype.type
            g = grad + t(self.weight_decay) * p if self.weight_decay else grad
            if self.momentum:
                buf = new_state[name].get("momentum_buffer")
                buf = g.copy() if buf is None else t(self.momentum) * buf + g
                new_state[name]["momentum_buffer"] = buf
                g = buf
            new_params[name] = p - t(self.lr) * g
        return new_params, new_state


@dataclass(frozen=True)
class Adam:
    """torch.optim.Adam(lr, betas, eps, weight_decay), amsgrad=False, in torch's order of operations.

    g = ∇ + wd·p;  m = m + (1 − β1)·(g − m) (torch's lerp);  v = β2·v + (1 − β2)·g²;
    p = p − lr/(1 − β1^t) · m / (sqrt(v)/sqrt(1 − β2^t) + eps).
    FLOPs: 13 per parameter element with weight decay (decay 2, m 3, v 4, the step 4: sqrt, divide, add eps,
    multiply-subtract), 11 without. State: m and v per parameter (and the step count).
    """

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0

    name = "adam"

    def __post_init__(self) -> None:
        b1, b2 = self.betas
        if self.lr <= 0 or not (0 <= b1 < 1 and 0 <= b2 < 1) or self.eps <= 0 or self.weight_decay < 0:
            raise IRError(f"adam: need lr > 0, betas in [0, 1), eps > 0, weight_decay ≥ 0, got {self}")

    @property
    def flops_per_element(self) -> int:
        return 13 if self.weight_decay else 11

    @property
    def flop_rule(self) -> str:
        return "13 per parameter element (decay 2, first moment 3, second moment 4, step 4); 11 without decay"

    def state_tensors(self) -> int:
        return 2

    def init_state(self, params: Mapping[str, np.ndarray]) -> State:
        return {name: {} for name in params}

    def update(self, params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray],
               state: State) -> tuple[dict[str, np.ndarray], State]:
        new_params, new_state = dict(params), {k: dict(v) for k, v in state.items()}
        b1, b2 = self.betas
        for name, grad in grads.items():
            p = params[name]
            t = p.dtype.type
            g = grad + t(self.weight_decay) * p if self.weight_decay else grad
            s = new_state[name]
            step = int(s.get("step", np.zeros(()))) + 1
            m = s.get("exp_avg", np.zeros_like(p))
            m = m + t(1 - b1) * (g - m)
            v = t(b2) * s.get("exp_avg_sq", np.zeros_like(p)) + t(1 - b2) * g * g
            denom = np.sqrt(v) / t(np.sqrt(1 - b2**step)) + t(self.eps)
            new_params[name] = p - t(self.lr / (1 - b1**step)) * (m / denom)
            s.update(step=np.asarray(step), exp_avg=m, exp_avg_sq=v)
        return new_params, new_state


Optimizer = SGD | Adam


def optimizer_flops(optimizer: Optimizer, params: Mapping[str, TensorType]) -> int:
    """FLOPs of one update of ``params`` (the trained ones)."""
    return optimizer.flops_per_element * sum(t.numel for t in params.values())


def optimizer_state_bytes(optimizer: Optimizer, params: Mapping[str, TensorType]) -> int:
    """Bytes of the optimizer's state for ``params``: state tensors per parameter × its bytes."""
    return optimizer.state_tensors() * sum(t.nbytes for t in params.values())


class Updater(Protocol):
    """An optimizer applied step after step: it owns the trained parameters and the optimizer's state, in its own
    arithmetic (NumPy arrays, torch tensors …), so that between steps nothing is converted back."""

    def step(self, grads: Mapping[str, np.ndarray]) -> None:
        """One update from the step's gradients (parameters without one are left as they are, as torch does)."""

    def params(self) -> dict[str, np.ndarray]:
        """The trained parameters now, as NumPy arrays of the updater's dtype: a copy, for a check (not per step)."""


class NumpyUpdater:
    """The fallback `Updater`: ``optimizer.update`` in NumPy, in each parameter's dtype (the gradients are cast to
    it: a float32 backend's gradients update float32 parameters, the float64 reference's float64 ones)."""

    def __init__(self, optimizer: Optimizer, params: Mapping[str, np.ndarray]):
        self.optimizer = optimizer
        self.trained = dict(params)
        self.state = optimizer.init_state(self.trained)

    def step(self, grads: Mapping[str, np.ndarray]) -> None:
        grads = {k: np.asarray(g, self.trained[k].dtype) for k, g in grads.items()}
        self.trained, self.state = self.optimizer.update(self.trained, grads, self.state)

    def params(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self.trained.items()}
