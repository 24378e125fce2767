"""Importing ONNX written by someone else: torch.onnx.export of modules written here, hand-built graphs for the
patterns the importer recognises, and one error that lists every node it cannot import."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

import convbench as cb
from convbench.backends.correctness import compare

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from torch import nn  # noqa: E402

from convbench.ir.onnx_import import OnnxImportError, from_onnx  # noqa: E402

NUMPY = cb.backends.get("numpy")


def torch_export(module: nn.Module, x: torch.Tensor, **kw) -> onnx.ModelProto:
    """torch 2.13's default exporter (dynamo) needs onnxscript, which is not installed; the TorchScript-based one
    is still there behind dynamo=False (it warns that it is deprecated)."""
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module.eval(), (x,), f, dynamo=False, input_names=["x"], **kw)
    return onnx.load_from_string(f.getvalue())


class SmallNet(nn.Module):
    """Most of what the importer maps, as torch writes it: BN folded into a bias-free conv, ReLU6 as Clip,
    depthwise conv + LeakyReLU with a residual, concat, ceil_mode max pool, count_include_pad=False average pool,
    ELU, global pool + flatten + Linear, view(N, -1) as Reshape, Softmax."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(6)
        self.dw = nn.Conv2d(6, 6, 3, padding=(1, 2), dilation=(1, 2), groups=6)
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.avg = nn.AvgPool2d(3, 1, padding=1, count_include_pad=False)
        self.head = nn.Linear(12, 5)
        self.fc = nn.Linear(12 * 3 * 2, 5)

    def forward(self, x):
        y = nn.functional.relu6(self.bn(self.stem(x)))
        y = y + nn.functional.leaky_relu(self.dw(y), 0.1)
        y = self.avg(self.pool(torch.cat([y, torch.sigmoid(y)], 1)))
        z = torch.tanh(self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1)))
        y = nn.functional.elu(y, 0.5).view(y.size(0), -1)
        return torch.softmax(self.fc(y) + z, 1)


def randomise_bn(module: nn.Module) -> None:
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)


def check_against_torch(module: nn.Module, shape: tuple[int, ...], **export_kw) -> cb.Graph:
    torch.manual_seed(0)
    randomise_bn(module)
    x = torch.randn(*shape)
    graph, params = from_onnx(torch_export(module, x, **export_kw))
    with torch.no_grad():
        want = module.double()(x.double()).numpy()
    got = NUMPY.compile(graph, params, dtype="float64")(x.numpy())
    agreement = compare(got, want, "float32")  # torch folded BN into the conv weights in float32
    assert agreement.ok, agreement.reason
    return graph


def test_torch_exported_module_imports_and_matches_torch():
    g = check_against_torch(SmallNet(), (2, 3, 13, 9))
    ops = [n.op for n in g.nodes]
    assert {"relu6", "leaky_relu", "concat", "max_pool2d", "avg_pool2d", "elu", "flatten", "softmax"} <= set(ops)
    assert "batch_norm" not in ops  # folded by torch's exporter
    assert sum(op == "linear" for op in ops) == 2


@pytest.mark.parametrize("name", ["mobilenet_v2", "squeezenet1_0"])
def test_torch_exported_torchvision_architectures_import_and_match(name):
    from _torchvision_layout import MODULES

    check_against_torch(MODULES[name](num_classes=10), (2, 3, 35, 33))


def test_dynamic_batch_needs_input_shapes_and_then_folds_the_shape_arithmetic():
    torch.manual_seed(1)
    model = torch_export(SmallNet(), torch.randn(2, 3, 13, 9), dynamic_axes={"x": {0: "batch"}})
    with pytest.raises(cb.ir.IRError, match=r"input 'x' has shape \['batch', 3, 13, 9\].*input_shapes"):
        from_onnx(model)
    g, _ = from_onnx(model, input_shapes={"x": (4, 3, 13, 9)})  # Shape → Gather → … → Reshape folds to a flatten
    assert g.types[g.outputs[0]].shape == (4, 5)


# -- hand-built graphs ---------------------------------------------------------------------------------------------
def build(nodes, inputs, outputs, initializers=(), opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "hand", inputs, outputs,
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in initializers])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def tensor(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


RNG = np.random.default_rng(7)
W = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)


