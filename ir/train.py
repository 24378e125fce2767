"""A model's training step, built from its IR graph: `train_step(graph, optimizer)` → `TrainStep`.

The step is (gradient graph, optimizer). The gradient graph is one ordinary `Graph`:

1. the forward in train mode — each ``batch_norm`` becomes ``batch_norm_train`` (batch statistics) followed by two
   ``running_stat`` nodes (the running mean and variance after the step, momentum 0.1, unbiased variance: torch's
   update), each ``dropout`` becomes ``dropout_train`` with a mask seeded per node from ``seed``;
2. the loss: ``softmax_cross_entropy`` of the model's first output (its logits) against an int64 ``labels`` input;
3. the backward (`ir.autodiff.backward`): a gradient for every parameter the loss depends on.

Inputs: the model's input(s) and ``labels``. Outputs: the loss, each trained parameter's gradient (``grads``, in
parameter order), each buffer's value after the step (``buffers``). The optimizer (`ir.optim`: SGD with momentum
0.9 and weight decay 1e-4 by default, the torchvision/MLPerf ResNet recipe; Adam optional) is applied by whoever
runs the graph: `convbench.backends.numpy_train` is the reference; a backend compiles ``step.graph`` like any
graph (it lowers ``vjp``, ``batch_norm_train``, ``running_stat``, ``dropout_train`` and ``softmax_cross_entropy``,
or declares them gaps: `training_gaps`) and applies ``step.optimizer.update`` or its own equivalent.
`train_counts` (ir/train_counts.py) states the FLOPs and static memory of one step.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from . import ops
from .analysis import buffer_params
from .autodiff import backward
from .errors import IRError
from .graph import Graph, Node, TensorType
from .ops.batch_norm_train import BatchNormTrainAttrs
from .ops.dropout_train import DropoutTrainAttrs
from .ops.running_stat import RunningStatAttrs
from .ops.softmax_cross_entropy import CrossEntropyAttrs
from .optim import SGD, Optimizer
from .passes import eliminate_dead_code
from .verify import verify

LABELS, LOSS = "labels", "loss"
NOT_TRAINING = "training runs on numpy only for now"


def training_gaps(reason: str = NOT_TRAINING) -> dict[str, str]:
    """``gaps`` entries for a backend that does not train: every op with the "training" trait, with ``reason``."""
    return {name: reason for name in sorted(ops.with_trait("training"))}


@dataclass(frozen=True)
class StepValues:
    """A train graph's outputs by meaning."""

    loss: float
    grads: dict[str, np.ndarray]
    buffers: dict[str, np.ndarray]


@dataclass(frozen=True)
class TrainStep:
    """One training step of ``forward``: ``graph`` computes the loss, the gradients and the next buffers."""

    graph: Graph
    forward: Graph  # the (inference) model graph the step was built from
    logits: str
    grads: dict[str, str]  # trained parameter -> the value of its gradient
    buffers: dict[str, str]  # buffer (BN running statistic) -> the value it takes after the step
    frozen: tuple[str, ...]  # parameters of ``forward`` the loss does not depend on: left as they are
    grad_of: dict[str, str]  # each backward node -> the value it is (part of) the gradient of
    optimizer: Optimizer = field(default_factory=SGD)
    loss: str = LOSS
    labels: str = LABELS

    @property
    def trained(self) -> tuple[str, ...]:
        return tuple(self.grads)

    @property
    def input_names(self) -> tuple[str, ...]:
        """The model's inputs (labels excluded), in order."""
        return tuple(n for n in self.graph.inputs if n != self.labels)

    def split(self, outputs: Sequence[np.ndarray]) -> StepValues:
        """The graph's outputs (in its order) as loss, gradients and next buffers."""
        values = dict(zip(self.graph.outputs, outputs, strict=True))
        return StepValues(float(np.asarray(values[self.loss])), {p: values[g] for p, g in self.grads.items()},
                          {b: values[v] for b, v in self.buffers.items()})


def _mode_seed(seed: int, node: str) -> int:
    return zlib.crc32(f"{seed}/{node}".encode())


def train_mode(graph: Graph, *, seed: int = 0, bn_momentum: float = 0.1) -> tuple[list[Node], dict[str, str]]:
    """The forward's nodes in train mode, and each BN buffer -> the node computing its value after the step."""
    nodes: list[Node] = []
    buffers: dict[str, str] = {}
    for node in graph.nodes:
        if node.op == "batch_norm":
            x, weight, bias, mean, var = node.inputs
            nodes.append(Node(node.name, "batch_norm_train", (x, weight, bias), BatchNormTrainAttrs(node.attrs.eps)))
            for stat, buf in (("mean", mean), ("var", var)):
                if buf in buffers:
                    raise IRError(f"{graph.name}: buffer {buf!r} is read by two batch_norm nodes; its update would "
                                  f"be ambiguous")
                buffers[buf] = f"{buf}/next"
                nodes.append(Node(buffers[buf], "running_stat", (x, buf), RunningStatAttrs(stat, bn_momentum)))
        elif node.op == "dropout":
            nodes.append(Node(node.name, "dropout_train", node.inputs,
                              DropoutTrainAttrs(node.attrs.p, _mode_seed(seed, node.name))))
        else:
            nodes.append(node)
    return nodes, buffers


def train_step(graph: Graph, optimizer: Optimizer | None = None, *, seed: int = 0, label_smoothing: float = 0.0,
               bn_momentum: float = 0.1) -> TrainStep:
    """The training step of ``graph`` (a classifier whose first output is its logits, shape (N, classes))."""
    verify(graph)
    logits = graph.outputs[0]
    types = graph.types
    producer = graph.node_by_name.get(logits)
    if producer is not None and producer.op == "softmax":
        raise IRError(f"{graph.name}: the output {logits!r} is a softmax (probabilities); cross-entropy takes the "
                      f"logits: build the graph without its final softmax")
    if types[logits].rank != 2:
        raise IRError(f"{graph.name}: the first output {logits!r} must be logits (batch, classes), got shape "
                      f"{types[logits].shape}")
    for name in (LABELS, LOSS):
        if name in types:
            raise IRError(f"{graph.name}: {name!r} is already a value of the graph; a train step adds it")
    nodes, buffers = train_mode(graph, seed=seed, bn_momentum=bn_momentum)
    nodes.append(Node(LOSS, "softmax_cross_entropy", (logits, LABELS), CrossEntropyAttrs(label_smoothing)))
    inputs = {**graph.inputs, LABELS: TensorType((types[logits].shape[0],), "int64")}
    train = Graph(inputs, tuple(nodes), (LOSS,), graph.params, graph.name)
    trainable = [p for p in graph.params if p not in buffer_params(train)]
    result = backward(train, LOSS, trainable)
    outputs = (*result.graph.outputs, *buffers.values())
    step_graph = verify(eliminate_dead_code(result.graph.replace(outputs=outputs)))
    return TrainStep(step_graph, graph, logits, result.grads, buffers,
                     tuple(p for p in graph.params if p not in result.grads and p not in buffers), result.grad_of,
                     optimizer or SGD())
