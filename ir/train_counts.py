"""FLOPs and static memory of one training step (docs/design.md, "Conventions that numbers depend on").

FLOPs of a step = forward + loss + backward + optimizer, each from the rules the ops state:
- forward: the train-mode forward (``batch_norm_train`` computes its batch statistics, ``running_stat`` the
  buffers' momentum update, ``dropout_train`` its mask multiply), each node's ``flop_rule``;
- loss: ``softmax_cross_entropy``'s rule;
- backward, stated in two parts: *data* gradients (with respect to activations) and *weight* gradients (with
  respect to parameters: weights, biases, BN γ and β), each ``vjp`` node by its op's ``backward_flop_rule``,
  plus the adds that sum the parts of a value read several times (a residual stream's gradient, a shared weight's).
  Conv2d and linear cost 2·MACs for each of their data and weight gradients, so backward ≈ 2× forward; the first
  layer's data gradient is not computed (nothing trains below it), as torch does not compute it either;
- optimizer: its per-element rule times the trained parameters (`ir.optim`).
``inference_flops`` is the model's inference forward (`analysis.summarize`): the "≈ 3× forward" baseline.

Static memory of a step, each value its own buffer at the graph's dtype (as `analysis` counts inference):
``saved_activation_bytes`` are the forward values still alive when the backward starts (what the gradients read:
the op's ``saves``), by liveness over the forward+backward schedule; ``activation_peak_bytes`` the most activation
bytes (forward values and cotangents) alive at once; ``gradient_bytes`` the parameters' gradients (all alive
before the update); ``optimizer_state_bytes`` its buffers; ``step_peak_bytes`` = parameters + buffers + optimizer
state + the peak over the schedule of live activations plus the gradients finished so far.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from . import ops
from .analysis import summarize
from .optim import optimizer_flops, optimizer_state_bytes
from .train import TrainStep


@dataclass(frozen=True)
class TrainCounts:
    model: str
    batch: int
    optimizer: str
    inference_flops: int
    forward_flops: int
    loss_flops: int
    backward_data_flops: int
    backward_weight_flops: int
    optimizer_flops: int
    param_bytes: int
    buffer_bytes: int
    gradient_bytes: int
    optimizer_state_bytes: int
    saved_activation_bytes: int
    activation_peak_bytes: int
    step_peak_bytes: int

    @property
    def backward_flops(self) -> int:
        return self.backward_data_flops + self.backward_weight_flops

    @property
    def total_flops(self) -> int:
        return self.forward_flops + self.loss_flops + self.backward_flops + self.optimizer_flops

    @property
    def ratio_to_inference(self) -> float:
        """Training FLOPs per step over inference FLOPs (the rule of thumb says ≈ 3)."""
        return self.total_flops / self.inference_flops

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(backward_flops=self.backward_flops, total_flops=self.total_flops,
                 ratio_to_inference=self.ratio_to_inference)
        return d


def _flops(step: TrainStep) -> dict[str, int]:
    graph, types = step.graph, step.graph.types
    out = {"forward": 0, "loss": 0, "data": 0, "weight": 0}
    for node in graph.nodes:
        flops = ops.get(node.op).flops(node.attrs, [types[i] for i in node.inputs], types[node.name])
        if node.name in step.grad_of:
            out["weight" if step.grad_of[node.name] in graph.params else "data"] += flops
        elif node.name == step.loss:
            out["loss"] += flops
        else:
            out["forward"] += flops
    return out


def _memory(step: TrainStep) -> tuple[int, int, int]:
    """(saved activation bytes at the start of the backward, activation peak, peak of activations + gradients)."""
    graph, types = step.graph, step.graph.types
    gradients = set(step.grads.values())
    boundary = next(i for i, n in enumerate(graph.nodes) if n.name == step.loss)
    last_read, keep = graph.last_read, set(graph.outputs)
    live = {name: t.nbytes for name, t in graph.inputs.items()}
    done_grads = saved = peak = peak_total = 0
    for step_index, node in enumerate(graph.nodes):
        size = types[node.name].nbytes
        if node.name in gradients:
            done_grads += size
        else:
            live[node.name] = size
        current = sum(live.values())
        peak, peak_total = max(peak, current), max(peak_total, current + done_grads)
        if step_index == boundary:
            saved = sum(b for v, b in live.items() if last_read.get(v, -1) > boundary)
        for value in graph.frees[step_index]:
            live.pop(value, None)
        if not graph.users.get(node.name) and node.name not in keep:
            live.pop(node.name, None)
    return saved, peak, peak_total


def train_counts(step: TrainStep) -> TrainCounts:
    """The FLOPs and static memory of one step of ``step`` (module docstring: the conventions)."""
    graph = step.graph
    flops = _flops(step)
    trained = {p: graph.params[p] for p in step.trained}
    param_bytes = sum(graph.params[p].nbytes for p in graph.params if p not in step.buffers)
    buffer_bytes = sum(graph.params[b].nbytes for b in step.buffers)
    state = optimizer_state_bytes(step.optimizer, trained)
    saved, peak, peak_total = _memory(step)
    return TrainCounts(
        model=graph.name, batch=graph.types[step.labels].shape[0], optimizer=step.optimizer.name,
        inference_flops=summarize(step.forward).flops, forward_flops=flops["forward"], loss_flops=flops["loss"],
        backward_data_flops=flops["data"], backward_weight_flops=flops["weight"],
        optimizer_flops=optimizer_flops(step.optimizer, trained),
        param_bytes=param_bytes, buffer_bytes=buffer_bytes,
        gradient_bytes=sum(t.nbytes for t in trained.values()), optimizer_state_bytes=state,
        saved_activation_bytes=saved, activation_peak_bytes=peak,
        step_peak_bytes=param_bytes + buffer_bytes + state + peak_total,
    )
