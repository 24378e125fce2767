"""Every op's NumPy reference against torch.nn.functional, in float64, on shapes whose dimensions all differ."""

from __future__ import annotations

import numpy as np
import pytest

from convbench.ir import ops
from convbench.ir.graph import TensorType
from convbench.ir.ops._pool import PoolAttrs
from convbench.ir.ops.adaptive_avg_pool2d import AdaptivePoolAttrs
from convbench.ir.ops.batch_norm import BatchNormAttrs
from convbench.ir.ops.clip import ClipAttrs
from convbench.ir.ops.concat import ConcatAttrs
from convbench.ir.ops.conv2d import Conv2dAttrs
from convbench.ir.ops.elu import EluAttrs
from convbench.ir.ops.flatten import FlattenAttrs
from convbench.ir.ops.leaky_relu import LeakyReluAttrs
from convbench.ir.ops.lrn import LrnAttrs
from convbench.ir.ops.pad import PadAttrs
from convbench.ir.ops.reshape import ReshapeAttrs
from convbench.ir.ops.softmax import SoftmaxAttrs

torch = pytest.importorskip("torch")
F = torch.nn.functional
RNG = np.random.default_rng(1234)


def rand(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape)


def t(a: np.ndarray):
    return torch.from_numpy(a)


def check(op: str, attrs, *arrays: np.ndarray, expected) -> None:
    """Reference output equals torch's, and the op's shape rule predicts its shape."""
    opdef = ops.get(op)
    got = opdef.reference(attrs, *arrays)
    want = expected.numpy()
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    inferred = opdef.infer(attrs, [TensorType(a.shape, "float64") for a in arrays])
    assert inferred.shape == want.shape


CONV_CASES = [
    # (N, C, H, W), (O, KH, KW), stride, padding, dilation, groups, bias
    ((2, 3, 7, 5), (4, 3, 2), 1, 0, 1, 1, True),
    ((2, 3, 9, 8), (5, 3, 3), 2, 1, 1, 1, False),
    ((2, 6, 11, 9), (4, 3, 2), (2, 3), (1, 0), (2, 1), 2, True),
    ((3, 4, 10, 7), (4, 3, 3), 1, 1, 1, 4, True),  # depthwise
    ((2, 6, 8, 5), (9, 1, 1), 2, 0, 1, 3, True),  # 1×1 strided, grouped
    ((2, 3, 5, 4), (7, 5, 4), 1, 0, 1, 1, True),  # kernel = input size → 1×1 output
    ((2, 3, 9, 7), (4, 2, 2), 3, 0, 1, 1, True),  # stride > kernel
    ((1, 2, 13, 12), (3, 11, 11), 4, 2, 1, 1, True),  # AlexNet-style
]


