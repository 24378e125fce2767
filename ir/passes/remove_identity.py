"""Remove nodes that compute the identity at inference: dropout, and ops whose attributes make them a no-op
(a flatten that changes no shape, a one-input concat, a 1×1/stride-1 unpadded pool, an adaptive pool to the
input's own size). Their readers read the node's input instead.
"""

from __future__ import annotations

from .. import ops
from ..graph import Graph, Node
from ._rewrite import bypass, rebuild


def is_identity(graph: Graph, node: Node) -> bool:
    """Does ``node`` return its (only) activation input unchanged? Decided from op, attrs and shapes."""
    if len(node.inputs) != 1 or graph.is_param(node.inputs[0]):
        return False
    same_shape = graph.types[node.name].shape == graph.types[node.inputs[0]].shape
    a = node.attrs
    if ops.get(node.op).has("identity"):
        return True
    if node.op in ("flatten", "concat"):
        return same_shape
    if node.op in ("max_pool2d", "avg_pool2d"):
        return a.kernel_size == (1, 1) and a.stride == (1, 1) and a.padding == (0, 0)
    if node.op == "adaptive_avg_pool2d":
        return same_shape
    return False


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
