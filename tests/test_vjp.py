"""Every op's vector–Jacobian product (ir/ops/<op>.py ``vjp``) against torch.autograd in float64, on the
conformance corpus' single-node cases (every attribute: stride, padding, dilation, groups, ceil_mode,
count_include_pad …; dimensions distinct, N=2, C=3, H=7, W=5) and the train-step ops' corpus, computed the way a
train step computes it — through a ``vjp`` node that reads only what the op's ``saves`` names (the rest are NaN
placeholders, so an undeclared read fails here) — plus central finite differences on a few small cases."""

from __future__ import annotations

import numpy as np
import pytest

from convbench.ir import ops
from convbench.ir.graph import TensorType
from convbench.ir.ops._base import OUT
from convbench.ir.ops._pool import PoolAttrs
from convbench.ir.ops.batch_norm_train import BatchNormTrainAttrs
from convbench.ir.ops.conv2d import Conv2dAttrs
from convbench.ir.ops.fused_conv2d import FusedConv2dAttrs
from convbench.ir.ops.lrn import LrnAttrs
from convbench.ir.ops.softmax_cross_entropy import CrossEntropyAttrs
from convbench.ir.ops.vjp import VjpAttrs
from convbench.testing import op_cases, run_case
from convbench.testing.train_corpus import train_cases

torch = pytest.importorskip("torch")
from _torch_ops import RULES, t64  # noqa: E402  (needs torch)

# The registered ops without a VJP, each with its reason: the declared gaps of training.
NO_VJP = {
    "running_stat": "a buffer update off the loss's path: nothing differentiates it",
    "vjp": "second order: a train step never differentiates a gradient",
    "quantize_linear": "rounding has zero gradient almost everywhere; a quantized graph is inference only",
    "dequantize_linear": "a quantized graph is inference only (no straight-through estimator)",
}

ALL = op_cases() + train_cases()
CASES = [c for c in ALL if len(c.graph.nodes) == 1 and ops.get(c.graph.nodes[0].op).vjp is not None]


def test_ops_without_a_vjp_are_the_declared_gaps():
    assert {n for n in ops.names() if ops.get(n).vjp is None} == set(NO_VJP)
    for name in ops.names():
        op = ops.get(name)
        if op.vjp is not None:
            assert op.backward_flop_rule.strip(), name


def test_every_op_with_a_vjp_has_torch_cases():
    assert {c.graph.nodes[0].op for c in CASES} == {n for n in ops.names() if ops.get(n).vjp is not None}


def through_vjp_node(node, values: list[np.ndarray], out: np.ndarray, dy: np.ndarray, k: int) -> np.ndarray:
    """Input k's gradient as a train step computes it: a vjp node fed dy and exactly the values ``saves`` names."""
    op = ops.get(node.op)
    saved = op.saves(node.attrs, k, len(values))
    assert all(s == OUT or 0 <= s < len(values) for s in saved), saved
    attrs = VjpAttrs(node.op, node.attrs, k, saved, (*(v.shape for v in values), out.shape))
    args = [dy, *(out if s == OUT else values[s] for s in saved)]
    inferred = ops.get("vjp").infer(attrs, [TensorType(a.shape, "int64" if a.dtype.kind == "i" else "float64")
                                            for a in args])
    got = ops.get("vjp").reference(attrs, *args)
    assert got.shape == inferred.shape == values[k].shape
    return got


