"""pad: constant padding of the two spatial axes of an NCHW tensor (torch.nn.functional.pad, ONNX Pad).

``pads = (top, left, bottom, right)``, each ≥ 0, in the order ONNX writes 2-D ``pads`` (begins, then ends);
``value`` fills the new cells (0 by default; the importer pads a max pool's input with the lowest float32).
It is the IR's asymmetric padding: TensorFlow's "SAME" padding at stride 2 pads one row and column more at the
bottom/right than at the top/left, which a conv's symmetric ``padding`` cannot say.

Shape: (N, C, H + top + bottom, W + left + right). FLOPs: 0, stated: it writes the input into a filled buffer
and computes nothing. A no-op when every pad is 0.
VJP: dy cropped back to the input's extent. Backward: 0 FLOPs (a slice), stated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import IRError
from ..graph import TensorType
from ._base import OpDef, Types, no_backward_flops, require_rank, saves_nothing


@dataclass(frozen=True)
class PadAttrs:
    pads: tuple[int, int, int, int]  # (top, left, bottom, right)
    value: float = 0.0

    def __post_init__(self) -> None:
        pads = tuple(self.pads) if isinstance(self.pads, tuple | list) else ()
        if len(pads) != 4 or not all(isinstance(p, int | np.integer) and not isinstance(p, bool) for p in pads):
            raise IRError(f"pad: pads must be 4 integers (top, left, bottom, right), got {self.pads!r}")
        pads = tuple(int(p) for p in pads)
        if min(pads) < 0:
            raise IRError(f"pad: pads must be ≥ 0 (the IR does not crop), got {pads}")
        object.__setattr__(self, "pads", pads)
        object.__setattr__(self, "value", float(self.value))
        if not np.isfinite(self.value):
            raise IRError(f"pad: value must be finite, got {self.value}")

    @property
    def np_pad_width(self) -> tuple[tuple[int, int], ...]:
        """``pads`` as NumPy's pad_width of an NCHW array."""
        top, left, bottom, right = self.pads
        return (0, 0), (0, 0), (top, bottom), (left, right)


def infer(attrs: PadAttrs, ins: Types) -> TensorType:
    x = ins[0]
    require_rank(x, 4)
    n, c, h, w = x.shape
    top, left, bottom, right = attrs.pads
    return TensorType((n, c, h + top + bottom, w + left + right), x.dtype)


def reference(attrs: PadAttrs, x: np.ndarray) -> np.ndarray:
    return np.pad(x, attrs.np_pad_width, constant_values=x.dtype.type(attrs.value))


def vjp(attrs: PadAttrs, ins, out, dy: np.ndarray, wrt: int) -> np.ndarray:
    top, left = attrs.pads[:2]
    h, w = ins[0].shape[2:]
    return dy[:, :, top : top + h, left : left + w]


def no_padding(attrs: PadAttrs, ins: Any, out: Any) -> bool:
    return attrs.pads == (0, 0, 0, 0)


OP = OpDef(name="pad", attrs_type=PadAttrs, inputs=("x",), noop=no_padding, infer=infer,
           flops=lambda attrs, ins, out: 0, reference=reference,
           flop_rule="0 (the input copied into a filled buffer: data movement, no arithmetic)",
           vjp=vjp, saves=saves_nothing, backward_flops=no_backward_flops,
           backward_flop_rule="0 (dy cropped: a slice)")
