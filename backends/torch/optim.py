"""The torch backend's optimizer update (`ir.optim.Updater`): a train step's SGD or Adam as torch.optim's fused
CPU/GPU kernel, on parameters and state kept as torch tensors from step to step.

Why the backend owns it: the update is an elementwise map over every trained parameter (ResNet-50: 25.6 M
elements, 6 FLOPs each for SGD), memory-bound, and NumPy runs it as five single-threaded passes that allocate a
temporary each; ``torch.optim.SGD(fused=True)`` is one multi-threaded pass per tensor, under the executable's thread
count. The semantics are torch.optim's, which `ir.optim` states term for term (tests/test_train_update.py checks
the two against each other). The step's gradients arrive as the NumPy arrays the executable returns, which share
memory with its torch tensors: wrapping them back (`torch.from_numpy`) copies nothing on CPU.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ...ir.optim import SGD, Adam, Optimizer
from ..base import BackendError, Executable

try:
    import torch

    from .layers import intra_op_threads
except ImportError:  # pragma: no cover - the backend is unavailable without torch; nothing builds an updater
    torch = None  # type: ignore[assignment]


class TorchUpdater:
    """``optimizer`` (an `ir.optim` SGD or Adam) as the matching ``torch.optim`` class with ``fused=True``, over
    copies of ``params`` (their NumPy dtype, float32 or float64) on ``device``."""

    def __init__(self, optimizer: Optimizer, params: Mapping[str, np.ndarray], device: str = "cpu",
                 threads: int | None = None):
        self.names = tuple(params)
        self.threads = threads
        self.tensors = [torch.from_numpy(np.array(params[n], copy=True, order="C")).to(device) for n in self.names]
        self.optimizer = _torch_optimizer(optimizer, self.tensors)

    def step(self, grads: Mapping[str, np.ndarray]) -> None:
        with torch.no_grad(), intra_op_threads(self.threads):
            for name, t in zip(self.names, self.tensors, strict=True):
                g = grads.get(name)
                # the fused kernel reads a gradient as a dense buffer shaped like its (contiguous) parameter
                t.grad = None if g is None else torch.from_numpy(np.ascontiguousarray(g)).to(t.device, t.dtype)
            self.optimizer.step()
            for t in self.tensors:  # the gradients are the caller's arrays: hold no reference to them
                t.grad = None

    def params(self) -> dict[str, np.ndarray]:
        return {n: t.detach().cpu().numpy().copy() for n, t in zip(self.names, self.tensors, strict=True)}


def _torch_optimizer(optimizer: Optimizer, tensors: list[Any]) -> Any:
    if isinstance(optimizer, SGD):
        return torch.optim.SGD(tensors, lr=optimizer.lr, momentum=optimizer.momentum,
                               weight_decay=optimizer.weight_decay, fused=True)
    if isinstance(optimizer, Adam):
        return torch.optim.Adam(tensors, lr=optimizer.lr, betas=optimizer.betas, eps=optimizer.eps,
                                weight_decay=optimizer.weight_decay, fused=True)
    raise BackendError(f"torch backend: no update for optimizer {type(optimizer).__name__} (sgd, adam)")


def updater(optimizer: Optimizer, params: Mapping[str, np.ndarray], exe: Executable) -> TorchUpdater:
    """The update of a train step ``exe`` (a torch executable) runs: on its device, under its thread count."""
    report = exe.report
    device = getattr(report.options, "device", "cpu") if report is not None else "cpu"
    return TorchUpdater(optimizer, params, device, report.threads if report is not None else None)
