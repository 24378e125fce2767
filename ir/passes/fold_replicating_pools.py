"""fold_replicating_pools: adaptive_avg_pool2d → flatten → linear folded into the linear where the pool only
copies values (VGG and AlexNet below their design size). ``(graph, params) -> (graph, params, notes)``.

The Triton backend runs it after its pipeline; any backend may: the result is exact up to summation order.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .. import ops
from ..graph import Graph, Node, TensorType
from ..verify import verify


def fold_replicating_pools(graph: Graph, params: Mapping[str, np.ndarray]
                           ) -> tuple[Graph, dict[str, np.ndarray], dict[str, str]]:
    """Fold adaptive_avg_pool2d → flatten → linear into the linear where the pool only replicates.

    When the pool's output size is a multiple of its input's (VGG and AlexNet below their design size: the
    features end 1×1 and the pool copies each value 49 or 36 times), every output cell averages one input
    element, so linear(flatten(pool(x))) = W'·flatten(x) with W' the sum of the weight columns that read copies
    of one element. The pool and its copies disappear and K shrinks by the replication factor (fc6 of VGG at
    32×32: 25088 → 512). Exact up to summation order. Returns the graph, its parameters and, per rewritten
    linear, a note for the plan. Pure: the inputs are not modified.
    """
    nodes, types, weights, notes = list(graph.nodes), dict(graph.params), dict(params), {}
    by_name = graph.node_by_name
    for node in graph.nodes:
        op = ops.get(node.op)
        weight = node.inputs[1] if op.has("contraction") and not op.has("window") else None  # linear layers
        if weight not in graph.params or graph.users[weight] != (node.name,):
            continue
        flat = by_name.get(node.inputs[0])
        pool = by_name.get(flat.inputs[0]) if flat is not None and flat.op == "flatten" else None
        if (pool is None or pool.op != "adaptive_avg_pool2d" or flat.attrs.start_dim != 1
                or graph.users[flat.name] != (node.name,) or graph.users[pool.name] != (flat.name,)
                or {flat.name, pool.name} & set(graph.outputs)):
            continue
        (_, c, h, w), (oh, ow) = graph.types[pool.inputs[0]].shape, pool.attrs.output_size
        if oh % h or ow % w:
            continue
        wide = np.asarray(params[weight], dtype=np.float64)
        folded = wide.reshape(-1, c, h, oh // h, w, ow // w).sum(axis=(3, 5)).reshape(len(wide), c * h * w)
        weights[weight] = folded.astype(np.float32)
        types[weight] = TensorType(folded.shape, graph.params[weight].dtype)
        nodes[nodes.index(flat)] = Node(flat.name, "flatten", (pool.inputs[0],), flat.attrs)
        nodes.remove(pool)
        notes[node.name] = f"{pool.name} {h}×{w}→{oh}×{ow} (a copy) folded into the weight"
    if not notes:
        return graph, dict(params), notes
    return verify(graph.replace(nodes=tuple(nodes), params=types)), weights, notes
