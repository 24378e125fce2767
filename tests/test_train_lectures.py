"""The backprop lecture's claims, checked on the IR's autodiff: a shared weight's gradient is the sum of its uses
(two convs reading one weight; a conv's weight gradient as the sum over output positions of each position's
gradient), and gradient descent on a 1-D quadratic converges to its optimum — at the rate the step size sets."""

from __future__ import annotations

import numpy as np
import pytest

from convbench.ir import interpreter, ops
from convbench.ir.autodiff import backward
from convbench.ir.graph import Graph, Node, TensorType
from convbench.ir.ops.conv2d import Conv2dAttrs
from convbench.ir.ops.flatten import FlattenAttrs
from convbench.ir.ops.softmax_cross_entropy import CrossEntropyAttrs
from convbench.ir.optim import SGD

torch = pytest.importorskip("torch")


def _shared_weight_graph() -> Graph:
    """x → conv(W) → relu → conv(W) → flatten → cross-entropy: one weight W read by two convs."""
    conv = Conv2dAttrs(1, 1)
    nodes = (Node("conv_a", "conv2d", ("x", "w"), conv), Node("relu", "relu", ("conv_a",), ops.NoAttrs()),
             Node("conv_b", "conv2d", ("relu", "w"), conv), Node("pool", "adaptive_avg_pool2d", ("conv_b",),
                                                                  ops.get("adaptive_avg_pool2d").attrs_type()),
             Node("logits", "flatten", ("pool",), FlattenAttrs(1)),
             Node("loss", "softmax_cross_entropy", ("logits", "labels"), CrossEntropyAttrs()))
    inputs = {"x": TensorType((2, 3, 7, 5), "float64"), "labels": TensorType((2,), "int64")}
    return Graph(inputs, nodes, ("loss",), {"w": TensorType((3, 3, 3, 3), "float64")}, "shared")


def test_a_shared_weight_s_gradient_is_the_sum_of_its_uses():
    graph = _shared_weight_graph()
    result = backward(graph, "loss", ["w"])
    parts = [n for n in result.graph.nodes if n.name.startswith("w/grad@")]
    assert sorted(n.name for n in parts) == ["w/grad@conv_a", "w/grad@conv_b"]
    total = result.graph.node_by_name["w/grad"]
    assert total.op == "add" and set(total.inputs) == {p.name for p in parts}
    rng = np.random.default_rng(0)
    w, x, labels = rng.standard_normal((3, 3, 3, 3)) / 3, rng.standard_normal((2, 3, 7, 5)), np.array([2, 0])
    with_parts = result.graph.replace(outputs=("w/grad", *(p.name for p in parts)))
    grad, *each = interpreter.run(with_parts, {"w": w}, {"x": x, "labels": labels})
    np.testing.assert_allclose(grad, each[0] + each[1], rtol=0, atol=0)
    assert np.abs(each[0]).max() > 1e-3 and np.abs(each[1]).max() > 1e-3  # both uses contribute
    wt = torch.from_numpy(w).requires_grad_()
    y = torch.nn.functional.conv2d(torch.relu(torch.nn.functional.conv2d(torch.from_numpy(x), wt, padding=1)),
                                   wt, padding=1).mean((2, 3))
    torch.nn.functional.cross_entropy(y, torch.from_numpy(labels)).backward()
    np.testing.assert_allclose(grad, wt.grad.numpy(), rtol=1e-10, atol=1e-13)


def test_a_conv_weight_gradient_is_the_sum_over_output_positions():
    """Weight sharing inside one conv: dW = Σ over (n, oh, ow) of dy[n, :, oh, ow] ⊗ the patch it saw."""
    attrs = Conv2dAttrs(stride=(2, 1), padding=(1, 2), dilation=(1, 2))
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 3, 7, 5)), rng.standard_normal((4, 3, 3, 2))
    out = ops.get("conv2d").reference(attrs, x, w)
    dy = rng.standard_normal(out.shape)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (2, 2)))
    by_position = np.zeros_like(w)
    for n in range(out.shape[0]):
        for oh in range(out.shape[2]):
            for ow in range(out.shape[3]):
                rows, cols = oh * 2 + np.arange(3), ow + 2 * np.arange(2)
                patch = xp[n][:, rows][:, :, cols]  # (C, KH, KW): the input this position multiplied W with
                by_position += dy[n, :, oh, ow][:, None, None, None] * patch[None]
    np.testing.assert_allclose(ops.get("conv2d").vjp(attrs, [x, w], out, dy, 1), by_position, rtol=1e-12)


def _quadratic() -> tuple[Graph, float]:
    """f(w) = (w − 3)², as IR nodes: d = w + c (c = −3, an input), f = d·d. Its optimum is w = 3."""
    nodes = (Node("d", "add", ("w", "c"), ops.NoAttrs()), Node("f", "mul", ("d", "d"), ops.NoAttrs()))
    graph = Graph({"c": TensorType((1,), "float64")}, nodes, ("f",), {"w": TensorType((1,), "float64")}, "quad")
    return graph, 3.0


def _descend(lr: float, steps: int) -> list[float]:
    graph, _ = _quadratic()
    result = backward(graph, "f", ["w"])
    optimizer = SGD(lr=lr, momentum=0.0, weight_decay=0.0)
    params, state, path = {"w": np.zeros(1)}, optimizer.init_state({"w": np.zeros(1)}), [0.0]
    for _ in range(steps):
        _, grad = interpreter.run(result.graph, params, {"c": np.array([-3.0])})
        params, state = optimizer.update(params, {"w": grad}, state)
        path.append(float(params["w"][0]))
    return path


def test_gradient_descent_on_a_quadratic_converges_to_its_optimum():
    path = _descend(lr=0.1, steps=100)
    assert path[-1] == pytest.approx(3.0, abs=1e-8)
    # f' = 2(w − 3), so each step multiplies the distance to the optimum by |1 − 2·lr| = 0.8
    errors = [3.0 - w for w in path]
    np.testing.assert_allclose(errors[1:20], 0.8 * np.array(errors[:19]), rtol=1e-12)


def test_too_large_a_step_diverges_and_the_critical_one_oscillates():
    assert abs(_descend(lr=1.1, steps=30)[-1] - 3.0) > 100  # |1 − 2·1.1| = 1.2 > 1
    assert _descend(lr=1.0, steps=5) == [0.0, 6.0, 0.0, 6.0, 0.0, 6.0]  # |1 − 2·1| = 1: w bounces across 3
    assert _descend(lr=0.5, steps=1) == [0.0, 3.0]  # 1 − 2·0.5 = 0: Newton's step for a quadratic, one step