@pytest.mark.parametrize("xs, wk, stride, padding, dilation, groups, bias", CONV_CASES)
def test_conv2d(xs, wk, stride, padding, dilation, groups, bias):
    o, kh, kw = wk
    x, w = rand(*xs), rand(o, xs[1] // groups, kh, kw)
    b = rand(o) if bias else None
    attrs = Conv2dAttrs(stride, padding, dilation, groups)
    args = (x, w) + ((b,) if bias else ())
    want = F.conv2d(t(x), t(w), None if b is None else t(b), stride, padding, dilation, groups)
    check("conv2d", attrs, *args, expected=want)


POOL_CASES = [
    # shape, kernel, stride, padding, dilation, ceil_mode
    ((2, 3, 7, 5), 2, 2, 0, 1, False),
    ((2, 3, 7, 5), 2, 2, 0, 1, True),  # remainders on both axes
    ((2, 3, 9, 6), 3, 2, 1, 1, True),
    ((2, 3, 11, 8), (3, 2), (2, 1), (1, 0), 1, False),
    ((2, 4, 13, 10), 3, 2, 1, 1, True),
    ((2, 3, 5, 4), (5, 4), 1, 0, 1, False),  # kernel = input size
    ((2, 3, 10, 9), 2, 3, 0, 1, True),  # stride > kernel
]


@pytest.mark.parametrize("shape, k, s, p, d, ceil", POOL_CASES)
def test_max_pool2d(shape, k, s, p, d, ceil):
    x = rand(*shape)
    check("max_pool2d", PoolAttrs(k, s, p, d, ceil), x,
          expected=F.max_pool2d(t(x), k, s, p, d, ceil_mode=ceil))


def test_max_pool2d_dilation():
    x = rand(2, 3, 11, 9)
    check("max_pool2d", PoolAttrs(3, 2, 1, 2, True), x, expected=F.max_pool2d(t(x), 3, 2, 1, 2, ceil_mode=True))


@pytest.mark.parametrize("include_pad", [True, False])
@pytest.mark.parametrize("shape, k, s, p, d, ceil", POOL_CASES)
def test_avg_pool2d(shape, k, s, p, d, ceil, include_pad):
    x = rand(*shape)
    check("avg_pool2d", PoolAttrs(k, s, p, 1, ceil, include_pad), x,
          expected=F.avg_pool2d(t(x), k, s, p, ceil_mode=ceil, count_include_pad=include_pad))


@pytest.mark.parametrize("shape, out", [((2, 3, 7, 5), (3, 2)), ((2, 3, 8, 6), (4, 3)), ((2, 3, 5, 4), 1),
                                        ((2, 3, 1, 1), (6, 6)), ((2, 3, 9, 7), (7, 7))])
def test_adaptive_avg_pool2d(shape, out):
    x = rand(*shape)
    check("adaptive_avg_pool2d", AdaptivePoolAttrs(out), x, expected=F.adaptive_avg_pool2d(t(x), out))


@pytest.mark.parametrize("xshape", [(2, 5), (3, 2, 5)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear(xshape, bias):
    x, w = rand(*xshape), rand(7, 5)
    b = rand(7) if bias else None
    check("linear", ops.NoAttrs(), x, w, *((b,) if bias else ()),
          expected=F.linear(t(x), t(w), None if b is None else t(b)))


ACTIVATIONS = [
    ("relu", ops.NoAttrs(), lambda x: F.relu(x)),
    ("leaky_relu", LeakyReluAttrs(0.2), lambda x: F.leaky_relu(x, 0.2)),
    ("sigmoid", ops.NoAttrs(), torch.sigmoid),
    ("tanh", ops.NoAttrs(), torch.tanh),
    ("elu", EluAttrs(0.7), lambda x: F.elu(x, 0.7)),
    ("dropout", ops.get("dropout").attrs_type(0.3), lambda x: x),
    ("hardswish", ops.NoAttrs(), F.hardswish),
    ("hardsigmoid", ops.NoAttrs(), F.hardsigmoid),
    ("silu", ops.NoAttrs(), F.silu),
    ("clip", ClipAttrs(-1.5, 2.0), lambda x: torch.clamp(x, -1.5, 2.0)),
]


@pytest.mark.parametrize("op, attrs, fn", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_elementwise(op, attrs, fn):
    x = rand(2, 3, 7, 5) * 4
    x[0, 0, 0, :3] = [0.0, 40.0, -40.0]  # the branch points and saturation
    x[0, 1, 0, :4] = [3.0, -3.0, 1.5, 2.0]  # hardswish/hardsigmoid's corners, clip's bounds
    check(op, attrs, x, expected=fn(t(x)))


@pytest.mark.parametrize("lo, hi", [(None, 0.5), (-0.5, None), (1.0, -1.0)])
def test_clip_one_bound_and_min_above_max(lo, hi):
    x = rand(3, 10) * 2
    check("clip", ClipAttrs(lo, hi), x, expected=torch.clamp(t(x), lo, hi))


@pytest.mark.parametrize("pads", [(1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1), (0, 0, 1, 1), (1, 2, 3, 4),
                                  (0, 0, 0, 0)])
@pytest.mark.parametrize("value", [0.0, -1.25])
def test_pad(pads, value):
    x = rand(2, 3, 7, 5)
    top, left, bottom, right = pads
    check("pad", PadAttrs(pads, value), x, expected=F.pad(t(x), (left, right, top, bottom), value=value))


def test_mul_same_shape_and_channel_gate():
    x, y, gate = rand(2, 3, 7, 5), rand(2, 3, 7, 5), rand(2, 3, 1, 1)
    check("mul", ops.NoAttrs(), x, y, expected=torch.mul(t(x), t(y)))
    check("mul", ops.NoAttrs(), x, gate, expected=torch.mul(t(x), t(gate)))
    a, b = rand(3, 10), rand(3, 10)
    check("mul", ops.NoAttrs(), a, b, expected=torch.mul(t(a), t(b)))


@pytest.mark.parametrize("y", [(2, 3, 1, 5), (1, 3, 1, 1), (5,), (2, 3, 7, 1)])
def test_mul_refuses_every_other_broadcast(y):
    from convbench.ir.errors import ShapeError

    with pytest.raises(ShapeError, match=r"broadcasts only \(N, C, 1, 1\)"):
        ops.get("mul").infer(ops.NoAttrs(), [TensorType((2, 3, 7, 5)), TensorType(y)])


def test_reshape():
    x = rand(2, 3, 7, 5)
    for shape in [(2, 15, 7), (6, 35), (210,), (1, 2, 105)]:
        check("reshape", ReshapeAttrs(shape), x, expected=torch.reshape(t(x), shape))


@pytest.mark.parametrize("bad", [(1, 2, 3), (1, -1, 0, 0), (1.5, 0, 0, 0), (True, 0, 0, 0)])
def test_pad_attrs_are_validated(bad):
    from convbench.ir.errors import IRError

    with pytest.raises(IRError, match="pad: pads must be"):
        PadAttrs(bad)


@pytest.mark.parametrize("axis", [1, -1, 0])
def test_softmax(axis):
    x = rand(2, 7, 5) * 10
    check("softmax", SoftmaxAttrs(axis), x, expected=F.softmax(t(x), dim=axis))


def test_batch_norm():
    x = rand(2, 3, 7, 5)
    w, b, mean = rand(3), rand(3), rand(3)
    var = RNG.uniform(0.5, 2.0, 3)
    check("batch_norm", BatchNormAttrs(1e-3), x, w, b, mean, var,
          expected=F.batch_norm(t(x), t(mean), t(var), t(w), t(b), False, 0.0, 1e-3))


@pytest.mark.parametrize("size, alpha, beta, k", [(5, 1e-4, 0.75, 2.0), (3, 0.5, 0.9, 1.0), (4, 2.0, 0.5, 1.5)])
def test_lrn(size, alpha, beta, k):
    x = rand(3, 7, 5, 4) * 3  # batch ≠ channels; a large alpha makes the window sum matter
    check("lrn", LrnAttrs(size, alpha, beta, k), x,
          expected=F.local_response_norm(t(x), size, alpha, beta, k))


def test_add_and_concat():
    a, b, c = rand(2, 3, 7, 5), rand(2, 3, 7, 5), rand(2, 4, 7, 5)
    check("add", ops.NoAttrs(), a, b, expected=t(a) + t(b))
    check("add", ops.NoAttrs(), a, b, a, expected=t(a) + t(b) + t(a))
    check("concat", ConcatAttrs(1), a, c, expected=torch.cat([t(a), t(c)], 1))


def test_flatten():
    x = rand(2, 3, 7, 5)
    check("flatten", FlattenAttrs(1), x, expected=torch.flatten(t(x), 1))
    check("flatten", FlattenAttrs(2), x, expected=torch.flatten(t(x), 2))


def test_every_registered_op_is_covered_here():
    covered = {"conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "linear", "softmax", "batch_norm",
               "lrn", "add", "concat", "flatten", "pad", "mul", "reshape", *(a[0] for a in ACTIVATIONS)}
    foundation = {"conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "linear", "relu", "leaky_relu",
                  "sigmoid", "tanh", "elu", "softmax", "batch_norm", "lrn", "add", "concat", "flatten", "dropout"}
    mobile = {"pad", "mul", "hardswish", "hardsigmoid", "silu", "clip", "reshape"}
    assert foundation | mobile <= set(ops.names())
    assert foundation | mobile <= covered


def test_every_op_states_a_flop_rule():
    for name in ops.names():
        assert ops.get(name).flop_rule.strip(), name


@pytest.mark.parametrize("size, k, s, p", [(2, 3, 2, 0), (3, 5, 2, 1), (1, 3, 3, 1)])
def test_ceil_mode_window_wider_than_input(size, k, s, p):
    """torch lets a ceil_mode window overhang an input narrower than the kernel (SqueezeNet at small sizes)."""
    x = rand(2, 3, size, size + 1)
    check("max_pool2d", PoolAttrs(k, s, p, 1, True), x, expected=F.max_pool2d(t(x), k, s, p, ceil_mode=True))
    check("avg_pool2d", PoolAttrs(k, s, p, 1, True), x, expected=F.avg_pool2d(t(x), k, s, p, ceil_mode=True))


def test_window_wider_than_input_without_ceil_mode_is_an_error():
    from convbench.ir.errors import ShapeError

    with pytest.raises(ShapeError, match="larger than the padded input 2"):
        ops.get("max_pool2d").infer(PoolAttrs(3, 2), [TensorType((2, 3, 2, 4))])
