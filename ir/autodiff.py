"""Reverse-mode automatic differentiation over the IR: `backward(graph, loss, wrt)` appends to a graph the nodes
that compute d loss / d v for every value v in ``wrt``.

Design: the backward is IR nodes, not a side table of closures. Each (forward node, differentiable input) on the
loss's path becomes one ``vjp`` node — a registered op like any other, whose attributes name the forward op and
input and whose reference is that op's own VJP (``OpDef.vjp``, the float64 oracle). A value read by several nodes
(a residual stream, a shared weight) gets the sum of its partial gradients through one ``add`` node: the chain
rule's sum over uses, as the backprop lecture states it. The result is an ordinary Graph, so everything that works
on graphs works on the backward too — ``verify``, the FLOP and liveness analysis (training FLOPs and the memory of
a step are counted over this schedule, `ir.train`), serialisation, and every backend's compile template: a
backend that lowers ``vjp`` nodes (by their ``attrs.op``) runs training with nothing else to implement, and one
that has its own autodiff (torch.autograd, TVM's relax.transform.Gradient) may instead take the forward graph and
differentiate it itself — the per-op rules here stay the oracle its gradients are checked against. The cost of
one generic gradient op is that a backend dispatches on an attribute; the alternative, one registered gradient op
per forward op and input, would triple the registry and every backend's gap list.

Only what the loss needs is built: a node gets VJPs only if it lies on a path from some ``wrt`` value to the loss,
only for inputs that themselves depend on ``wrt`` (the first conv's data gradient is not computed, as torch does
not), never for buffers or integer inputs (labels). Each ``vjp`` node reads exactly the forward values its op's
``saves`` names, so liveness over the schedule is the memory a step keeps for its backward. A node on the path
whose op has no VJP is one error naming every such node and op.

Names: the gradient of value v is ``v/grad``; when v has several uses, ``v/grad@<reader>`` are the parts summed
into it (``#k`` added where one reader reads v twice).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from . import ops
from .errors import IRError
from .graph import Graph, Node
from .ops._base import OUT
from .ops.vjp import VjpAttrs


class NoVjpError(IRError):
    """The loss depends, through a node whose op has no VJP, on a value it must be differentiated by."""


@dataclass(frozen=True)
class Backward:
    """The result of `backward`: the graph with its backward nodes, and where each gradient is."""

    graph: Graph  # the forward nodes, then the backward ones; outputs: the loss, then each gradient in wrt order
    grads: dict[str, str]  # value of wrt -> the value holding d loss / d value
    unused: tuple[str, ...]  # values of wrt the loss does not depend on: no gradient (torch leaves .grad None)
    grad_of: dict[str, str]  # each backward node -> the value it is (part of) the gradient of


def grad_name(value: str) -> str:
    return f"{value}/grad"


def _depends_on(graph: Graph, wrt: set[str]) -> set[str]:
    depends = set(wrt)
    for node in graph.nodes:
        if any(i in depends for i in node.inputs):
            depends.add(node.name)
    return depends


def _feeds(graph: Graph, loss: str) -> set[str]:
    needed = {loss}
    for node in reversed(graph.nodes):
        if node.name in needed:
            needed.update(node.inputs)
    return needed


def check_vjps(graph: Graph, nodes: Sequence[Node]) -> None:
    """One `NoVjpError` naming every node (and its op) in ``nodes`` whose op has no VJP."""
    missing = [n for n in nodes if ops.get(n.op).vjp is None]
    if missing:
        names = ", ".join(f"{n.name!r} ({n.op})" for n in missing[:5]) + (" …" if len(missing) > 5 else "")
        raise NoVjpError(f"{graph.name}: cannot differentiate: {len(missing)} node(s) on the loss's path have an op "
                         f"without a VJP: {names}; give the op a vjp in ir/ops/{missing[0].op}.py or keep it off "
                         f"the path of the trained parameters")


def backward(graph: Graph, loss: str, wrt: Sequence[str]) -> Backward:
    """``graph`` with reverse-mode nodes appended computing d ``loss`` / d v for each v in ``wrt``."""
    types = graph.types
    if loss not in types:
        raise IRError(f"{graph.name}: loss {loss!r} is not a value of the graph")
    if types[loss].numel != 1:
        raise IRError(f"{graph.name}: the loss must be a scalar, {loss!r} has shape {types[loss].shape}")
    unknown = [v for v in wrt if v not in types]
    if unknown:
        raise IRError(f"{graph.name}: cannot differentiate by {unknown[:5]}: not values of the graph")
    depends, feeds = _depends_on(graph, set(wrt)), _feeds(graph, loss)
    path = [n for n in graph.nodes if n.name in depends and n.name in feeds]
    check_vjps(graph, path)

    def reads(node: Node) -> list[int]:
        """Positions of the node's inputs that get a gradient."""
        op = ops.get(node.op)
        return [k for k, v in enumerate(node.inputs) if v in depends and op.differentiable(k, types[v])]

    uses = Counter(node.inputs[k] for node in path for k in reads(node))
    taken = set(types)
    parts: dict[str, list[str]] = {}
    emitted: list[Node] = []
    grad_of: dict[str, str] = {}

    def add_node(name: str, of: str, op: str, inputs: Sequence[str], attrs) -> str:
        if name in taken:
            raise IRError(f"{graph.name}: gradient value name {name!r} is already a value of the graph")
        taken.add(name)
        emitted.append(Node(name, op, tuple(inputs), attrs))
        grad_of[name] = of
        return name

    def total(value: str) -> str | None:
        """The value's whole gradient: its one part, or the sum of its parts."""
        got = parts.get(value, [])
        if len(got) <= 1:
            return got[0] if got else None
        return add_node(grad_name(value), value, "add", got, ops.NoAttrs())

    for node in reversed(path):
        cotangent = node.name != loss
        dy = total(node.name) if cotangent else None
        if cotangent and dy is None:
            continue  # its value reaches the loss only through inputs without a gradient
        op = ops.get(node.op)
        shapes = (*(types[i].shape for i in node.inputs), types[node.name].shape)
        repeated = Counter(node.inputs)
        for k in reads(node):
            value = node.inputs[k]
            saved = op.saves(node.attrs, k, len(node.inputs))
            args = ([dy] if cotangent else []) + [node.name if s == OUT else node.inputs[s] for s in saved]
            if uses[value] == 1:
                name = grad_name(value)
            else:
                name = f"{grad_name(value)}@{node.name}" + (f"#{k}" if repeated[value] > 1 else "")
            attrs = VjpAttrs(node.op, node.attrs, k, saved, shapes, cotangent)
            parts.setdefault(value, []).append(add_node(name, value, "vjp", args, attrs))

    grads = {v: g for v in wrt if (g := total(v)) is not None}
    unused = tuple(v for v in wrt if v not in grads)
    out = graph.replace(nodes=(*graph.nodes, *emitted), outputs=(loss, *grads.values()))
    return Backward(out, grads, unused, grad_of)
