"""The torch lowering rules of the train-step ops (ir/train.py): train-mode BN and dropout, running statistics,
the loss, and the generic ``vjp`` node, which lowers to torch's own derivative of the one forward node it is a
gradient of (every forward node of a train step reads autograd leaves: see `Lowering`), so the IR's backward
structure — its sums over uses, its schedule — is what runs. Merged into `lowering.LOWERINGS`.
"""
from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ...ir.graph import Node
from ...ir.ops._base import OUT
from ...ir.ops.dropout_train import scaled_mask
from ..base import BackendError

try:  # loads without torch: the rules only run when a graph lowers
    import torch.nn.functional as F

    from . import layers
except ImportError:  # pragma: no cover - exercised by the registry test with torch hidden
    F = layers = None  # type: ignore[assignment]

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


def _differentiated(lw: Lowering, node: Node) -> Node:
    """The forward node a vjp node is a gradient of: the producer of its cotangent's value (``R/grad``,
    ``R/grad@reader``: ir/autodiff.py's names), or for the loss (no cotangent) the node of its op; either checked
    against the vjp's op, attributes and saved values."""
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
    raise BackendError(f"torch backend: vjp node {node.name!r} ({a.op}, input {a.wrt}): no forward node of the "
                       f"graph matches it (its cotangent {node.inputs[0] if a.cotangent else None!r})")


def _vjp(lw: Lowering, node: Node) -> torch.fx.Node:
    """A gradient node: torch's own derivative of its forward node, ``torch.autograd.grad(R(leaves), leaf_wrt,
    dy)`` (`layers.vjp_grad`). Every forward node reads leaves, so this differentiates R alone, as the IR's per-op
    rule does, and the IR's backward structure (the sums over uses, the schedule) is what runs."""
    r = _differentiated(lw, node)
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