def test_every_unsupported_node_is_listed_in_one_error():
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Pad", ["c", "pads"], ["p"], name="pad", mode="reflect"),  # the IR's pad is constant
        helper.make_node("Relu", ["p"], ["r"], name="relu_after_pad"),  # fine, but its input is lost: not listed
        helper.make_node("Erf", ["r"], ["e"], name="erf_after_pad"),  # no IR op: listed although its input is lost
        helper.make_node("LRN", ["c"], ["l"], name="even_lrn", size=4),
        # asymmetric padding the divisor must not count: no pad node can carry it
        helper.make_node("AveragePool", ["c"], ["a"], name="asym", kernel_shape=[2, 2], pads=[0, 1, 1, 0]),
        helper.make_node("Slice", ["c", "starts", "ends", "axes"], ["s"], name="slice"),  # on an activation
        helper.make_node("FusedConv", ["c", "w2"], ["f"], name="ms", domain="com.microsoft"),
        helper.make_node("Sum", ["e", "l", "a", "s", "f"], ["y"], name="sum"),
    ]
    w2 = RNG.standard_normal((4, 4, 1, 1)).astype(np.float32)
    model = build(nodes, [tensor("x", [2, 3, 7, 5])], [tensor("y", None)],
                  [("w", W), ("w2", w2), ("pads", np.zeros(8, np.int64)), ("starts", np.array([0])),
                   ("ends", np.array([2])), ("axes", np.array([1]))])
    with pytest.raises(OnnxImportError) as e:
        from_onnx(model)
    assert [name for name, _, _ in e.value.problems] == ["pad", "erf_after_pad", "even_lrn", "asym", "slice", "ms"]
    text = str(e.value)
    assert "6 node(s) cannot be imported" in text
    assert "'even_lrn' (LRN): LRN of even size 4" in text and "pads [0, 1, 1, 0] with count_include_pad=0" in text
    assert "'pad' (Pad): mode=reflect" in text
    assert "'slice' (Slice): only supported on constants" in text and "com.microsoft.FusedConv" in text


def run(model: onnx.ModelProto, x: np.ndarray):
    g, p = from_onnx(model)
    return g, NUMPY.compile(g, p, dtype="float64")(x)


def test_matmul_plus_add_is_a_linear_with_bias():
    w, b = RNG.standard_normal((7, 5)).astype(np.float32), RNG.standard_normal(5).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])]
    x = RNG.standard_normal((3, 7)).astype(np.float32)
    g, y = run(build(nodes, [tensor("x", [3, 7])], [tensor("y", None)], [("w", w), ("b", b)]), x)
    assert [(n.name, n.op, n.inputs) for n in g.nodes] == [("y", "linear", ("x", "w", "b"))]
    np.testing.assert_allclose(y, x.astype(np.float64) @ w + b, rtol=1e-6)


def test_gemm_without_transb_and_with_alpha_beta():
    w, c = RNG.standard_normal((6, 4)).astype(np.float32), RNG.standard_normal((1, 4)).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["x", "w", "c"], ["y"], alpha=0.5, beta=2.0)]
    x = RNG.standard_normal((2, 6)).astype(np.float32)
    _, y = run(build(nodes, [tensor("x", [2, 6])], [tensor("y", None)], [("w", w), ("c", c)]), x)
    np.testing.assert_allclose(y, 0.5 * x.astype(np.float64) @ w + 2 * c, rtol=1e-6)


def test_clip_identity_sum_and_opset_10_clip_attributes():
    nodes = [helper.make_node("Clip", ["x"], ["r"], min=0.0), helper.make_node("Identity", ["r"], ["i"]),
             helper.make_node("Clip", ["x"], ["r6"], min=0.0, max=6.0),
             helper.make_node("Sum", ["i", "r6", "x"], ["y"])]
    x = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32) * 8
    g, y = run(build(nodes, [tensor("x", [2, 3, 4, 5])], [tensor("y", None)], opset=10), x)
    assert [n.op for n in g.nodes] == ["relu", "relu6", "add"]
    np.testing.assert_allclose(y, np.maximum(x, 0) + np.clip(x, 0, 6) + x, rtol=1e-6)


def test_opset_11_softmax_is_taken_on_the_last_axis_only():
    two_d = build([helper.make_node("Softmax", ["x"], ["y"], axis=1)], [tensor("x", [3, 4])], [tensor("y", None)], [],
                  opset=11)
    assert from_onnx(two_d)[0].nodes[0].op == "softmax"
    four_d = build([helper.make_node("Softmax", ["x"], ["y"], axis=1)], [tensor("x", [2, 3, 4, 5])],
                   [tensor("y", None)], [], opset=11)
    with pytest.raises(OnnxImportError, match="Softmax over axes 1…"):
        from_onnx(four_d)


