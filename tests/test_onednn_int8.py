"""The oneDNN backend's int8: a QDQ graph's convs, residual adds, max pools and pads run on the codes, and the result
is the QDQ graph's float64 arithmetic to float32 rounding (its integer sums are exact)."""

from __future__ import annotations

import numpy as np
import pytest
from test_precision_ops import _float_net, _quantized

from convbench.backends import get
from convbench.backends.base import BackendError, UnsupportedDtypeError
from convbench.backends.correctness import compare
from convbench.ir.builder import GraphBuilder
from convbench.ir.ops.quantize_linear import QuantAttrs
from convbench.models import init_params
from convbench.testing import backend_or_skip, conformance_params


@pytest.mark.parametrize("item", conformance_params("onednn", "ops", dtype="int8", threads=1))
def test_ops_int8(item):
    item.check()


@pytest.fixture(scope="module")
def onednn():
    return backend_or_skip("onednn")


def _steps(exe) -> list[tuple[str, str]]:
    return [(s.node, s.primitive.impl) for s in exe.artifact.steps]


def test_the_quantized_net_is_the_qdq_arithmetic_with_its_convs_on_the_codes(onednn):
    """conv → relu6 (read by the depthwise conv and the add: both share the codes the conv writes), a depthwise
    conv, a 1×1 conv, the residual add, pooling and a linear head."""
    qg, qp, x, ref = _quantized(_float_net(), seed=0, batches=3)
    exe = onednn.compile(qg, qp, dtype="int8", threads=1)
    agreement = compare(np.asarray(exe(x)), np.asarray(ref), exe.report.accuracy_dtype)
    assert exe.report.accuracy_dtype == "int8" and agreement.ok and agreement.max_rel < 1e-5, agreement
    assert exe.report.details.int8_convs == 3
    names = [node for node, _ in _steps(exe)]
    # c1 writes relu6's codes itself: no quantize_linear of it runs, and no dequantize feeds a conv
    assert not any(n.startswith("relu6_quantized") for n in names), names
    assert not any(n in names for n in ("input_dequantized", "relu6_dequantized", "relu6_1_dequantized")), names


def test_a_residual_add_relu_is_one_primitive_on_the_codes(onednn):
    """ResNet's block end: conv (stride 2, padding 1×2) + the downsampled identity, then ReLU, read by two convs:
    one binary add of the two codes writing the codes both convs read (no float sum, no dequantize, no relu)."""
    b = GraphBuilder("qres", (2, 3, 9, 7))
    x = b.relu(b.conv2d(b.input, 5, 3, name="stem", padding=1))
    y = b.conv2d(x, 6, 3, name="c", stride=2, padding=(1, 2))
    z = b.relu(b.add(y, b.conv2d(x, 6, 1, name="down", stride=2, padding=(0, 1)), name="sum"), name="out")
    graph = b.build([b.conv2d(z, 4, 1, name="after1"), b.conv2d(z, 2, 3, name="after2", padding=1)])
    qg, qp, x, ref = _quantized(graph, seed=1)
    exe = onednn.compile(qg, qp, dtype="int8", threads=1)
    for y, r in zip(exe(x), ref, strict=True):
        agreement = compare(np.asarray(y), np.asarray(r), "int8")
        assert agreement.ok and agreement.max_rel < 1e-5, agreement
    steps = dict(_steps(exe))
    assert "sum" in steps and "out" not in steps and exe.report.details.int8_convs == 5, steps
    assert not any("dequantized" in n for n in steps), steps


@pytest.mark.parametrize("relu6", [False, True])
def test_same_padding_and_max_pool_run_on_the_codes(onednn, relu6):
    """TF "same" padding (EfficientNet-Lite) and a ceil_mode, dilated max pool between convs: dequantize → op →
    quantize alike is the op on the codes (the pad fills with the zero's code), exactly. After a ReLU6 the zero's
    code as held is 0 and the pad is the strided conv's own padding (`code_patterns.code_pads`): no step of its
    own; before it (signed values, a zero point) the pad is a step on the codes."""
    b = GraphBuilder("qpad", (2, 4, 13, 11))
    x = b.conv2d(b.input, 6, 1, name="expand")
    x = b.relu6(x) if relu6 else x
    y = b.relu6(b.conv2d(b.pad(x, (0, 1, 0, 2), name="same"), 6, 3, name="dw", stride=2, groups=6))
    y = b.max_pool2d(y, (3, 2), (2, 1), (1, 0), dilation=(1, 2), ceil_mode=True, name="pool")
    graph = b.build(b.conv2d(y, 3, 1, name="project"))
    qg, qp, x, ref = _quantized(graph, seed=2)
    exe = onednn.compile(qg, qp, dtype="int8", threads=1)
    agreement = compare(np.asarray(exe(x)), np.asarray(ref), "int8")
    assert agreement.ok and agreement.max_rel < 1e-5, agreement
    names = [node for node, _ in _steps(exe)]
    assert ("same" in names) != relu6 and "pool" in names and not any("dequantized" in n for n in names), names


def test_quantize_rounds_half_to_even_per_tensor_and_per_channel(onednn):
    """Ties go to the even code as in ONNX and the reference; per-channel zero points (which oneDNN's reorder
    lacks) go through the binary rule."""
    g = GraphBuilder("ties", (2, 5))
    q = g.node("quantize_linear", [g.input], QuantAttrs((0.5,), (3,)), name="q")
    qc = g.node("quantize_linear", [g.input], QuantAttrs((0.5, 0.25, 0.5, 1.0, 0.5), (3, -2, 0, 1, 5), axis=1),
                name="qc")
    graph = g.build([g.node("dequantize_linear", [q], QuantAttrs((0.5,), (3,)), name="dq"), qc])
    x = np.array([[0.25, 0.75, 1.25, -0.25, -1.25], [63.0, 64.0, -65.25, -66.0, 0.0]], np.float32)
    got = onednn.compile(graph, {}, dtype="int8", threads=1)(x)
    want = get("numpy").compile(graph, {}, dtype="float64")(x)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(got[0][0], [0.0, 1.0, 1.0, 0.0, -1.0])


def test_dtype_int8_needs_a_quantized_graph_and_a_quantized_one_refuses_bfloat16(onednn):
    with pytest.raises(BackendError, match="dtype int8 runs a quantized"):
        onednn.compile(_float_net(), init_params(_float_net()), dtype="int8")
    qg, qp, _, _ = _quantized(_float_net(), seed=0)
    with pytest.raises(UnsupportedDtypeError, match="int8 QDQ graph: it runs with dtype int8"):
        onednn.compile(qg, qp, dtype="bfloat16")
