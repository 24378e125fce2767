"""GoogLeNet's TVM train step (issue 17): max-pool gradients on narrow maps against the float64 NumPy reference.

TOPI's max-pool gradient (include/tvm/topi/nn/pooling.h: pool_grad_impl, the max branch) reads a window past the
output for an input row/column beyond the last window's stride; on a narrow map that aliases the next output row's
first window and an input gets its dY twice (the 3×3/1 pad-1 branch pools of inception4a–5b, at width 2 and 1 in
GoogLeNet at 32 px). backends/tvm/train.py lowers max_pool2d in train mode so every read stays in bounds. Every
case has a distinct N, C, H, W so a transposed axis cannot pass."""

from __future__ import annotations

import numpy as np
import pytest

from convbench import models
from convbench.backends import registry
from convbench.backends.numpy_train import NumpyTrainer
from convbench.backends.tvm import train as tvm_train
from convbench.ir.builder import GraphBuilder
from convbench.ir.graph import Graph, Node
from convbench.ir.ops._pool import PoolAttrs
from convbench.ir.ops.vjp import VjpAttrs
from convbench.ir.optim import SGD
from convbench.ir.train import train_step
from convbench.testing.train_check import backend_step, batch_of, compare_step

TVM = registry.get("tvm")
needs_tvm = pytest.mark.skipif(not TVM.available()[0], reason="apache-tvm is not installed")


def _conv(b: GraphBuilder, x: str, channels: int, kernel: int, name: str, **kw) -> str:
    """GoogLeNet's BasicConv2d less its BN (train-mode BN agrees on its own and triples the compile): conv → ReLU,
    so the pools still see ReLU's ties at 0."""
    return b.relu(b.conv2d(x, channels, kernel, name=f"{name}.conv", **kw), name=f"{name}.relu")


def _inception(b: GraphBuilder, x: str, name: str) -> str:
    """models/googlenet.py's block with a few channels: four branches read x (the 3×3/1 pad-1 ceil pool last)."""
    b1 = _conv(b, x, 2, 1, f"{name}.b1")
    b2 = _conv(b, _conv(b, x, 3, 1, f"{name}.b2.0"), 4, 3, f"{name}.b2.1", padding=1)
    b3 = _conv(b, _conv(b, x, 2, 1, f"{name}.b3.0"), 3, 3, f"{name}.b3.1", padding=1)
    b4 = _conv(b, b.max_pool2d(x, 3, 1, 1, ceil_mode=True, name=f"{name}.b4.0"), 2, 1, f"{name}.b4.1")
    return b.concat([b1, b2, b3, b4], name=f"{name}.concat")


def _head(b: GraphBuilder, x: str) -> Graph:
    x = b.flatten(b.adaptive_avg_pool2d(x, 1, name="avgpool"), name="flatten")
    return b.build(b.linear(x, 5, name="fc"))


def _mini_googlenet() -> Graph:
    """inception → inception → max_pool2d(3, 2, ceil) → inception on 7×5: the pool gives 3×2, where the last block's
    branch pool has a column past its last window's stride (GoogLeNet's 3a/3b/pool/4a chain at 32 px)."""
    b = GraphBuilder("mini_googlenet", (2, 3, 7, 5), dtype="float64")
    x = _inception(b, _inception(b, b.input, "i3a"), "i3b")
    x = b.max_pool2d(x, 3, 2, ceil_mode=True, name="maxpool3")
    return _head(b, _inception(b, x, "i4a"))


def _pool_net(shape: tuple[int, int, int, int], kernel: int, stride: int, padding: int) -> Graph:
    """conv 1×1 → ReLU → one ceil-mode max pool → head: the conv's weight gradient is the pool's input gradient."""
    b = GraphBuilder("pool_net", shape, dtype="float64")
    x = b.relu(b.conv2d(b.input, 4, 1, name="conv"), name="relu")
    return _head(b, b.max_pool2d(x, kernel, stride, padding, ceil_mode=True, name="pool"))


def _agrees(graph: Graph) -> None:
    params = models.init_params(graph)
    step = train_step(graph, SGD(lr=0.05))
    x, labels = batch_of(graph)
    want = NumpyTrainer(step, params, "float64").step(x, labels=labels)
    got = backend_step(TVM, step, params, x, labels, "float64")
    a = compare_step(got, (want.loss, want.grads, want.params), "float64")
    assert a.ok, a.reason
    # The floor forgives a gradient that is 0 in exact arithmetic (a BN β before a train-mode BN); these are not:
    for name in ("conv.weight", "i3a.b1.conv.weight", "i3b.b4.1.conv.weight", "i4a.b2.1.conv.weight"):
        if name in want.grads:
            ref = want.grads[name]
            assert np.abs(got[1][name] - ref).max() <= 1e-9 * np.abs(ref).max(), name


@needs_tvm
@pytest.mark.slow  # two small compiles (~5 s each on a loaded 2-core machine)
@pytest.mark.parametrize("shape, kernel, stride, padding", [
    ((2, 3, 5, 2), 3, 1, 1),  # width 2: input column 1 reads window 2 of 2 (GoogLeNet's inception4a branch pool)
    ((3, 5, 7, 3), 3, 2, 0),  # 3×3/2 ceil to (3, 1): input (2h, 2), window (h, 0)'s, also reads "window (h − 1, 1)"
])
def test_narrow_max_pool_gradient(shape, kernel, stride, padding):
    _agrees(_pool_net(shape, kernel, stride, padding))


@needs_tvm
@pytest.mark.slow  # ~15 s: the compile of three inception blocks and their backward
def test_mini_googlenet_gradients_match_the_float64_reference():
    _agrees(_mini_googlenet())


def test_covering_padding():
    """Enough windows that every input row i has window (i + before) // s; never fewer than the IR's output."""
    assert tvm_train._covering_padding(2, 2, 3, 1, 1, 1) == (3, 2)  # 3×3/1 pad 1 on 2: row 1 needs window 2
    assert tvm_train._covering_padding(3, 1, 3, 2, 0, 0) == (2, 2)  # 3×3/2 on 3 → 1: row 2 needs window 1
    assert tvm_train._covering_padding(7, 3, 3, 2, 0, 0) == (4, 2)  # GoogLeNet's maxpool3 on 7: row 6 → window 3
    assert tvm_train._covering_padding(9, 4, 3, 2, 0, 0) == (5, 2)  # row 8 is window 3's last and reads window 4
    assert tvm_train._covering_padding(8, 4, 2, 2, 0, 0) == (4, 0)  # 2×2/2 tiles 8: every row has its window


def test_dilated_max_pool_is_a_declared_gap():
    node = Node("g", "vjp", ("dy",), VjpAttrs("max_pool2d", PoolAttrs(3, 1, 0, 2), 0, (), ((2, 3, 9, 7), (2, 3, 5, 3))))
    assert not TVM.supports(node) and "no dilation" in tvm_train.vjp_gap(node)
