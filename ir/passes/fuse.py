"""Fuse conv2d/linear → (add residual) → activation chains into one fused_conv2d / fused_linear node.

A chain starts at a conv2d or linear; it takes in the add that is its value's only reader (a two-input add of
same-shape values, the residual connection of a ResNet block), then the activation that is the only reader of
the chain so far (relu, relu6, sigmoid or tanh: the attribute-free ones). Every absorbed value must have
exactly one reader and not be a graph output, since nothing else may see it once fused. The fused node takes
the name of the chain's last node, so its readers and the graph outputs need no change, and it is scheduled as
early as its inputs allow (at the conv, or right after the residual's producer when that comes later).

``supports`` lets a backend say which fused nodes it can lower; the longest chain it supports is fused, and
none when it supports none. The default accepts every fused node (the reference runs them all).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..graph import Graph, Node
from ..ops._fused import activations, heads
from ..ops.fused_conv2d import FusedConv2dAttrs
from ..ops.fused_linear import FusedLinearAttrs
from ._rewrite import rebuild

Supports = Callable[[Node], bool]


@dataclass(frozen=True)
class Chain:
    head: Node  # the conv2d / linear
    add: Node | None
    act: Node | None

    @property
    def members(self) -> tuple[Node, ...]:
        return tuple(n for n in (self.head, self.add, self.act) if n is not None)

    @property
    def residual(self) -> str | None:
        return None if self.add is None else _other(self.add, self.head.name)


def find_chain(graph: Graph, head: Node) -> Chain | None:
    """The longest fusable chain starting at ``head``, or None if there is nothing to fuse into it."""
    if head.op not in heads():
        return None
    add = act = None
    reader = graph.sole_reader(head.name)
    if (reader is not None and reader.op == "add" and len(reader.inputs) == 2
            and reader.inputs.count(head.name) == 1 and not graph.is_param(_other(reader, head.name))):
        add = reader
        reader = graph.sole_reader(add.name)
    if reader is not None and reader.op in activations():
        act = reader
    if add is None and act is None:
        return None
    return Chain(head, add, act)


def _other(add: Node, name: str) -> str:
    return next(i for i in add.inputs if i != name)


def fused_node(chain: Chain) -> Node:
    """The one node a chain becomes; named like its last member."""
    head = chain.head
    bias = len(head.inputs) > 2
    residual = chain.residual
    act = chain.act.op if chain.act is not None else None
    inputs = (*head.inputs, *((residual,) if residual is not None else ()))
    if head.op == "conv2d":
        a = head.attrs
        attrs = FusedConv2dAttrs(a.stride, a.padding, a.dilation, a.groups, bias, residual is not None, act)
        op = "fused_conv2d"
    else:
        attrs, op = FusedLinearAttrs(bias, residual is not None, act), "fused_linear"
    return Node(chain.members[-1].name, op, inputs, attrs)


def _shorter(chain: Chain) -> Chain | None:
    """The chain without its last member, if that still fuses something."""
    if chain.act is not None and chain.add is not None:
        return Chain(chain.head, chain.add, None)
    return None


def _supported(chain: Chain | None, supports: Supports) -> Chain | None:
    while chain is not None and not supports(fused_node(chain)):
        chain = _shorter(chain)
    return chain


def fuse(graph: Graph, supports: Supports | None = None) -> Graph:
    """The graph with every fusable chain replaced by one fused node (see the module docstring)."""
    accept = supports or (lambda node: True)
    position = {n.name: k for k, n in enumerate(graph.nodes)}
    emit_after: dict[str, list[Node]] = {}  # node name -> fused nodes scheduled right after it
    absorbed: set[str] = set()
    for node in graph.nodes:
        chain = _supported(find_chain(graph, node), accept)
        # two convs feeding one add (a ResNet projection shortcut) both see it: the first in schedule order wins
        if chain is None or any(m.name in absorbed for m in chain.members):
            continue
        anchor = chain.head.name
        if chain.residual is not None and position.get(chain.residual, -1) > position[anchor]:
            anchor = chain.residual  # the residual is computed after the conv: run the fused node after it
        emit_after.setdefault(anchor, []).append(fused_node(chain))
        absorbed.update(m.name for m in chain.members)
    if not absorbed:
        return graph
    nodes: list[Node] = []
    for node in graph.nodes:
        if node.name not in absorbed:
            nodes.append(node)
        nodes.extend(emit_after.get(node.name, ()))
    return rebuild(graph, nodes)
