"""The torch lowering rules of the train-step ops (ir/train.py): train-mode BN and dropout, running statistics,
the loss, and the generic ``vjp`` node, which lowers to torch's own derivative of the one forward node it is a
gradient of (every forward node of a train step reads autograd leaves: see `Lowering`), so the IR's backward
structure — its sums over uses, its schedule — is what runs. Merged into `lowering.LOWERINGS`.
"""
from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ...ir.graph import Node, TensorType
from ...ir.ops._base import OUT
from ...ir.ops.dropout_train import scaled_mask
from ..base import BackendError

try:  # loads without torch: the rules only run when a graph lowers
    import torch
    import torch.nn.functional as F

    from . import layers
except ImportError:  # pragma: no cover - exercised by the registry test with torch hidden
    torch = F = layers = None  # type: ignore[assignment]

if TYPE_CHECKING:
    import torch.fx

    from .lowering import Lowering


def _batch_norm_train(lw: Lowering, node: Node) -> torch.fx.Node:
    """Batch statistics, no running buffers here: the running_stat nodes compute those (never folded: no
    inference pass or `plan_folds` touches this op)."""
    x, w, b = (lw.value(i) for i in node.inputs)
    return lw.call(node, F.batch_norm, x, None, None, w, b, True, 0.0, node.attrs.eps)


def _running_stat(lw: Lowering, node: Node) -> torch.fx.Node:
    x, running = (lw.value(i) for i in node.inputs)
    return lw.call(node, layers.running_stat, x, running, node.attrs.stat, node.attrs.momentum)


def _dropout_train(lw: Lowering, node: Node) -> torch.fx.Node:
    """x · the IR's scaled mask, a constant drawn once with NumPy (a function of seed and shape): the reference's
    mask bit for bit, which torch's own RNG would not give."""
    mask = scaled_mask(node.attrs, lw.graph.types[node.name].shape, np.float64)
    from .lowering import _ident

    target = lw.attach("_masks." + _ident(node.name), lw.tensor(mask))
    return lw.call(node, operator.mul, lw.value(node.inputs[0]), lw.fx.get_attr(target))


def _cross_entropy(lw: Lowering, node: Node) -> torch.fx.Node:
    z, labels = (lw.value(i) for i in node.inputs)
    return lw.call(node, F.cross_entropy, z, labels, label_smoothing=node.attrs.label_smoothing)


def _differentiated(lw: Lowering, node: Node) -> Node | None:
    """The forward node a vjp node is a gradient of, if the graph still has it: the producer of its cotangent's
    value (``R/grad``, ``R/grad@reader``: ir/autodiff.py's names), or for the loss (no cotangent) the node of its
    op, checked against the vjp's op, attributes and saved values. None when a rewriting pass removed or absorbed
    it (``remove_identity`` bypasses an identity, ``fuse`` folds a conv and its activation into one node): the
    name is only a hint; what the vjp computes is fixed by its own attributes and inputs (`_standalone`)."""
    a = node.attrs
    if a.cotangent:
        candidates = [lw.graph.node_by_name.get(node.inputs[0].rpartition("/grad")[0])]
    else:
        candidates = [n for n in lw.graph.nodes if n.op == a.op]
    saved = node.inputs[int(a.cotangent):]
    for r in candidates:
        if (r is not None and r.op == a.op and r.attrs == a.attrs and len(r.inputs) == a.n_inputs
                and all(v == (r.name if k == OUT else r.inputs[k]) for k, v in zip(a.saved, saved, strict=True))):
            return r
    return None


