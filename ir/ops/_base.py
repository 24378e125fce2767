"""`OpDef`, the record every op module fills in, and the small helpers several ops share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from ..errors import IRError, ShapeError
from ..graph import Node, TensorType

Types = Sequence[TensorType]


@dataclass(frozen=True)
class NoAttrs:
    """Attributes of an op that has none."""


# The categories an op may belong to, each defined once. Every op-category set in the tree is derived from the
# ops' ``traits`` (`convbench.ir.ops.with_trait`); a backend narrows one only where its kernels differ.
TRAITS: dict[str, str] = {
    "elementwise": "each output element reads only the input elements at its own position; same shape",
    "activation": "a unary elementwise nonlinearity (scalar attributes at most): what an epilogue may apply",
    "view": "the output is the input's bytes reinterpreted: nothing is computed or moved",
    "identity": "computes nothing at inference (dropout): remove_identity drops it",
    "window": "slides a kernel over the spatial axes (kernel, stride, padding)",
    "contraction": "multiply–accumulates over a weight: the ops that count MACs",
    "fused": "a composite `passes.fuse` builds: contraction, + residual, then an activation",
    "normalization": "rescales by statistics over a channel, a window of channels or an axis",
    "variadic": "takes min_inputs or more activations",
    "training": "exists only in a train step (loss, gradient, train-mode forward): a backend that does not train "
                "declares it a gap",
}

# In an op's ``saves``: the op's output (the other entries are input positions).
OUT = -1

# vjp(attrs, ins, out, dy, wrt) -> dL/d ins[wrt], an array of ins[wrt]'s shape. ``ins`` and ``out`` hold real
# values only at the positions ``saves(attrs, wrt, n_inputs)`` names; the others are NaN placeholders of the right
# shape and dtype, so a rule that reads a value it did not declare computes NaN and its test fails.
Vjp = Callable[[Any, Sequence[np.ndarray], np.ndarray, np.ndarray, int], np.ndarray]
BackwardFlops = Callable[[Any, Types, TensorType, int], int]
Saves = Callable[[Any, int, int], tuple[int, ...]]


def first_input(attrs: Any, n_inputs: int) -> tuple[int, ...]:
    """``overwrites`` of elementwise unary ops: the output may be written over input 0."""
    return (0,)


def no_input(attrs: Any, n_inputs: int) -> tuple[int, ...]:
    return ()


def saves_all(attrs: Any, wrt: int, n_inputs: int) -> tuple[int, ...]:
    """``saves`` default: every input and the output (safe; an op states less where its rule needs less)."""
    return (*range(n_inputs), OUT)


def saves_nothing(attrs: Any, wrt: int, n_inputs: int) -> tuple[int, ...]:
    """The gradient needs only dy and the shapes (add, flatten, pad, avg pools)."""
    return ()


def saves_input(attrs: Any, wrt: int, n_inputs: int) -> tuple[int, ...]:
    return (0,)


def saves_output(attrs: Any, wrt: int, n_inputs: int) -> tuple[int, ...]:
    """The gradient is a function of the output (relu, sigmoid, tanh, softmax): the input may be freed."""
    return (OUT,)


def placeholder(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A read-only all-NaN stand-in for a value a VJP did not declare in ``saves``."""
    return np.broadcast_to(np.array(np.nan, dtype=dtype), shape)


