"""The torch backend's train step (backends/torch/lowering.py: the train-step ops, `_vjp` by torch's own
derivative of each forward node) against the float64 NumPy reference trainer, and the overfit smoke check."""

from __future__ import annotations

import numpy as np
import pytest

from convbench import models
from convbench.backends import registry
from convbench.backends.numpy_train import NumpyTrainer
from convbench.ir.optim import SGD
from convbench.ir.train import train_step
from convbench.testing.train_check import backend_step, batch_of, compare_step

pytest.importorskip("torch")


@pytest.mark.parametrize("model, size", [("lenet5", 32), ("resnet18", 64), ("mobilenet_v2", 64)])
def test_torch_step_matches_the_float64_reference(model, size):
    """Loss, every gradient, every parameter after one SGD step (64 px: see docs/training.md on BN at 32 px)."""
    graph = models.build(model, batch=2, image_size=size)
    params = models.init_params(graph)
    step = train_step(graph, SGD(lr=0.05))
    x, labels = batch_of(graph)
    want = NumpyTrainer(step, params, "float64").step(x, labels=labels)
    got = backend_step(registry.get("torch"), step, params, x, labels, "float32")
    assert set(got[1]) == set(want.grads) and set(got[2]) == set(want.params)
    a = compare_step(got, (want.loss, want.grads, want.params), "float32")
    assert a.ok, a.reason
    assert got[0] == pytest.approx(want.loss, rel=1e-5)


def test_batch_norm_is_not_folded_and_a_wrong_gradient_is_caught():
    graph = models.build("resnet18", batch=2, image_size=64)
    params = models.init_params(graph)
    step = train_step(graph)
    exe = registry.get("torch").compile(step.graph, params)
    assert exe.report.details.folded_batch_norms == 0 and exe.report.details.prepack is False
    x, labels = batch_of(graph)
    loss, grads, after = backend_step(registry.get("torch"), step, params, x, labels, "float32")
    want = NumpyTrainer(step, params, "float64").step(x, labels=labels)
    name = "layer3.0.conv1.weight"
    bad = {**grads, name: grads[name] * 1.5}  # the float32 floor (1e-2 of the largest gradient) hides 5 %
    a = compare_step((loss, bad, after), (want.loss, want.grads, want.params), "float32")
    assert not a.ok and f"gradient of {name}" in a.reason


def test_overfit_one_batch_on_torch():
    """10 steps of SGD (lr 0.05, momentum 0.9) on one fixed batch of 4 lower LeNet-5's loss at least 10×, the
    torch gradients driving the optimizer."""
    graph = models.build("lenet5", batch=4, image_size=32)
    step = train_step(graph, SGD(lr=0.05))
    exe = registry.get("torch").compile(step.graph, models.init_params(graph))
    params = {k: v.astype(np.float32) for k, v in models.init_params(graph).items()}
    state = step.optimizer.init_state({p: params[p] for p in step.trained})
    x, labels = batch_of(graph, 2)
    losses = []
    for _ in range(11):
        exe = registry.get("torch").compile(step.graph, params)
        values = step.split(exe.run([x, labels]))
        losses.append(values.loss)
        updated, state = step.optimizer.update({p: params[p] for p in values.grads}, values.grads, state)
        params = {**params, **updated, **values.buffers}
    assert losses[-1] < losses[0] / 10, losses


@pytest.mark.parametrize("model, batch", [("lenet5", 2), pytest.param("resnet18", 4, marks=pytest.mark.slow)])
def test_torch_step_under_the_default_pipeline_matches_the_float64_reference(model, batch):
    """``fuse`` absorbs LeNet-5's conv/linear→tanh pairs, ``remove_identity`` ResNet-18's 1×1 adaptive pool at
    32 px: the vjp nodes of the nodes they removed lower from their own inputs (train_rules._standalone). Batch 4:
    ResNet-18's last BN at 32 px has 4 values per channel (docs/training.md on BN at batch 2)."""
    graph = models.build(model, batch=batch, image_size=32)
    params = models.init_params(graph)
    step = train_step(graph, SGD(lr=0.05))
    x, labels = batch_of(graph)
    torch_be = registry.get("torch")
    exe = torch_be.compile(step.graph, params, passes="default")
    removed = {n.name for n in step.graph.nodes} - {n.name for n in exe.graph.nodes}
    assert removed, "the pipeline rewrote nothing: the test would not exercise the rewritten step"
    want = NumpyTrainer(step, params, "float64").step(x, labels=labels)
    got = backend_step(torch_be, step, params, x, labels, "float32", passes="default")
    a = compare_step(got, (want.loss, want.grads, want.params), "float32")
    assert a.ok, a.reason


def test_a_vjp_whose_forward_node_is_gone_needs_its_output_rule():
    """An op whose gradient reads only its output cannot be recomputed: it must have a from-output rule."""
    from convbench.backends.torch.train_rules import FROM_OUTPUT
    from convbench.ir import ops
    from convbench.ir.ops._base import saves_output

    assert {n for n in ops.names() if ops.get(n).saves is saves_output} == set(FROM_OUTPUT)


@pytest.mark.slow
def test_pass_ablation_on_torch_says_fuse_and_remove_identity_apply():
    from convbench.bench.ablation_train import train_pass_rows

    lenet = {r["pass"]: r for r in train_pass_rows("lenet5", 32, 2, "torch", "default")}
    assert lenet["fuse"]["train nodes"] == "35 → 31" and lenet["fuse"]["in train mode"].startswith("applies (step")
    resnet = {r["pass"]: r for r in train_pass_rows("resnet18", 32, 2, "torch", "remove_identity")}
    assert resnet["remove_identity"]["in train mode"].startswith("applies (step agrees")
