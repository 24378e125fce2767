"""`verify(graph)`: the invariants every graph and every pass result must keep."""

from __future__ import annotations

from . import ops
from .errors import IRError
from .graph import Graph


def verify(graph: Graph) -> Graph:
    """Check unique names, topological order, known ops, arity, attrs and shapes; return the graph.

    Raises `IRError` (or a subclass) naming the first offending node.
    """
    defined: set[str] = set()
    for name in (*graph.inputs, *graph.params):
        if name in defined:
            raise IRError(f"{graph.name}: value {name!r} is both a graph input and a parameter")
        defined.add(name)
    types = {**graph.inputs, **graph.params}
    for node in graph.nodes:
        if node.name in defined:
            raise IRError(f"{graph.name}: node name {node.name!r} is not unique")
        ops.get(node.op)
        for i in node.inputs:
            if i not in defined:
                later = i in graph.node_by_name
                why = "is defined later (nodes are out of topological order)" if later else "is not defined"
                raise IRError(f"node {node.name!r} ({node.op}): input {i!r} {why}")
        types[node.name] = ops.infer_node(node, types)
        defined.add(node.name)
    for out in graph.outputs:
        if out not in defined:
            raise IRError(f"{graph.name}: output {out!r} is not a value of the graph")
    used = {i for n in graph.nodes for i in n.inputs}
    unused = [p for p in graph.params if p not in used]
    if unused:
        raise IRError(f"{graph.name}: parameter(s) {unused[:5]} are declared but no node reads them")
    return graph