def test_same_upper_auto_pad_becomes_symmetric_padding():
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER")]
    x = RNG.standard_normal((2, 3, 7, 5)).astype(np.float32)
    g, y = run(build(nodes, [tensor("x", [2, 3, 7, 5])], [tensor("y", None)], [("w", W)]), x)
    assert g.nodes[0].attrs.padding == (1, 1) and y.shape == (2, 4, 7, 5)


def test_refusals_name_their_reason():
    cases = {
        "HardSigmoid(alpha=0.2, beta=0.5): the IR's hardsigmoid is torch's": helper.make_node("HardSigmoid", ["x"],
                                                                                               ["y"]),
        "mode=edge: the IR's pad fills with a constant": helper.make_node("Pad", ["x", "pads"], ["y"], mode="edge"),
        "Mul: constant 'k' of shape (3, 1) does not broadcast onto (2, 3, 4, 5)": helper.make_node("Mul", ["x", "k"],
                                                                                                    ["y"]),
        "training mode": helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], training_mode=1),
    }
    consts = [("pads", np.array([0, 0, 1, 0, 0, 0, 0, 1], np.int64)), ("k", np.ones((3, 1), np.float32)),
              *[(k, np.ones(3, np.float32)) for k in "sbmv"]]
    for reason, node in cases.items():
        used = [(k, v) for k, v in consts if k in node.input]
        with pytest.raises(OnnxImportError, match=reason.replace("(", r"\(").replace(")", r"\)")):
            from_onnx(build([node], [tensor("x", [2, 3, 4, 5])], [tensor("y", None)], used))


def test_what_real_exports_contain_imports_exactly():
    """Flatten at any axis and a Reshape that is no flatten (reshape), Clip with any bounds (clip), Gemm with a
    scalar or a matrix C, Add of a scalar, Mul of a per-channel constant (expanded to the (N, C, 1, 1) gate),
    Sigmoid·x (silu), HardSwish and torch's HardSigmoid: each against NumPy on the same float32 values."""
    x = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32) * 3
    xd = x.astype(np.float64)
    k = RNG.standard_normal((3, 1, 1)).astype(np.float32)
    sig = 1 / (1 + np.exp(-xd))
    cases = [  # (nodes, constants, IR ops, expected)
        ([helper.make_node("Flatten", ["x"], ["y"], axis=2)], [], ["reshape"], xd.reshape(6, 20)),
        ([helper.make_node("Flatten", ["x"], ["y"], axis=0)], [], ["reshape"], xd.reshape(1, 120)),
        ([helper.make_node("Reshape", ["x", "shape"], ["y"])], [("shape", np.array([6, -1], np.int64))],
         ["reshape"], xd.reshape(6, 20)),
        ([helper.make_node("Clip", ["x", "lo", "hi"], ["y"])], [("lo", np.float32(-1)), ("hi", np.float32(0.5))],
         ["clip"], np.clip(xd, -1, 0.5)),
        ([helper.make_node("Clip", ["x", "", "hi"], ["y"])], [("hi", np.float32(2))], ["clip"], np.minimum(xd, 2)),
        ([helper.make_node("Add", ["x", "c"], ["y"])], [("c", np.float32(3))], ["add"], xd + 3),
        ([helper.make_node("Mul", ["k", "x"], ["y"])], [("k", k)], ["mul"], xd * k),
        ([helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["s", "x"], ["y"])], [], ["silu"],
         xd * sig),
        ([helper.make_node("HardSwish", ["x"], ["y"])], [], ["hardswish"], xd * np.clip(xd + 3, 0, 6) / 6),
        ([helper.make_node("HardSigmoid", ["x"], ["y"], alpha=1 / 6, beta=0.5)], [], ["hardsigmoid"],
         np.clip(xd + 3, 0, 6) / 6),
    ]
    for nodes, consts, ops, want in cases:
        g, y = run(build(nodes, [tensor("x", [2, 3, 4, 5])], [tensor("y", None)], consts), x)
        assert [n.op for n in g.nodes] == ops, [n.op for n in g.nodes]
        assert g.types[g.outputs[0]].shape == want.shape
        np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)
    m = RNG.standard_normal((2, 4)).astype(np.float32)
    w = RNG.standard_normal((20, 4)).astype(np.float32)
    a = RNG.standard_normal((2, 20)).astype(np.float32)
    for c, ops in ((np.float32(0.5), ["linear"]), (m, ["linear", "add"])):
        gemm = helper.make_node("Gemm", ["x", "w", "c"], ["y"], beta=2.0)
        g, y = run(build([gemm], [tensor("x", [2, 20])], [tensor("y", None)], [("w", w), ("c", c)]), a)
        assert [n.op for n in g.nodes] == ops
        np.testing.assert_allclose(y, a.astype(np.float64) @ w + 2 * c, rtol=1e-5, atol=1e-5)


