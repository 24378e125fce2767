"""clip: min(max(x, min), max) (torch.clamp, ONNX Clip); a bound that is None is absent.

What an imported Clip with bounds other than relu's (0, ∞) and relu6's (0, 6) becomes (the importer keeps those
two as relu and relu6). min > max is allowed and gives max everywhere, as torch and ONNX define it.
FLOPs: 1 comparison per element per bound present.
VJP: dy where min ≤ x ≤ max (each bound present; inclusive, as torch's clamp_backward), else 0.
Backward: 1 comparison per element per bound present, + 1 select.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import IRError
from ._base import OpDef, first_input, same_type, saves_input


@dataclass(frozen=True)
class ClipAttrs:
    min: float | None = None
    max: float | None = None

    def __post_init__(self) -> None:
        for name in ("min", "max"):
            value = getattr(self, name)
            if value is not None:
                value = float(value)
                if not np.isfinite(value):
                    raise IRError(f"clip: {name} must be finite or None (no bound), got {value}")
                object.__setattr__(self, name, value)


def reference(attrs: ClipAttrs, x: np.ndarray) -> np.ndarray:
    if attrs.min is not None:
        x = np.maximum(x, x.dtype.type(attrs.min))
    if attrs.max is not None:
        x = np.minimum(x, x.dtype.type(attrs.max))
    return x


def flops(attrs: ClipAttrs, ins, out) -> int:
    return out.numel * ((attrs.min is not None) + (attrs.max is not None))


def vjp(attrs: ClipAttrs, ins, out, dy: np.ndarray, wrt: int) -> np.ndarray:
    x = ins[0]
    keep = np.ones(x.shape, dtype=bool)
    if attrs.min is not None:
        keep &= x >= x.dtype.type(attrs.min)
    if attrs.max is not None:
        keep &= x <= x.dtype.type(attrs.max)
    return np.where(keep, dy, 0).astype(dy.dtype, copy=False)


def backward_flops(attrs: ClipAttrs, ins, out, wrt: int) -> int:
    return out.numel * ((attrs.min is not None) + (attrs.max is not None) + 1)


def unbounded(attrs: ClipAttrs, ins, out) -> bool:
    return attrs.min is None and attrs.max is None


OP = OpDef(name="clip", attrs_type=ClipAttrs, inputs=("x",), noop=unbounded,
           traits={"elementwise", "activation"}, overwrites=first_input, infer=same_type, flops=flops,
           reference=reference, flop_rule="1 comparison per element per bound present",
           vjp=vjp, saves=saves_input, backward_flops=backward_flops,
           backward_flop_rule="1 comparison per element per bound present + 1 select")
