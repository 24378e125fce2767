"""running_stat: a batch_norm's running statistic after one training step (torch's in-place update of
``running_mean`` / ``running_var`` inside ``F.batch_norm(..., training=True, momentum=0.1)``).

Inputs (x, running); ``stat`` "mean": (1 − momentum)·running + momentum·μ_B; "var": the same with the unbiased
batch variance σ²_B·M/(M − 1), M the values per channel (torch's Bessel correction). The output has the running
statistic's shape (C,): a train step returns it, and the caller stores it back into the buffer. Paired with
``batch_norm_train`` (one node per statistic, as an IR node has one value).

FLOPs: mean: 1 per input element + 3 per channel (the momentum blend: 2 multiplies, 1 add); var: 4 per input
element (mean, subtract, square, add) + 4 per channel (Bessel factor and the blend). No VJP: it is a buffer update,
off the loss's path, so nothing differentiates it (a declared gap in tests/test_vjp.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..errors import IRError, ShapeError
from ..graph import TensorType
from ._base import OpDef, Types


@dataclass(frozen=True)
class RunningStatAttrs:
    stat: Literal["mean", "var"] = "mean"
    momentum: float = 0.1

    def __post_init__(self) -> None:
        object.__setattr__(self, "momentum", float(self.momentum))
        if self.stat not in ("mean", "var"):
            raise IRError(f"running_stat: stat must be 'mean' or 'var', got {self.stat!r}")
        if not 0.0 <= self.momentum <= 1.0:
            raise IRError(f"running_stat: momentum must be in [0, 1], got {self.momentum}")


def infer(attrs: RunningStatAttrs, ins: Types) -> TensorType:
    x, running = ins
    if x.rank < 2 or running.shape != (x.shape[1],):
        raise ShapeError(f"running must have shape (C,) for input {x.shape}, got {running.shape}")
    if x.numel // x.shape[1] < 2:
        raise ShapeError(f"a running statistic needs more than 1 value per channel, got input shape {x.shape}")
    return running


def reference(attrs: RunningStatAttrs, x: np.ndarray, running: np.ndarray) -> np.ndarray:
    axes = tuple(a for a in range(x.ndim) if a != 1)
    stat = x.mean(axis=axes) if attrs.stat == "mean" else x.var(axis=axes, ddof=1)
    m = running.dtype.type(attrs.momentum)
    return ((1 - m) * running + m * stat.astype(running.dtype, copy=False)).astype(running.dtype, copy=False)


def flops(attrs: RunningStatAttrs, ins: Types, out: TensorType) -> int:
    x = ins[0]
    return (x.numel + 3 * out.numel) if attrs.stat == "mean" else (4 * x.numel + 4 * out.numel)


OP = OpDef(name="running_stat", attrs_type=RunningStatAttrs, inputs=("x", "running"),
           buffers=frozenset({"running"}), traits={"training"}, infer=infer, flops=flops, reference=reference,
           flop_rule="mean: 1 per input element + 3 per channel; var: 4 per input element + 4 per channel")
