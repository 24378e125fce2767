"""The op registry. Each op lives in its own module as one `OpDef`: attrs, shape rule, counts, reference.

Registration is explicit (the list at the bottom) and refuses duplicates; an unknown op fails with the sorted
list of the known ones.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import IRError, ShapeError, UnknownOpError
from ..graph import Node, TensorType
from ._base import TRAITS, NoAttrs, OpDef, first_input, no_input, per_element, same_type

_REGISTRY: dict[str, OpDef] = {}


def register(op: OpDef) -> OpDef:
    """Add an op; a second op with the same name is an error, not a silent override."""
    if op.name in _REGISTRY:
        raise IRError(f"op {op.name!r} is already registered")
    _REGISTRY[op.name] = op
    return op


def get(name: str) -> OpDef:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownOpError(f"unknown op {name!r}; known ops: {', '.join(sorted(_REGISTRY))}") from None


def names() -> list[str]:
    return sorted(_REGISTRY)


def with_trait(trait: str) -> frozenset[str]:
    """The registered ops that have ``trait`` (a key of `TRAITS`): every op-category set derives from this."""
    if trait not in TRAITS:
        raise IRError(f"unknown trait {trait!r}; known: {sorted(TRAITS)}")
    return frozenset(name for name, op in _REGISTRY.items() if trait in op.traits)


def infer_node(node: Node, types: Mapping[str, TensorType]) -> TensorType:
    """The output type of ``node`` given the types of the values it reads; errors name node, op and shapes."""
    op = get(node.op)
    missing = [i for i in node.inputs if i not in types]
    if missing:
        raise IRError(f"node {node.name!r} ({node.op}): input(s) {missing} are not defined before it")
    op.check_arity(node)
    if not isinstance(node.attrs, op.attrs_type):
        raise IRError(f"node {node.name!r} ({node.op}): attrs must be {op.attrs_type.__name__}, "
                      f"got {type(node.attrs).__name__}")
    in_types = [types[i] for i in node.inputs]
    try:
        return op.infer(node.attrs, in_types)
    except ShapeError as e:
        shapes = ", ".join(f"{i}: {t}" for i, t in zip(node.inputs, in_types, strict=True))
        raise ShapeError(f"node {node.name!r} ({node.op}): {e} [inputs {shapes}]") from None


from . import (  # noqa: E402  (the modules import the helpers above)
    adaptive_avg_pool2d,
    add,
    avg_pool2d,
    batch_norm,
    batch_norm_train,
    clip,
    concat,
    conv2d,
    dequantize_linear,
    dropout,
    dropout_train,
    elu,
    flatten,
    fused_conv2d,
    fused_linear,
    hardsigmoid,
    hardswish,
    leaky_relu,
    linear,
    lrn,
    max_pool2d,
    mul,
    pad,
    quantize_linear,
    relu,
    relu6,
    reshape,
    running_stat,
    sigmoid,
    silu,
    softmax,
    softmax_cross_entropy,
    tanh,
    vjp,
)

for _module in (conv2d, max_pool2d, avg_pool2d, adaptive_avg_pool2d, linear, relu, leaky_relu, sigmoid, tanh,
                elu, softmax, batch_norm, lrn, add, concat, flatten, dropout, fused_conv2d, fused_linear,
                relu6, pad, mul, hardswish, hardsigmoid, silu, clip, reshape,
                # int8 as ONNX QDQ (ir/passes/quantize.py inserts them)
                quantize_linear, dequantize_linear,
                # training (ir/autodiff.py, ir/train.py): the loss, the train-mode forms, the generic gradient node
                softmax_cross_entropy, batch_norm_train, running_stat, dropout_train, vjp):
    register(_module.OP)

__all__ = ["TRAITS", "NoAttrs", "OpDef", "first_input", "get", "infer_node", "names", "no_input", "per_element",
           "register", "same_type", "with_trait"]
