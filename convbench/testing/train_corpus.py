"""The train-step ops' corpus: single-node cases for the ops a `TrainStep` adds (the loss, the train-mode forms,
the generic ``vjp`` gradient node), kept apart from `op_cases()` because no inference backend runs them yet —
each declares them gaps (`ir.train.training_gaps`) — and an inference conformance run should not count them as
skips. tests/test_op_traits.py and tests/test_conformance.py read both corpora: every registered op has a case.

Shapes keep every dimension distinct (N=2, C=3, H=7, W=5). Labels are int64 class indices drawn from the case id
(a float-casting caller's integral floats are read back as integers by the loss, see softmax_cross_entropy).
A backend that trains runs ``train_cases()`` through `run_case` like the op corpus.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..ir import ops as ir_ops
from ..ir.graph import Graph, Node, TensorType
from ..ir.ops._base import OUT
from ..ir.ops.batch_norm_train import BatchNormTrainAttrs
from ..ir.ops.conv2d import Conv2dAttrs
from ..ir.ops.dropout_train import DropoutTrainAttrs
from ..ir.ops.running_stat import RunningStatAttrs
from ..ir.ops.softmax_cross_entropy import CrossEntropyAttrs
from ..ir.ops.vjp import VjpAttrs
from .cases import OpCase, make_case, node_case, rng

X = (2, 3, 7, 5)


def _with_labels(case: OpCase, name: str, classes: int) -> OpCase:
    """``case`` with its int64 ``name`` input drawn as class indices in [0, classes)."""
    t = case.graph.inputs[name]
    labels = rng(case.id, name).integers(0, classes, t.shape).astype(np.int64)
    return dataclasses.replace(case, inputs={**case.inputs, name: labels})


def _loss_case(n: int, k: int, smoothing: float = 0.0, tag: str = "") -> OpCase:
    inputs = {"logits": TensorType((n, k)), "labels": TensorType((n,), "int64")}
    node = Node("softmax_cross_entropy", "softmax_cross_entropy", ("logits", "labels"), CrossEntropyAttrs(smoothing))
    graph = Graph(inputs, (node,), (node.name,), {})
    case_id = f"softmax_cross_entropy-{n}x{k}" + (f"-{tag}" if tag else "")
    return _with_labels(make_case(case_id, graph, scale=3.0), "labels", k)


def _vjp_case(op: str, attrs, shapes: list[tuple[int, ...]], wrt: int, tag: str) -> OpCase:
    """The gradient of input ``wrt`` of a one-node ``op`` with input ``shapes``: dy and what its rule saves."""
    opdef = ir_ops.get(op)
    in_types = [TensorType(s) for s in shapes]
    out = opdef.infer(attrs, in_types)
    saved = opdef.saves(attrs, wrt, len(shapes))
    vjp_attrs = VjpAttrs(op, attrs, wrt, saved, (*shapes, out.shape))
    inputs = [out.shape] + [out.shape if k == OUT else shapes[k] for k in saved]
    return node_case(f"vjp-{op}-wrt{wrt}-{tag}", "vjp", vjp_attrs, inputs)


def _loss_vjp_case(n: int, k: int) -> OpCase:
    attrs = VjpAttrs("softmax_cross_entropy", CrossEntropyAttrs(0.1), 0, (0, 1), ((n, k), (n,), ()), cotangent=False)
    inputs = {"logits": TensorType((n, k)), "labels": TensorType((n,), "int64")}
    node = Node("vjp", "vjp", ("logits", "labels"), attrs)
    case = make_case(f"vjp-softmax_cross_entropy-seed-{n}x{k}", Graph(inputs, (node,), ("vjp",), {}), scale=3.0)
    return _with_labels(case, "labels", k)


def train_cases() -> list[OpCase]:
    """Every train-step op, each attribute away from its default in some case."""
    bn = [("weight", (3,)), ("bias", (3,))]
    return [
        _loss_case(5, 7), _loss_case(3, 10, 0.1, "smooth0.1"), _loss_case(1, 4, tag="batch1"),
        node_case("batch_norm_train-2x3x7x5", "batch_norm_train", BatchNormTrainAttrs(), [X], bn),
        node_case("batch_norm_train-4x3-eps0.1", "batch_norm_train", BatchNormTrainAttrs(0.1), [(4, 3)], bn),
        node_case("running_stat-mean", "running_stat", RunningStatAttrs("mean"), [X], [("running", (3,))]),
        node_case("running_stat-var-m0.3", "running_stat", RunningStatAttrs("var", 0.3), [X], [("running", (3,))]),
        node_case("dropout_train-2x3x7x5", "dropout_train", DropoutTrainAttrs(), [X]),
        node_case("dropout_train-3x10-p0.2-seed7", "dropout_train", DropoutTrainAttrs(0.2, 7), [(3, 10)]),
        _vjp_case("conv2d", Conv2dAttrs(2, 1, 2, 3), [(2, 6, 9, 10), (9, 2, 3, 4)], 0, "data"),
        _vjp_case("conv2d", Conv2dAttrs(2, 1, 2, 3), [(2, 6, 9, 10), (9, 2, 3, 4)], 1, "weight"),
        _vjp_case("relu", ir_ops.NoAttrs(), [X], 0, "from-output"),
        _vjp_case("batch_norm_train", BatchNormTrainAttrs(), [X, (3,), (3,)], 0, "data"),
        _loss_vjp_case(5, 7),
    ]
