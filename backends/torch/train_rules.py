"""The torch lowering rules of the train-step ops (ir/train.py): train-mode BN and dropout, running statistics,
the loss, and the generic ``vjp`` node, which lowers to torch's own derivative of the one forward node it is a
gradient of (every forward node of a train step reads autograd leaves: see `Lowering`), so the IR's backward
structure — its sums over uses, its schedule — is what runs. Merged into `lowering.LOWERINGS`.

What keeps it as fast as ``loss.backward()`` on the same network (benchmarks/train_step_vs_torch.py): the vjp nodes
of one forward node are one ``autograd.grad`` call (`vjp_grads`: BN's three gradients from one backward kernel);
train-mode BN updates the running statistics in its own kernel (`batch_norm_with_stats`, no extra passes); ReLU
and the residual add are differentiated without autograd (`_without_autograd`), so they keep nothing alive and
write in place where torchvision's modules do. The optimizer update is backends/torch/optim.py.
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
    """Batch statistics. Where the step's running_stat nodes of this BN's input are still to lower (ir/train.py's
    train_mode emits them right after it), the BN kernel updates copies of the running buffers itself
    (`batch_norm_with_stats`): torch's own update (momentum, unbiased variance: running_stat's rule) from the
    statistics the kernel computes anyway, instead of two more passes over the activation; `_running_stat` then
    returns those copies. Never folded: no inference pass or `plan_folds` touches this op."""
    x, w, b = (lw.value(i) for i in node.inputs)
    stats = _running_stats(lw, node)
    if stats is None:
        return lw.call(node, F.batch_norm, x, None, None, w, b, True, 0.0, node.attrs.eps)
    mean, var = stats
    buffers = (lw.value(mean.inputs[1]), lw.value(var.inputs[1]))  # not this node's inputs: no leaves
    out = lw.fx.call_function(batch_norm_with_stats, (x, w, b, *buffers, mean.attrs.momentum, node.attrs.eps))
    lw.env[mean.name] = lw.fx.call_function(operator.getitem, (out, 1))
    lw.env[var.name] = lw.fx.call_function(operator.getitem, (out, 2))
    return lw.call(node, operator.getitem, out, 0)


def _running_stats(lw: Lowering, node: Node) -> tuple[Node, Node] | None:
    """The running_stat nodes (mean, variance) of ``node``'s input not lowered yet, one of each with one momentum
    on parameter buffers; else None (each lowers by itself)."""
    found: dict[str, list[Node]] = {"mean": [], "var": []}
    for name in lw.graph.users.get(node.inputs[0], ()):
        r = lw.graph.node_by_name[name]
        if r.op == "running_stat" and name not in lw.env and r.inputs[1] in lw.params:
            found[r.attrs.stat].append(r)
    if len(found["mean"]) != 1 or len(found["var"]) != 1:
        return None
    mean, var = found["mean"][0], found["var"][0]
    return (mean, var) if mean.attrs.momentum == var.attrs.momentum else None


def batch_norm_with_stats(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor,
                          var: torch.Tensor, momentum: float, eps: float) -> tuple[torch.Tensor, ...]:
    """Train-mode BN and the running statistics after it: the kernel updates copies of the buffers in place, so
    the executable's own buffers stay as compiled and every step starts from the same point."""
    mean, var = mean.clone(), var.clone()
    return F.batch_norm(x, mean, var, weight, bias, True, momentum, eps), mean, var


