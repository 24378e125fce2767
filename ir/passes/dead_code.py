"""Dead-code elimination: drop every node whose value no graph output depends on, and the parameters only
those nodes read. Graph inputs stay (they are the calling convention), even if nothing reads them.
"""

from __future__ import annotations

from ..graph import Graph
from ._rewrite import rebuild


def live_values(graph: Graph) -> set[str]:
    """Values some output depends on: a backward sweep from the outputs over the schedule."""
    live = set(graph.outputs)
    for node in reversed(graph.nodes):
        if node.name in live:
            live.update(node.inputs)
    return live


def eliminate_dead_code(graph: Graph) -> Graph:
    live = live_values(graph)
    return rebuild(graph, [n for n in graph.nodes if n.name in live])