def _relu_from_output(dy: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return dy * (y > 0)


def _relu6_from_output(dy: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return dy * ((y > 0) & (y < 6))


def _sigmoid_from_output(dy: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten.sigmoid_backward(dy, y)


def _tanh_from_output(dy: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten.tanh_backward(dy, y)


def _softmax_from_output(dy: torch.Tensor, y: torch.Tensor, axis: int) -> torch.Tensor:
    return y * (dy - (dy * y).sum(axis, keepdim=True))


# The ops whose VJP reads only their output (``saves_output``: their input cannot be recomputed from what a vjp
# node reads): the derivative from the output, as torch's own backward kernels take it.
FROM_OUTPUT: dict[str, Callable[..., torch.Tensor]] = {
    "relu": _relu_from_output, "relu6": _relu6_from_output, "sigmoid": _sigmoid_from_output,
    "tanh": _tanh_from_output, "softmax": _softmax_from_output,
}
FROM_OUTPUT_ARGS: dict[str, Callable[[Any], tuple]] = {"softmax": lambda attrs: (attrs.axis,)}  # fx-printable


def _zeros_leaf(like: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """A stand-in for a forward input a vjp node does not read (its gradient does not depend on it), of the
    dtype and device of ``like`` (a value the vjp node does read)."""
    return torch.zeros(shape, dtype=like.dtype, device=like.device, requires_grad=True)


def _standalone(lw: Lowering, node: Node) -> torch.fx.Node:
    """A vjp node lowered from its own inputs, as the reference does (`ir.ops.vjp.reference`): its forward op is
    recomputed by the op's torch rule on the saved values, zeros standing in for the inputs it does not save, and
    differentiated by autograd. Exact by the ``saves`` contract: an op's gradient for ``wrt`` does not read the
    values it does not save (tests/test_vjp.py passes NaN for them). An op whose rule saves only its output gets
    torch's derivative from the output (`FROM_OUTPUT`). Costs one forward of the op more than `_vjp`'s reuse of the
    forward node's autograd graph; only vjp nodes whose forward node a pass rewrote away take this path."""
    a = node.attrs
    dy = lw.value(node.inputs[0]) if a.cotangent else None
    values = dict(zip(a.saved, node.inputs[int(a.cotangent):], strict=True))
    if OUT in values and any(k not in values for k in range(a.n_inputs)):
        if a.op not in FROM_OUTPUT or dy is None:
            raise BackendError(f"torch backend: vjp node {node.name!r} ({a.op}, input {a.wrt}): its forward node is "
                               f"no longer in the graph and {a.op}'s gradient from its output is not lowered")
        extra = FROM_OUTPUT_ARGS.get(a.op, lambda _: ())(a.attrs)
        return lw.call(node, FROM_OUTPUT[a.op], dy, lw.value(values[OUT]), *extra)
    temporaries = [f"{node.name}::input{k}" for k in range(a.n_inputs)]
    forward = Node(f"{node.name}::forward", a.op, tuple(temporaries), a.attrs)
    float_type = lw.graph.types[node.name].dtype
    kinds = [lw.graph.types[values[k]].dtype if k in values else float_type for k in range(a.n_inputs)]
    # the op's rule reads its values' types (a conv its kernel's taps): the recomputed node's enter the graph's
    # type table for this one lowering, under names no IR value can take (``::``), and leave it after
    types = lw.graph.types
    types.update({t: TensorType(a.shapes[k], kinds[k]) for k, t in enumerate(temporaries)})
    types[forward.name] = TensorType(a.shapes[OUT], float_type)
    like = dy if dy is not None else lw.value(next(v for k, v in values.items() if kinds[k] != "int64"))
    for k, name in enumerate(temporaries):
        saved = lw.value(values[k]) if k in values else None
        if kinds[k] == "int64":  # labels: no gradient, passed as they are
            lw.env[name] = saved
        elif saved is None:
            lw.env[name] = lw.fx.call_function(_zeros_leaf, (like, a.shapes[k]))
        else:
            lw.env[name] = lw.fx.call_function(layers.leaf, (saved,))
    try:
        out = lw.rules[a.op](lw, forward)
        return lw.call(node, layers.vjp_grad, out, lw.env[temporaries[a.wrt]], dy)
    finally:
        for name in (*temporaries, forward.name):
            lw.env.pop(name, None)
            del types[name]


def _vjp(lw: Lowering, node: Node) -> torch.fx.Node:
    """A gradient node: torch's own derivative of its forward node, ``torch.autograd.grad(R(leaves), leaf_wrt,
    dy)`` (`layers.vjp_grad`). Every forward node reads leaves, so this differentiates R alone, as the IR's per-op
    rule does, and the IR's backward structure (the sums over uses, the schedule) is what runs. A vjp node whose
    forward node a pass rewrote away is lowered from its own inputs (`_standalone`)."""
    r = _differentiated(lw, node)
    if r is None:
        return _standalone(lw, node)
    value = r.inputs[node.attrs.wrt]
    if r.inputs.count(value) > 1:  # one leaf serves both positions: autograd would give their sum to each
        raise BackendError(f"torch backend: vjp node {node.name!r}: {r.name!r} reads {value!r} at several inputs; "
                           f"a per-input gradient of it is not lowered")
    dy = lw.value(node.inputs[0]) if node.attrs.cotangent else None
    return lw.call(node, layers.vjp_grad, lw.env[r.name], lw.leaves[(r.name, value)], dy)


TRAIN_RULES: dict[str, Callable[[Lowering, Node], torch.fx.Node]] = {
    "batch_norm_train": _batch_norm_train, "running_stat": _running_stat, "dropout_train": _dropout_train,
    "softmax_cross_entropy": _cross_entropy, "vjp": _vjp,
}
