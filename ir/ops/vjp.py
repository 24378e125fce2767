"""vjp: one gradient of a forward node, dL/d(input ``wrt``) of a node of op ``op`` with attributes ``attrs`` — the
node `ir.autodiff` emits for each (forward node, differentiable input) on the loss's path.

Inputs: dy (the cotangent of the forward node's output; absent when ``cotangent`` is False, where the forward node
is the loss itself and dy = 1), then the forward values its rule reads, in the order ``saved`` names them (input
positions; −1 for the forward output) — exactly the op's ``saves(attrs, wrt, n_inputs)``, so a train step keeps
alive only what each gradient needs. ``shapes`` are the forward inputs' shapes and then the output's (a gradient
may need the shape of a value it does not read). Output: a value of input ``wrt``'s shape.

Reference: the forward op's own ``vjp`` (the float64 oracle), the values it did not declare passed as NaN
placeholders. FLOPs: the forward op's ``backward_flops`` for ``wrt`` (its ``backward_flop_rule``).
A backend lowers a vjp node by its ``attrs.op`` (and may refuse some through ``supports``); one generic op keeps
the registry to one entry for every gradient instead of one per forward op and input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import IRError, ShapeError
from ..graph import TensorType
from ._base import OUT, OpDef, Types, placeholder


@dataclass(frozen=True)
class VjpAttrs:
    op: str
    attrs: Any
    wrt: int
    saved: tuple[int, ...]
    shapes: tuple[tuple[int, ...], ...]
    cotangent: bool = True

    def __post_init__(self) -> None:
        from . import get  # the registry imports this module

        forward = get(self.op)
        if isinstance(self.attrs, dict):  # read back from JSON: rebuild the forward op's attrs
            object.__setattr__(self, "attrs", forward.attrs_from_dict(self.attrs))
        object.__setattr__(self, "wrt", int(self.wrt))
        object.__setattr__(self, "saved", tuple(int(k) for k in self.saved))
        object.__setattr__(self, "shapes", tuple(tuple(int(d) for d in s) for s in self.shapes))
        object.__setattr__(self, "cotangent", bool(self.cotangent))
        n = len(self.shapes) - 1
        if forward.vjp is None:
            raise IRError(f"vjp: op {self.op!r} has no VJP")
        if not 0 <= self.wrt < n or any(not (k == OUT or 0 <= k < n) for k in self.saved):
            raise IRError(f"vjp of {self.op}: wrt {self.wrt} and saved {self.saved} must name its {n} inputs "
                          f"(or {OUT}, the output)")

    @property
    def n_inputs(self) -> int:
        """How many inputs the forward node has."""
        return len(self.shapes) - 1


def infer(attrs: VjpAttrs, ins: Types) -> TensorType:
    want = int(attrs.cotangent) + len(attrs.saved)
    if len(ins) != want:
        raise ShapeError(f"vjp of {attrs.op} takes {want} inputs (dy: {attrs.cotangent}, saved {attrs.saved}), "
                         f"got {len(ins)}")
    expected = ([attrs.shapes[OUT]] if attrs.cotangent else []) + [attrs.shapes[k] for k in attrs.saved]
    for k, (t, shape) in enumerate(zip(ins, expected, strict=True)):
        if t.shape != shape:
            raise ShapeError(f"vjp of {attrs.op}: input {k} must have shape {shape}, got {t.shape}")
    dtype = next((t.dtype for t in ins if t.dtype != "int64"), None)
    if dtype is None:
        raise ShapeError(f"vjp of {attrs.op} needs a floating-point input to take its dtype from")
    return TensorType(attrs.shapes[attrs.wrt], dtype)


def reference(attrs: VjpAttrs, *args: np.ndarray) -> np.ndarray:
    forward = get_forward(attrs)
    dy = args[0] if attrs.cotangent else None
    values = dict(zip(attrs.saved, args[int(attrs.cotangent):], strict=True))
    dtype = (dy if dy is not None else next(a for a in args if a.dtype.kind == "f")).dtype
    n = attrs.n_inputs
    ins = [values[k] if k in values else placeholder(attrs.shapes[k], dtype) for k in range(n)]
    out = values[OUT] if OUT in values else placeholder(attrs.shapes[OUT], dtype)
    if dy is None:
        dy = np.ones(attrs.shapes[OUT], dtype=dtype)
    return forward.vjp(attrs.attrs, ins, out, dy, attrs.wrt)


def get_forward(attrs: VjpAttrs) -> OpDef:
    from . import get

    return get(attrs.op)


def forward_types(attrs: VjpAttrs, dtype: str) -> tuple[list[TensorType], TensorType]:
    """The forward node's input and output types, in the gradient's dtype (what its FLOP rules read)."""
    types = [TensorType(s, dtype) for s in attrs.shapes]
    return types[:-1], types[-1]


def flops(attrs: VjpAttrs, ins: Types, out: TensorType) -> int:
    forward = get_forward(attrs)
    f_ins, f_out = forward_types(attrs, out.dtype)
    return forward.backward_flops(attrs.attrs, f_ins, f_out, attrs.wrt)


OP = OpDef(name="vjp", attrs_type=VjpAttrs, inputs=("dy", "saved"), min_inputs=0, traits={"variadic", "training"},
           infer=infer, flops=flops, reference=reference,
           flop_rule="the forward op's backward_flop_rule for input wrt")