def _arrays(case) -> list[np.ndarray]:
    (node,) = case.graph.nodes
    raw = [case.params[i] if i in case.params else case.inputs[i] for i in node.inputs]
    return [a if a.dtype.kind == "i" else a.astype(np.float64) for a in raw]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_vjp_matches_torch_autograd(case):
    (node,) = case.graph.nodes
    op, types = ops.get(node.op), case.graph.types
    arrays = _arrays(case)
    diff = [k for k, i in enumerate(node.inputs) if op.differentiable(k, types[i])]
    tensors = [t64(a, grad=k in diff) for k, a in enumerate(arrays)]
    y = RULES[node.op](node.attrs, *tensors)
    out = op.reference(node.attrs, *arrays)
    np.testing.assert_allclose(out, y.detach().numpy(), rtol=1e-10, atol=1e-12)
    dy = np.random.default_rng(7).standard_normal(out.shape)
    grads = torch.autograd.grad(y, [tensors[k] for k in diff], t64(dy), allow_unused=True)
    for k, g in zip(diff, grads, strict=True):
        want = np.zeros(arrays[k].shape) if g is None else g.numpy()
        got = through_vjp_node(node, arrays, out, dy, k)
        scale = max(1.0, float(np.abs(want).max()))
        rtol = 1e-7 if _uses_hardsigmoid(node) else 1e-9
        np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-11 * scale, err_msg=f"{case.id}: input {k}")


def _uses_hardsigmoid(node) -> bool:
    """torch's hardsigmoid_backward multiplies by the float32 constant 1.0f/6.0f even in float64 (a relative
    3e-8 off 1/6, checked below); the IR's VJP uses 1/6 itself."""
    return node.op == "hardsigmoid" or getattr(node.attrs, "activation", None) == "hardsigmoid"


def test_torch_s_hardsigmoid_gradient_is_one_sixth_in_float32():
    x = t64(np.array([0.5]), grad=True)
    torch.nn.functional.hardsigmoid(x).backward()
    assert x.grad.item() == float(np.float32(1) / np.float32(6)) != 1 / 6
    got = ops.get("hardsigmoid").vjp(ops.NoAttrs(), [np.array([0.5])], None, np.ones(1), 0)
    assert got[0] == 1 / 6


def test_max_pool_ties_send_the_gradient_to_the_first_maximum_as_torch():
    x = np.random.default_rng(3).integers(0, 3, (2, 3, 7, 5)).astype(np.float64)  # many equal values per window
    for attrs in (PoolAttrs(3, 2, 1, 1, True), PoolAttrs(2, 1), PoolAttrs(3, 1, 1, (2, 1))):
        xt = t64(x, grad=True)
        y = RULES["max_pool2d"](attrs, xt)
        dy = np.random.default_rng(4).standard_normal(tuple(y.shape))
        (want,) = torch.autograd.grad(y, [xt], t64(dy))
        node = type("N", (), {"op": "max_pool2d", "attrs": attrs})
        got = through_vjp_node(node, [x], ops.get("max_pool2d").reference(attrs, x), dy, 0)
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-12, atol=1e-12)


def test_an_undeclared_read_is_nan_so_a_wrong_saves_cannot_pass():
    attrs = Conv2dAttrs(1, 1)
    x, w = np.ones((2, 3, 7, 5)), np.ones((4, 3, 3, 3))
    dy = np.ones((2, 4, 7, 5))
    lying = VjpAttrs("conv2d", attrs, 1, (), ((2, 3, 7, 5), (4, 3, 3, 3), (2, 4, 7, 5)))  # "reads nothing"
    assert np.isnan(ops.get("vjp").reference(lying, dy)).all()
    honest = VjpAttrs("conv2d", attrs, 1, (0,), lying.shapes)
    assert np.isfinite(ops.get("vjp").reference(honest, dy, x)).all()
    assert ops.get("conv2d").vjp(attrs, [x, w], None, dy, 1).shape == w.shape


@pytest.mark.parametrize("case", train_cases(), ids=lambda c: c.id)
def test_train_ops_run_on_the_numpy_backend_in_float32(case):
    assert run_case("numpy", case).status == "pass"


