"""The TVM backend's train step (backends/tvm/train.py: the forward in train mode, differentiated by
relax.transform.Gradient) against the float64 NumPy reference trainer, and what it declares it cannot train."""

from __future__ import annotations

import pytest

from convbench import models
from convbench.backends import registry
from convbench.backends.numpy_train import NumpyTrainer
from convbench.backends.tvm import train as tvm_train
from convbench.ir.graph import Node
from convbench.ir.ops.pad import PadAttrs
from convbench.ir.ops.vjp import VjpAttrs
from convbench.ir.optim import SGD
from convbench.ir.train import train_step
from convbench.testing.train_check import backend_step, batch_of, compare_step

TVM = registry.get("tvm")
needs_tvm = pytest.mark.skipif(not TVM.available()[0], reason="apache-tvm is not installed")


@needs_tvm
@pytest.mark.slow  # LeNet-5 compiles in ~10 s, ResNet-18 in ~30 s (forward and Gradient's backward, untuned)
@pytest.mark.parametrize("model, batch", [("lenet5", 2), ("resnet18", 4)])
def test_tvm_step_matches_the_float64_reference(model, batch):
    """Loss, every gradient, every parameter after one SGD step and the BN running statistics; batch 4 for
    ResNet-18 at 32 px (docs/training.md on BN with 2 values per channel)."""
    graph = models.build(model, batch=batch, image_size=32)
    params = models.init_params(graph)
    step = train_step(graph, SGD(lr=0.05))
    x, labels = batch_of(graph)
    want = NumpyTrainer(step, params, "float64").step(x, labels=labels)
    got = backend_step(TVM, step, params, x, labels, "float32")
    assert set(got[1]) == set(want.grads) and set(got[2]) == set(want.params)
    a = compare_step(got, (want.loss, want.grads, want.params), "float32")
    assert a.ok, a.reason
    assert got[0] == pytest.approx(want.loss, rel=1e-5)


def _vjp_of(op: str, attrs, shapes) -> Node:
    return Node("g", "vjp", ("dy",), VjpAttrs(op, attrs, 0, (), shapes))


def test_what_tvm_cannot_train_is_declared():
    """A vjp of an op whose Relax form has no gradient is unsupported with the reason (the template then names
    the node); the train-step ops themselves are lowered, so they are no gaps (tests/test_coverage.py)."""
    pad = _vjp_of("pad", PadAttrs((1, 0, 0, 1)), ((2, 3, 7, 5), (2, 3, 8, 6)))
    assert not TVM.supports(pad) and "relax.nn.pad has no gradient" in tvm_train.vjp_gap(pad)
    from convbench.ir.ops.adaptive_avg_pool2d import AdaptivePoolAttrs

    tiled = _vjp_of("adaptive_avg_pool2d", AdaptivePoolAttrs((2, 1)), ((2, 3, 6, 5), (2, 3, 2, 1)))
    ragged = _vjp_of("adaptive_avg_pool2d", AdaptivePoolAttrs((2, 2)), ((2, 3, 7, 5), (2, 3, 2, 2)))
    assert TVM.supports(tiled) and not TVM.supports(ragged)
    assert "no exact tiling" in tvm_train.vjp_gap(ragged)
    assert not set(TVM.gaps) & tvm_train.train_ops()
