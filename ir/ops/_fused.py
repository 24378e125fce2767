"""The epilogue fused ops share: ``activation(y + residual)`` applied to a freshly computed conv/linear output.

A fused node stands for the composition conv/linear → (+ residual) → activation that `passes.fuse` found in a
graph. Its reference *is* that composition, in the same order and with the same NumPy operations, so a fused
graph gives bitwise the results of the unfused one on the reference backend; a backend that lowers it as one
kernel saves the memory round trips, not arithmetic (FLOPs are the sum of the parts).

Gradients go through the parts as well: the activation's VJP gives dz for z = y + residual (from the saved output
where the activation's own rule reads only its output — relu, relu6, sigmoid, tanh — otherwise z is recomputed
from the saved inputs, which costs the forward's FLOPs again and is counted), dz is the residual's gradient, and
the contraction's VJP turns it into the gradients of x, weight and bias.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import IRError, ShapeError
from ..graph import TensorType
from ._base import OUT, NoAttrs, OpDef, Types, placeholder


@functools.cache
def activations() -> dict[str, OpDef]:
    """Activations a fused node may end with: the "activation" ops without attributes (a fused node has nowhere
    to keep an activation's own attributes). Derived from the registry on first use (the ops are registered
    after this module is imported)."""
    from . import get, with_trait

    return {name: get(name) for name in sorted(with_trait("activation")) if get(name).attrs_type is NoAttrs}


@functools.cache
def heads() -> frozenset[str]:
    """The ops a fused node is built around (and a batch_norm folds into): the contractions that are not fused
    already (conv2d, linear)."""
    from . import with_trait

    return with_trait("contraction") - with_trait("fused")


def check_activation(activation: str | None) -> None:
    if activation is not None and activation not in activations():
        raise IRError(f"fused op: activation must be None or one of {sorted(activations())}, got {activation!r}")


def check_arity(ins: Types, bias: bool, residual: bool, op: str) -> None:
    """The inputs are (x, weight[, bias][, residual]); which optional ones are present is in the attrs."""
    want = 2 + bias + residual
    if len(ins) != want:
        raise ShapeError(f"{op} with bias={bias}, residual={residual} takes {want} inputs, got {len(ins)}")


def overwrites_residual(attrs, n_inputs: int) -> tuple[int, ...]:
    """A fused node's output may be written over its residual input (the last one), when it has one."""
    return (n_inputs - 1,) if attrs.residual else ()


def check_residual(out: TensorType, ins: Types, residual: bool) -> None:
    if residual and ins[-1].shape != out.shape:
        raise ShapeError(f"residual must have the output's shape {out.shape}, got {ins[-1].shape}")


def split(args: tuple[np.ndarray, ...], bias: bool, residual: bool):
    """(x, weight, bias or None, residual or None) from a fused node's positional arguments."""
    x, w = args[0], args[1]
    b = args[2] if bias else None
    r = args[-1] if residual else None
    return x, w, b, r


def epilogue(y: np.ndarray, residual: np.ndarray | None, activation: str | None) -> np.ndarray:
    """activation(y + residual), in place on ``y`` (a fresh array the caller owns).

    ``y += r`` is what add's reference computes (y + r, one rounding per element) and relu runs with ``out=``,
    so the result matches the unfused graph bit for bit.
    """
    if residual is not None:
        y += residual
    if activation == "relu":
        return np.maximum(y, 0, out=y)
    if activation is not None:
        return activations()[activation].reference(NoAttrs(), y)
    return y


def epilogue_flops(out: TensorType, residual: bool, activation: str | None) -> int:
    """FLOPs the epilogue adds: one per element for the residual add, plus the activation's own rule."""
    act = activations()[activation].flops(NoAttrs(), [out], out) if activation is not None else 0
    return (out.numel if residual else 0) + act


# -- gradients ------------------------------------------------------------------------------------------------

def from_output(activation: str | None) -> bool:
    """Is the activation's gradient a function of its output alone (so z need not be kept or recomputed)?"""
    return activation is None or activations()[activation].saves(NoAttrs(), 0, 1) == (OUT,)


def epilogue_vjp(out: np.ndarray, dy: np.ndarray, activation: str | None, pre) -> np.ndarray:
    """dL/dz for out = activation(z); ``pre()`` recomputes z when the activation needs its input."""
    if activation is None:
        return dy
    z = placeholder(out.shape, out.dtype) if from_output(activation) else pre()
    return activations()[activation].vjp(NoAttrs(), [z], out, dy, 0)