def test_running_stat_is_torch_s_momentum_update():
    rng = np.random.default_rng(5)
    x, mean, var = rng.standard_normal((2, 3, 7, 5)), rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    rm, rv = t64(mean), t64(var)
    torch.nn.functional.batch_norm(t64(x), rm, rv, None, None, training=True, momentum=0.3)
    from convbench.ir.ops.running_stat import RunningStatAttrs

    got_mean = ops.get("running_stat").reference(RunningStatAttrs("mean", 0.3), x, mean)
    got_var = ops.get("running_stat").reference(RunningStatAttrs("var", 0.3), x, var)
    np.testing.assert_allclose(got_mean, rm.numpy(), rtol=1e-12)
    np.testing.assert_allclose(got_var, rv.numpy(), rtol=1e-12)


def test_dropout_train_keeps_a_seeded_fraction_scaled_by_one_over_one_minus_p():
    from convbench.ir.ops.dropout_train import DropoutTrainAttrs

    x = np.ones((50, 40))
    y = ops.get("dropout_train").reference(DropoutTrainAttrs(0.3, 11), x)
    assert set(np.unique(y)) == {0.0, 1 / 0.7}
    assert abs((y == 0).mean() - 0.3) < 0.03
    np.testing.assert_array_equal(y, ops.get("dropout_train").reference(DropoutTrainAttrs(0.3, 11), x))
    assert not np.array_equal(y, ops.get("dropout_train").reference(DropoutTrainAttrs(0.3, 12), x))


# -- finite differences ------------------------------------------------------------------------------------------

FD = [
    ("conv2d", Conv2dAttrs(2, 1, 2, 3), [(2, 6, 9, 10), (9, 2, 3, 4), (9,)]),
    ("max_pool2d", PoolAttrs(3, 2, 1, (1, 2), True), [(2, 3, 7, 9)]),
    ("avg_pool2d", PoolAttrs(3, 2, 1, 1, True, False), [(2, 3, 7, 5)]),
    ("batch_norm_train", BatchNormTrainAttrs(), [(2, 3, 7, 5), (3,), (3,)]),
    ("lrn", LrnAttrs(4, 1e-2, 0.75, 1.0), [(2, 6, 3, 5)]),
    ("fused_conv2d", FusedConv2dAttrs(padding=1, residual=True, activation="silu"),
     [(2, 3, 7, 5), (4, 3, 3, 3), (4,), (2, 4, 7, 5)]),
]


@pytest.mark.parametrize("op, attrs, shapes", FD, ids=[f[0] for f in FD])
def test_vjp_matches_central_finite_differences(op, attrs, shapes):
    rng = np.random.default_rng(11)
    values = [rng.standard_normal(s) for s in shapes]
    opdef = ops.get(op)
    out = opdef.reference(attrs, *values)
    dy = rng.standard_normal(out.shape)
    eps = 1e-6
    for k in range(len(values)):
        v = rng.standard_normal(shapes[k])
        plus = [a + eps * v if i == k else a for i, a in enumerate(values)]
        minus = [a - eps * v if i == k else a for i, a in enumerate(values)]
        numeric = ((opdef.reference(attrs, *plus) - opdef.reference(attrs, *minus)) * dy).sum() / (2 * eps)
        analytic = (opdef.vjp(attrs, values, out, dy, k) * v).sum()
        assert analytic == pytest.approx(numeric, rel=1e-6, abs=1e-8), (op, k)


def test_cross_entropy_vjp_matches_finite_differences():
    rng = np.random.default_rng(2)
    logits, labels = rng.standard_normal((4, 6)) * 3, np.array([0, 5, 2, 2])
    op, attrs = ops.get("softmax_cross_entropy"), CrossEntropyAttrs(0.1)
    v, eps = rng.standard_normal(logits.shape), 1e-6
    numeric = (op.reference(attrs, logits + eps * v, labels) - op.reference(attrs, logits - eps * v, labels)) / eps / 2
    analytic = (op.vjp(attrs, [logits, labels], None, np.ones(()), 0) * v).sum()
    assert analytic == pytest.approx(float(numeric), rel=1e-7)