def test_asymmetric_padding_becomes_a_pad_node_before_the_conv_or_pool():
    """TensorFlow's SAME at stride 2 pads the bottom/right one more: the symmetric part stays on the conv/pool,
    the rest is a pad node; a max pool's pad node fills with the lowest float32, so it never wins a window."""
    x = RNG.standard_normal((2, 3, 8, 6)).astype(np.float32) - 4  # all negative: a zero pad would win the max
    conv = helper.make_node("Conv", ["x", "w"], ["y"], strides=[2, 2], auto_pad="SAME_UPPER")
    g, y = run(build([conv], [tensor("x", [2, 3, 8, 6])], [tensor("y", None)], [("w", W)]), x)
    assert [(n.op, getattr(n.attrs, "pads", None)) for n in g.nodes] == [("pad", (0, 0, 1, 1)), ("conv2d", None)]
    assert g.nodes[1].attrs.padding == (0, 0) and y.shape == (2, 4, 4, 3)
    want = cb.ir.ops.get("conv2d").reference(cb.ir.ops.get("conv2d").attrs_type(2, 0),
                                              np.pad(x, ((0, 0), (0, 0), (0, 1), (0, 1))).astype(np.float64),
                                              W.astype(np.float64))
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)
    pool = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], pads=[0, 1, 2, 1])
    g, y = run(build([pool], [tensor("x", [2, 3, 8, 6])], [tensor("y", None)]), x)
    assert [n.op for n in g.nodes] == ["pad", "max_pool2d"] and g.nodes[1].attrs.padding == (0, 1)
    padded = np.pad(x, ((0, 0), (0, 0), (0, 2), (1, 1)), constant_values=-np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))
    np.testing.assert_array_equal(y, windows.max(axis=(-2, -1)))


def test_dilated_average_pool_is_a_depthwise_conv():
    pool = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[2, 2], pads=[1, 1, 1, 1],
                            count_include_pad=1)
    x = RNG.standard_normal((2, 3, 7, 5)).astype(np.float32)
    g, y = run(build([pool], [tensor("x", [2, 3, 7, 5])], [tensor("y", None)], opset=19), x)  # dilations: 19
    assert [n.op for n in g.nodes] == ["conv2d"] and g.nodes[0].attrs.groups == 3
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))[..., ::2, ::2]
    np.testing.assert_allclose(y, windows.mean(axis=(-2, -1)), rtol=1e-6)


class MobileBlock(nn.Module):
    """What torch writes for MobileNetV3 / EfficientNet: TF-SAME padding (F.pad), hardswish, a hardsigmoid
    squeeze-and-excitation gate (Mul of a broadcast activation), SiLU, clamp, a reshape that is no flatten."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.reduce, self.expand = nn.Conv2d(8, 4, 1), nn.Conv2d(4, 8, 1)

    def forward(self, x):
        y = nn.functional.hardswish(self.conv(nn.functional.pad(x, (0, 1, 0, 1))))
        y = nn.functional.silu(self.dw(y))
        pooled = nn.functional.adaptive_avg_pool2d(y, 1)  # as torchvision's SqueezeExcitation pools
        gate = nn.functional.hardsigmoid(self.expand(nn.functional.relu(self.reduce(pooled))))
        y = torch.clamp(y * gate, -0.5, 4.0)
        return y.reshape(y.shape[0], 4, -1)


def test_a_torch_export_of_the_mobile_ops_imports_and_agrees():
    graph = check_against_torch(MobileBlock(), (2, 3, 9, 8), opset_version=17)
    assert {"pad", "hardswish", "silu", "hardsigmoid", "mul", "clip", "reshape"} <= {n.op for n in graph.nodes}