def fused_saves(head_saves: tuple[int, ...], activation: str | None, n_inputs: int) -> tuple[int, ...]:
    """What a fused node's gradient reads: the head's own needs, plus the output or, to recompute z, every input."""
    if activation is None:
        extra: tuple[int, ...] = ()
    else:
        extra = (OUT,) if from_output(activation) else (*range(n_inputs), OUT)
    return tuple(sorted(set(head_saves) | set(extra)))


def epilogue_backward_flops(out: TensorType, activation: str | None, recompute: int) -> int:
    """The activation's backward rule, plus the forward FLOPs of z (``recompute``) when it must be rebuilt."""
    if activation is None:
        return 0
    act = activations()[activation]
    return act.backward_flops(NoAttrs(), [out], out, 0) + (0 if from_output(activation) else recompute)


# -- the op definition ----------------------------------------------------------------------------------------

def fused_op(name: str, head: ModuleType, head_attrs: Callable[[Any], Any], attrs_type: type,
             traits: set[str]) -> OpDef:
    """The OpDef of ``activation(head(x, W, b) + residual)``: every rule is the head's (conv2d or linear, a module
    with infer/macs/flops/reference/vjp/saves/backward_flops) composed with the shared epilogue above.
    ``head_attrs(attrs)`` gives the head's own attributes from the fused node's."""
    hname = head.OP.name

    def parts(attrs: Any, ins: Any) -> Any:
        return ins[: 2 + attrs.bias]  # (x, weight[, bias]): the head's inputs

    def infer(attrs: Any, ins: Types) -> TensorType:
        check_arity(ins, attrs.bias, attrs.residual, name)
        out = head.infer(head_attrs(attrs), parts(attrs, ins))
        check_residual(out, ins, attrs.residual)
        return out

    def macs(attrs: Any, ins: Types, out: TensorType) -> int:
        return head.macs(head_attrs(attrs), parts(attrs, ins), out)

    def flops(attrs: Any, ins: Types, out: TensorType) -> int:
        base = head.flops(head_attrs(attrs), parts(attrs, ins), out)
        return base + epilogue_flops(out, attrs.residual, attrs.activation)

    def reference(attrs: Any, *args: np.ndarray) -> np.ndarray:
        x, w, b, r = split(args, attrs.bias, attrs.residual)
        return epilogue(head.reference(head_attrs(attrs), x, w, b), r, attrs.activation)

    def vjp(attrs: Any, ins: Any, out: np.ndarray, dy: np.ndarray, wrt: int) -> np.ndarray:
        x, w, b, r = split(ins, attrs.bias, attrs.residual)

        def pre() -> np.ndarray:
            z = head.reference(head_attrs(attrs), x, w, b)
            return z + r if r is not None else z

        dz = epilogue_vjp(out, dy, attrs.activation, pre)
        if attrs.residual and wrt == len(ins) - 1:
            return dz  # d(z)/d(residual) is the identity
        return head.vjp(head_attrs(attrs), parts(attrs, ins), None, dz, wrt)

    def saves(attrs: Any, wrt: int, n_inputs: int) -> tuple[int, ...]:
        own = () if attrs.residual and wrt == n_inputs - 1 else head.saves(head_attrs(attrs), wrt, 2 + attrs.bias)
        return fused_saves(own, attrs.activation, n_inputs)

    def backward_flops(attrs: Any, ins: Types, out: TensorType, wrt: int) -> int:
        hp, hin = head_attrs(attrs), parts(attrs, ins)
        own = 0 if attrs.residual and wrt == len(ins) - 1 else head.backward_flops(hp, hin, out, wrt)
        recompute = head.flops(hp, hin, out) + (out.numel if attrs.residual else 0)
        return own + epilogue_backward_flops(out, attrs.activation, recompute)

    return OpDef(
        name=name, attrs_type=attrs_type, inputs=("x", "weight", "bias", "residual"), min_inputs=2,
        traits=traits | {"contraction", "fused"}, overwrites=overwrites_residual,
        infer=infer, macs=macs, flops=flops, reference=reference,
        flop_rule=f"{hname}'s (2·MACs + bias) + 1 per element for the residual + the activation's rule",
        vjp=vjp, saves=saves, backward_flops=backward_flops,
        backward_flop_rule="the activation's backward rule (+ the forward's FLOPs when z must be recomputed: "
                           f"hardswish, hardsigmoid, silu), then {hname}'s backward rule for x, weight and bias; "
                           "0 more for the residual",
    )
