"""Fold an inference batch_norm into the conv2d (or linear) before it: the BN layer disappears at runtime.

``fold_conv_bn_weights`` is the math, a pure array function; backends that fold at lowering call it directly.
``fold_batch_norm`` is the pass: it finds the conv → BN pairs, checks the preconditions and rewires the graph.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import IRError
from ..graph import Graph, Node, TensorType
from ..ops._fused import heads
from ._rewrite import bypass, matching_arrays, rebuild


def fold_conv_bn_weights(weight: np.ndarray, bias: np.ndarray | None, gamma: np.ndarray, beta: np.ndarray,
                         mean: np.ndarray, var: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights and bias of the conv (OIHW) or linear (OI) whose output equals BN(conv(x)).

    BN(z) = scale·z + shift with scale = γ/√(σ²+ε), shift = β − μ·scale; conv is linear in its weight, so
    W' = W·scale (per output channel) and b' = b·scale + shift. Computed in float64, returned in W's dtype.
    """
    scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
    shift = beta.astype(np.float64) - mean.astype(np.float64) * scale
    w = weight.astype(np.float64) * scale.reshape(-1, *([1] * (weight.ndim - 1)))
    b = shift if bias is None else bias.astype(np.float64) * scale + shift
    return w.astype(weight.dtype), b.astype(weight.dtype)


def foldable(graph: Graph, bn: Node) -> Node | None:
    """The conv2d/linear node ``bn`` folds into, or None when a precondition fails.

    Preconditions: BN reads the output of a conv2d or linear that nobody else reads (and that is not a graph
    output); BN's statistics and the producer's weight and bias are parameters read by no other node (folding
    rewrites them); a linear's output is (N, features), so BN's channel axis is the features axis.
    """
    producer = graph.node_by_name.get(bn.inputs[0])
    if producer is None or producer.op not in heads() or graph.sole_reader(producer.name) != bn:
        return None
    if not all(graph.is_param(i) for i in bn.inputs[1:]):
        return None
    if not all(graph.is_param(i) and graph.users[i] == (producer.name,) for i in producer.inputs[1:]):
        return None
    if producer.op == "linear" and graph.types[producer.name].rank != 2:
        return None
    return producer


def fold_batch_norm(graph: Graph, params: Mapping[str, np.ndarray]) -> tuple[Graph, dict[str, np.ndarray]]:
    """Fold every batch_norm whose input is a foldable conv2d/linear into that node's weight and bias.

    The producer gains a bias (``<name>.bias``, placed after its weight) if it had none; the BN node and its
    four parameters disappear and BN's readers read the producer (which takes BN's name if BN was a graph
    output). A BN that fails a precondition stays. Pure: the inputs are not modified. Idempotent: a second run
    finds no foldable BN.
    """
    nodes, outputs = list(graph.nodes), graph.outputs
    arrays = matching_arrays(graph, params)
    new_biases: dict[str, str] = {}  # weight name -> the bias created for it
    for bn in graph.nodes:
        if bn.op != "batch_norm" or (producer := foldable(graph, bn)) is None:
            continue
        current = next(n for n in nodes if n.name == producer.name)  # earlier folds may have rewired its input
        x, weight_name = current.inputs[:2]
        has_bias = len(current.inputs) > 2
        bias_name = current.inputs[2] if has_bias else _fresh(f"{producer.name}.bias", graph)
        folded = Node(current.name, current.op, (x, weight_name, bias_name), current.attrs)
        rewired = bypass([folded if n is current else n for n in nodes], outputs, bn.name, producer.name)
        if rewired is None:
            continue
        nodes, outputs = rewired
        gamma, beta, mean, var = (_array(arrays, bn, i) for i in bn.inputs[1:])
        bias = _array(arrays, producer, bias_name) if has_bias else None
        arrays[weight_name], arrays[bias_name] = fold_conv_bn_weights(
            _array(arrays, producer, weight_name), bias, gamma, beta, mean, var, bn.attrs.eps)
        if not has_bias:
            new_biases[weight_name] = bias_name
    param_types: dict[str, TensorType] = {}
    for name, t in graph.params.items():
        param_types[name] = t
        if name in new_biases:
            param_types[new_biases[name]] = TensorType((t.shape[0],), t.dtype)
    new = rebuild(graph, nodes, outputs, param_types)
    return new, {k: arrays[k] for k in new.params}


def _array(arrays: Mapping[str, np.ndarray], node: Node, name: str) -> np.ndarray:
    if name not in arrays:
        raise IRError(f"fold_batch_norm: node {node.name!r} ({node.op}) reads parameter {name!r}, "
                      f"which is missing from the parameters given")
    return np.asarray(arrays[name])


def _fresh(name: str, graph: Graph) -> str:
    candidate, k = name, 1
    while candidate in graph.types:
        candidate, k = f"{name}_{k}", k + 1
    return candidate