@dataclass(frozen=True)
class OpDef:
    """An op's living definition.

    ``inputs`` names the input roles in order (``("x", "weight", "bias")``); the first ``min_inputs`` are required.
    A variadic op (add, concat) takes ``min_inputs`` or more activations. ``buffers`` are roles that hold state
    which is not a trainable parameter (BN running statistics), excluded from parameter counts as torchvision
    does. ``macs`` counts multiply–accumulates (conv2d and linear only); ``flops`` follows ``flop_rule``.
    ``traits`` are the op's categories (keys of `TRAITS`); ``overwrites(attrs, n_inputs)`` the positions of
    the inputs its output may be written over (the memory planner and in-place lowerings ask it; a position
    holding a parameter is never overwritten). ``noop(attrs, ins, out)`` says when attributes make the op return
    its input unchanged (a 1×1 stride-1 pool); an op with the "identity" trait always does.

    Training (ir/autodiff.py): ``vjp`` is the op's vector–Jacobian product in NumPy, the float64 gradient oracle
    (signature at `Vjp`); None means the op has no VJP, a declared gap that `autodiff` refuses with the node's
    name. ``saves(attrs, wrt, n_inputs)`` names the forward values (input positions, `OUT`) the gradient of input
    ``wrt`` reads: what a train step keeps alive for the backward. ``backward_flops(attrs, ins, out, wrt)`` counts
    the FLOPs of that one gradient, following ``backward_flop_rule``. Inputs that are buffers or integer-typed
    (labels) have no gradient.
    """

    name: str
    attrs_type: type
    inputs: tuple[str, ...]
    infer: Callable[[Any, Types], TensorType]
    flops: Callable[[Any, Types, TensorType], int]
    reference: Callable[..., np.ndarray]
    flop_rule: str
    min_inputs: int | None = None
    traits: frozenset[str] = field(default_factory=frozenset)
    overwrites: Callable[[Any, int], tuple[int, ...]] = no_input
    noop: Callable[[Any, Types, TensorType], bool] | None = None
    buffers: frozenset[str] = field(default_factory=frozenset)
    macs: Callable[[Any, Types, TensorType], int] = lambda attrs, ins, out: 0
    vjp: Vjp | None = None
    saves: Saves = saves_all
    backward_flops: BackwardFlops | None = None
    backward_flop_rule: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "traits", frozenset(self.traits))
        unknown = self.traits - set(TRAITS)
        if unknown:
            raise IRError(f"op {self.name}: unknown trait(s) {sorted(unknown)}; known: {sorted(TRAITS)}")
        if self.vjp is not None and (self.backward_flops is None or not self.backward_flop_rule.strip()):
            raise IRError(f"op {self.name}: a vjp needs its backward_flops and backward_flop_rule (no silent 0)")

    def differentiable(self, index: int, t: TensorType) -> bool:
        """Does input ``index`` (of type ``t``) have a gradient? Not a buffer, not an integer (labels)."""
        return self.role(index) not in self.buffers and t.dtype != "int64"

    @property
    def variadic(self) -> bool:
        return "variadic" in self.traits

    def is_noop(self, attrs: Any, ins: Types, out: TensorType) -> bool:
        """Does a node of this op with these attributes and types return its (only) input unchanged?"""
        return "identity" in self.traits or (self.noop is not None and self.noop(attrs, ins, out))

    def has(self, trait: str) -> bool:
        if trait not in TRAITS:
            raise IRError(f"unknown trait {trait!r}; known: {sorted(TRAITS)}")
        return trait in self.traits

    def check_arity(self, node: Node) -> None:
        n = len(node.inputs)
        lo = self.min_inputs if self.min_inputs is not None else len(self.inputs)
        hi = None if self.variadic else len(self.inputs)
        if n < lo or (hi is not None and n > hi):
            want = f"at least {lo}" if hi is None else (f"{lo}" if lo == hi else f"{lo} to {hi}")
            raise IRError(f"node {node.name!r} ({node.op}): takes {want} inputs "
                          f"({', '.join(self.inputs)}), got {n}: {list(node.inputs)}")

    def role(self, index: int) -> str:
        return self.inputs[min(index, len(self.inputs) - 1)]

    def attrs_from_dict(self, data: dict[str, Any]) -> Any:
        known = {f.name for f in fields(self.attrs_type)}
        unknown = set(data) - known
        if unknown:
            raise IRError(f"op {self.name}: unknown attribute(s) {sorted(unknown)}; known: {sorted(known)}")
        return self.attrs_type(**data)


def pair(value: int | Sequence[int], what: str) -> tuple[int, int]:
    """Normalise an int or a pair to a 2-tuple of ints (how torch spells kernel/stride/padding)."""
    if isinstance(value, int | np.integer):
        return int(value), int(value)
    t = tuple(int(v) for v in value)
    if len(t) != 2:
        raise IRError(f"{what} must be an int or a pair, got {value!r}")
    return t  # type: ignore[return-value]


def require_rank(t: TensorType, rank: int, what: str = "input") -> None:
    if t.rank != rank:
        raise ShapeError(f"{what} must have rank {rank} (NCHW), got shape {t.shape}")


def window_out(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil_mode: bool) -> int:
    """Output length of a sliding window: floor((N + 2P − D·(F−1) − 1)/S) + 1, as torch computes it.

    With ceil_mode the division rounds up — so a window may overhang the end, even when it is wider than the
    padded input (torch gives 1 output for N=2, F=3, S=2) — but a last window that would start inside the
    right padding is dropped (torch's rule), so every window overlaps the input.
    """
    span = size + 2 * pad - dilation * (kernel - 1) - 1
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    if out < 1:
        raise ShapeError(f"window {kernel} (dilation {dilation}, stride {stride}) is larger than the padded "
                         f"input {size + 2 * pad}")
    return out


def same_shape(attrs: Any, ins: Types, out: TensorType) -> bool:
    """``noop`` of ops that do nothing when the output has the input's shape (flatten, concat of one input)."""
    return out.shape == ins[0].shape


def same_type(attrs: Any, ins: Types) -> TensorType:
    """Shape rule of elementwise ops: the output has the input's type."""
    return ins[0]


def per_element(k: int) -> Callable[[Any, Types, TensorType], int]:
    """FLOP rule of ops that spend ``k`` FLOPs per output element."""
    return lambda attrs, ins, out: k * out.numel


def per_element_backward(k: int) -> BackwardFlops:
    """Backward FLOP rule of ops whose gradient spends ``k`` FLOPs per output element."""
    return lambda attrs, ins, out, wrt: k * out.numel


def no_backward_flops(attrs: Any, ins: Types, out: TensorType, wrt: int) -> int:
    """The gradient moves data only (a slice, a reshape, dy passed through): 0, stated by the rule."""
    return 0
