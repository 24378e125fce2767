"""Remove nodes that compute the identity at inference: dropout (the "identity" trait), and nodes whose
attributes make their op a no-op, as each op states in its file (`OpDef.noop`: a flatten that changes no shape,
a one-input concat, a 1×1 stride-1 unpadded pool, an adaptive pool to the input's own size). Their readers read
the node's input instead.
"""

from __future__ import annotations

from .. import ops
from ..graph import Graph, Node
from ._rewrite import bypass, rebuild


def is_identity(graph: Graph, node: Node) -> bool:
    """Does ``node`` return its (only) activation input unchanged? The op's own rule (`OpDef.is_noop`) decides
    from its attributes and types."""
    if len(node.inputs) != 1 or graph.is_param(node.inputs[0]):
        return False
    types = graph.types
    return ops.get(node.op).is_noop(node.attrs, [types[node.inputs[0]]], types[node.name])


def remove_identity(graph: Graph) -> Graph:
    """The graph without its identity nodes. An identity that is a graph output hands its name to its
    producer; when that is impossible (its input is a graph input, or also an output) it stays."""
    nodes, outputs = list(graph.nodes), graph.outputs
    for node in graph.nodes:
        if not is_identity(graph, node):
            continue
        # earlier removals may have rewired this node's input: read it from the current list
        current = next(n for n in nodes if n.name == node.name)
        rewired = bypass(nodes, outputs, node.name, current.inputs[0])
        if rewired is not None:
            nodes, outputs = rewired
    return rebuild(graph, nodes, outputs)
