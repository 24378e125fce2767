"""Constant folding: a node that reads only parameters (or values folded before it) is evaluated once, at
compile time, and becomes a parameter named like the node — so its readers need no change.

The evaluation runs the op's reference in float64 and stores the result in the dtype of the arrays it read
(one rounding, like the folded weights of fold_batch_norm; the oracle's float64 parameters stay float64).
Graph outputs are not folded: an output stays a value the graph computes. A dequantize_linear of a parameter
stays unless ``dequantize=True`` (then it folds into a float32 parameter: for a backend whose convs run in float
on the dequantized weights, such as Triton's QDQ path).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .. import ops
from ..errors import IRError
from ..graph import Graph, Node, TensorType
from ._rewrite import matching_arrays, rebuild


def is_constant(graph: Graph, node: Node, constants: set[str], dequantize: bool = False) -> bool:
    # dequantize_linear of an int8 weight stays (as in ORT's constant folding): an int8 engine must see the QDQ
    # pair to run the contraction in int8; folded, the weight would be float and the conv a float conv
    return (node.name not in graph.outputs and (dequantize or node.op != "dequantize_linear")
            and all(i in graph.params or i in constants for i in node.inputs))


def fold_constants(graph: Graph, params: Mapping[str, np.ndarray], dequantize: bool = False
                   ) -> tuple[Graph, dict[str, np.ndarray]]:
    """Evaluate constant nodes into parameters; the graph keeps the rest, the parameters dict grows.
    ``dequantize``: dequantized parameters fold too, into float32."""
    arrays = matching_arrays(graph, params)
    folded: dict[str, np.ndarray] = {}
    for node in graph.nodes:
        if not is_constant(graph, node, set(folded), dequantize):
            continue
        args = [folded[i] if i in folded else _param(arrays, node, i) for i in node.inputs]
        value = ops.get(node.op).reference(node.attrs, *(np.asarray(a, dtype=np.float64) for a in args))
        # in the dtype of the arrays read, except a dequantized code (int8, int32), which becomes its float value
        dtype = np.float32 if node.op == "dequantize_linear" else np.result_type(*args)
        folded[node.name] = np.ascontiguousarray(value, dtype=dtype)
    if not folded:
        return graph, arrays
    nodes = [n for n in graph.nodes if n.name not in folded]
    types: dict[str, TensorType] = {**graph.params, **{k: graph.types[k] for k in folded}}
    new = rebuild(graph, nodes, params=types)
    arrays.update(folded)
    return new, {k: arrays[k] for k in new.params}


def _param(arrays: Mapping[str, np.ndarray], node: Node, name: str) -> np.ndarray:
    if name not in arrays:
        raise IRError(f"fold_constants: node {node.name!r} ({node.op}) reads parameter {name!r}, "
                      f"which is missing from the parameters given")
    return arrays[name]