def _running_stat(lw: Lowering, node: Node) -> torch.fx.Node:
    if node.name in lw.env:  # computed by its BN's kernel (`_batch_norm_train`)
        return lw.env[node.name]
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
    return torch.ops.aten.threshold_backward(dy, y, 0)  # relu's derivative in torch (one pass, no mask tensor)


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
    dy)``. Every forward node reads leaves, so this differentiates R alone, as the IR's per-op rule does, and the
    IR's backward structure (the sums over uses, the schedule) is what runs. The vjp nodes of one forward node
    and one cotangent (a conv's data and weight gradients, BN's three) are one ``autograd.grad`` call at the first
    of them (`vjp_grads`), each taking its element: torch's backward kernels compute them together (one
    ``native_batch_norm_backward`` instead of three, each of which recomputes the same two reductions). A vjp
    node whose forward node a pass rewrote away is lowered from its own inputs (`_standalone`)."""
    r = _differentiated(lw, node)
    if r is None:
        return _standalone(lw, node)
    _one_position(node, r)
    direct = _without_autograd(lw, node, r)
    if direct is not None:
        return direct
    if not node.attrs.cotangent:  # the loss: one vjp node (its labels have no gradient)
        return lw.call(node, layers.vjp_grad, lw.env[r.name], lw.leaves[(r.name, r.inputs[node.attrs.wrt])], None)
    from .lowering import _ident

    cotangent = node.inputs[0]
    group = [s for s in (lw.graph.node_by_name[u] for u in lw.graph.users[cotangent])
             if s.op == "vjp" and s.inputs[0] == cotangent and s.attrs.cotangent and _differentiated(lw, s) is r
             and r.inputs.count(r.inputs[s.attrs.wrt]) == 1]
    key = f"{r.name}::vjp@{cotangent}"  # `::`: a name no IR value can take
    if key not in lw.env:
        leaves = tuple(lw.leaves[(r.name, r.inputs[s.attrs.wrt])] for s in group)
        lw.env[key] = lw.fx.call_function(vjp_grads, (lw.env[r.name], leaves, lw.value(cotangent)),
                                          name=_ident(r.name) + "_vjp")
    return lw.call(node, operator.getitem, lw.env[key], group.index(node))


# Producers whose torch backward reads their inputs, never their output: a node after one may write over that output
# when it is the output's one reader (torchvision's ``ReLU(inplace=True)`` after BN, ``out += identity``).
OUTPUT_NOT_SAVED = frozenset({"batch_norm_train", "conv2d", "add"})


def _without_autograd(lw: Lowering, node: Node, r: Node) -> torch.fx.Node | None:
    """The gradient of an add (``dy`` itself: ir/ops/add.py) or of an op whose rule reads only its output
    (`FROM_OUTPUT`: relu's ``dy·(y > 0)``, as torch's own backward kernels take it), without autograd: ``r``'s
    inputs become plain detached values (`_detached`) instead of leaves, so ``r`` builds no autograd graph and
    what it read is freed after it, unless needed for another node; where the value before it has no other reader
    and its producer's backward does not read it (`OUTPUT_NOT_SAVED`), ``r`` overwrites it (`lowering._in_place`:
    relu_, relu6_, +=). None for any other op: `vjp_grads`."""
    a = node.attrs
    if r.op == "add":
        grad = lw.value(node.inputs[0])
    elif r.op in FROM_OUTPUT and a.cotangent and tuple(a.saved) == (OUT,):
        extra = FROM_OUTPUT_ARGS.get(r.op, lambda _: ())(r.attrs)
        grad = lw.call(node, FROM_OUTPUT[r.op], lw.value(node.inputs[0]), lw.value(node.inputs[1]), *extra)
    else:
        return None
    for v in r.inputs:
        leaf = lw.leaves.get((r.name, v))
        if leaf is not None:
            leaf.target = _detached
    from .lowering import _in_place

    made, src = lw.env[r.name], lw.graph.node_by_name.get(r.inputs[0])
    in_place = _in_place()
    if (made.op == "call_function" and made.target in in_place and src is not None
            and src.op in OUTPUT_NOT_SAVED and lw.graph.sole_reader(src.name) == r):
        made.target = in_place[made.target]
    return grad


def _detached(x: torch.Tensor) -> torch.Tensor:
    """A forward node's input where its gradient needs no autograd (`_without_autograd`): no graph, no leaf."""
    return x.detach()


def _one_position(node: Node, r: Node) -> None:
    value = r.inputs[node.attrs.wrt]
    if r.inputs.count(value) > 1:  # one leaf serves both positions: autograd would give their sum to each
        raise BackendError(f"torch backend: vjp node {node.name!r}: {r.name!r} reads {value!r} at several inputs; "
                           f"a per-input gradient of it is not lowered")


def vjp_grads(out: torch.Tensor, values: tuple[torch.Tensor, ...], dy: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """d⟨out, dy⟩/d each of ``values`` (leaves of the one node that computed ``out``), in one backward call; the
    node's autograd graph is kept for a vjp node of it outside the group (none in a step `ir.autodiff` builds)."""
    return torch.autograd.grad(out, values, dy, retain_graph=True)


TRAIN_RULES: dict[str, Callable[[Lowering, Node], torch.fx.Node]] = {
    "batch_norm_train": _batch_norm_train, "running_stat": _running_stat, "dropout_train": _dropout_train,
    "softmax_cross_entropy": _cross_entropy, "vjp": _vjp,
}
