"""Graph surgery the passes share: bypassing a node and dropping parameters nobody reads.

Passes work on a list of nodes and the outputs tuple, then build one new `Graph` at the end.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..graph import Graph, Node, TensorType


def rename_inputs(node: Node, mapping: Mapping[str, str]) -> Node:
    if not any(i in mapping for i in node.inputs):
        return node
    return Node(node.name, node.op, tuple(mapping.get(i, i) for i in node.inputs), node.attrs)


def bypass(nodes: list[Node], outputs: tuple[str, ...], removed: str, kept: str
           ) -> tuple[list[Node], tuple[str, ...]] | None:
    """Drop node ``removed``, whose value equals value ``kept``; its readers read ``kept`` instead.

    Output names are the graph's interface, so when ``removed`` is an output the node producing ``kept`` takes
    its name instead. That needs ``kept`` to be a node's value that is not itself an output; otherwise return
    None (the caller bails out).
    """
    if removed not in outputs:
        mapping = {removed: kept}
        return [rename_inputs(n, mapping) for n in nodes if n.name != removed], outputs
    names = {n.name for n in nodes}
    if kept not in names or kept in outputs:
        return None
    mapping = {kept: removed}
    out = []
    for n in nodes:
        if n.name == removed:
            continue
        n = rename_inputs(n, mapping)
        out.append(Node(removed, n.op, n.inputs, n.attrs) if n.name == kept else n)
    return out, outputs


def read_params(graph_params: Mapping[str, TensorType], nodes: list[Node] | tuple[Node, ...]
                ) -> dict[str, TensorType]:
    """The parameter types some node still reads, in their original (state_dict) order."""
    used = {i for n in nodes for i in n.inputs}
    return {k: t for k, t in graph_params.items() if k in used}


def rebuild(graph: Graph, nodes: list[Node], outputs: tuple[str, ...] | None = None,
            params: Mapping[str, TensorType] | None = None) -> Graph:
    """A new graph with these nodes; parameters no node reads any more are dropped (verify requires it)."""
    return graph.replace(nodes=tuple(nodes), outputs=graph.outputs if outputs is None else outputs,
                         params=read_params(graph.params if params is None else params, nodes))


def matching_arrays(graph: Graph, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays of the graph's parameters (a new dict: passes never mutate their input)."""
    return {k: params[k] for k in graph.params if k in params}
