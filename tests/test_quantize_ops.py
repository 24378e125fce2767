"""quantize_linear / dequantize_linear (ir/ops/): the reference against hand-computed codes and against ONNX's own
reference evaluator and ONNX Runtime (per-tensor, per-channel along distinct axes, int8 and uint8, saturation,
round half to even), the shape rule's errors, the FLOP rule, the attribute checks and the JSON round trip."""

from __future__ import annotations

import numpy as np
import pytest

from convbench.ir import analysis, ops
from convbench.ir.errors import IRError, ShapeError
from convbench.ir.graph import Graph, Node, TensorType
from convbench.ir.ops.quantize_linear import QuantAttrs
from convbench.ir.serialize import from_json, to_json

Q, DQ = ops.get("quantize_linear"), ops.get("dequantize_linear")


def test_per_tensor_codes_round_half_to_even_and_saturate():
    x = np.array([-1.3, -0.25, 0.25, 0.75, 1.25, 2.5, 100.0, -100.0])
    # x / 0.5 = -2.6, -0.5, 0.5, 1.5, 2.5, 5, 200, -200: ties go to the even code, ±200 saturate
    assert Q.reference(QuantAttrs((0.5,)), x).tolist() == [-3, 0, 0, 2, 2, 5, 127, -128]
    u8 = QuantAttrs((0.5,), (128,), dtype="uint8")
    assert Q.reference(u8, x).tolist() == [125, 128, 128, 130, 130, 133, 255, 0]
    assert DQ.reference(u8, np.array([125.0, 128.0, 255.0, 0.0])).tolist() == [-1.5, 0.0, 63.5, -64.0]
    assert DQ.reference(u8, np.array([0, 255], np.uint8)).tolist() == [-64.0, 63.5]  # real uint8 arrays too


@pytest.mark.parametrize("axis", [0, 1, 3, -1])
def test_per_channel_matches_a_loop_over_channels(axis):
    shape = (2, 3, 4, 5)
    x = np.random.default_rng(axis + 7).standard_normal(shape) * 3
    c = shape[axis]
    scale, zp = tuple(0.01 * (k + 1) for k in range(c)), tuple(k - 1 for k in range(c))
    attrs = QuantAttrs(scale, zp, axis=axis)
    got = Q.reference(attrs, x)
    back = DQ.reference(attrs, got)
    for k in range(c):
        sl = [slice(None)] * 4
        sl[axis] = k
        s, z = np.float64(np.float32(scale[k])), zp[k]
        want = np.clip(np.rint(x[tuple(sl)] / s) + z, -128, 127)
        assert np.array_equal(got[tuple(sl)], want)
        assert np.array_equal(back[tuple(sl)], (want - z) * s)


def test_dequantize_of_quantize_is_within_half_a_step_inside_the_range():
    x = np.random.default_rng(0).uniform(-1.0, 1.0, (2, 3, 7, 5))
    attrs = QuantAttrs((1.0 / 127,))
    assert np.abs(DQ.reference(attrs, Q.reference(attrs, x)) - x).max() <= 0.5 / 127 + 1e-12


def test_the_float32_reference_divides_in_float32_like_an_engine():
    x = np.random.default_rng(1).standard_normal(1000).astype(np.float32)
    attrs = QuantAttrs((0.013,))
    got = Q.reference(attrs, x)
    assert got.dtype == np.float32
    assert np.array_equal(got, np.clip(np.rint(x / np.float32(0.013)), -128, 127))


def _qdq_model(attrs: QuantAttrs, shape: tuple[int, ...]):
    """x → quantize → dequantize, exported by convbench (so the export is checked too), both values outputs."""
    from convbench.ir.onnx_export import to_onnx

    nodes = (Node("q", "quantize_linear", ("x",), attrs), Node("y", "dequantize_linear", ("q",), attrs))
    graph = Graph({"x": TensorType(shape)}, nodes, ("q", "y"))
    return graph, to_onnx(graph, {})


ONNX_CASES = {
    "int8": QuantAttrs((0.02,), (3,)),
    "uint8": QuantAttrs((0.03,), (128,), dtype="uint8"),
    "int8-axis1": QuantAttrs((0.01, 0.02, 0.05), (-3, 0, 5), axis=1),
    "uint8-axis3": QuantAttrs((0.02, 0.03, 0.01, 0.04, 0.05), (0, 10, 255, 128, 3), axis=3, dtype="uint8"),
}


@pytest.mark.parametrize("name", ONNX_CASES)
def test_reference_equals_onnx_reference_evaluator_and_onnxruntime(name):
    pytest.importorskip("onnx")
    from onnx.reference import ReferenceEvaluator

    attrs = ONNX_CASES[name]
    shape = (2, 3, 7, 5)
    x = (np.random.default_rng(len(name)).standard_normal(shape) * 2).astype(np.float32)
    x.flat[:4] = np.float32(attrs.scale[0]) * np.array([0.5, 1.5, 2.5, -0.5], np.float32)  # exact ties
    graph, model = _qdq_model(attrs, shape)
    q = Q.reference(attrs, x)
    y = DQ.reference(attrs, q)
    ref_model = type(model)()
    ref_model.CopyFrom(model)
    ref_model.opset_import[0].version = 19  # onnx's evaluator implements Q/DQ from 19 (same int8/uint8 semantics)
    want_q, want_y = ReferenceEvaluator(ref_model).run(None, {"x": x})
    assert want_q.dtype == np.dtype(attrs.dtype) and np.array_equal(q, want_q)
    assert np.array_equal(y, want_y)
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got_q, got_y = session.run(None, {"x": x})
    assert np.array_equal(q, got_q) and np.array_equal(y, got_y)
    assert graph.types["q"] == TensorType(shape, attrs.dtype) and graph.types["y"] == TensorType(shape)


def test_shape_rule_names_the_node_and_the_mismatch():
    bad = Node("q", "quantize_linear", ("x",), QuantAttrs((0.1, 0.2), axis=1))
    with pytest.raises(ShapeError, match=r"node 'q' \(quantize_linear\): 2 per-channel scales along axis 1, but "
                                         r"the input has 3"):
        ops.infer_node(bad, {"x": TensorType((2, 3, 7, 5))})
    with pytest.raises(ShapeError, match="axis 4 is out of range"):
        ops.infer_node(Node("q", "quantize_linear", ("x",), QuantAttrs((0.1,) * 3, axis=4)),
                       {"x": TensorType((2, 3, 7, 5))})
    with pytest.raises(ShapeError, match="takes a uint8 input, got int8"):
        ops.infer_node(Node("d", "dequantize_linear", ("q",), QuantAttrs((0.1,), dtype="uint8")),
                       {"q": TensorType((2, 3), "int8")})
    with pytest.raises(ShapeError, match="int32 is for dequantized biases only"):
        ops.infer_node(Node("q", "quantize_linear", ("x",), QuantAttrs((0.1,), dtype="int32")),
                       {"x": TensorType((2, 3))})
    with pytest.raises(ShapeError, match="takes a floating input"):
        ops.infer_node(Node("q", "quantize_linear", ("x",), QuantAttrs((0.1,))), {"x": TensorType((2, 3), "int8")})


def test_attributes_are_checked_and_scales_rounded_to_float32():
    assert QuantAttrs((0.1,)).scale == (float(np.float32(0.1)),)
    assert QuantAttrs((0.1, 0.2, 0.3), (0,), axis=0).zero_point == (0, 0, 0)  # one zero point for every channel
    with pytest.raises(IRError, match="finite and > 0"):
        QuantAttrs((0.0,))
    with pytest.raises(IRError, match="finite and > 0"):
        QuantAttrs((float("nan"),))
    with pytest.raises(IRError, match=r"uint8's range \[0, 255\]"):
        QuantAttrs((0.1,), (-1,), dtype="uint8")
    with pytest.raises(IRError, match="zero_point has 2 entries but scale has 3"):
        QuantAttrs((0.1, 0.2, 0.3), (0, 1))
    with pytest.raises(IRError, match="dtype must be one of"):
        QuantAttrs((0.1,), dtype="int4")  # type: ignore[arg-type]


def test_flop_rules_and_no_vjp():
    nodes = (Node("q", "quantize_linear", ("x",), QuantAttrs((0.1,))),
             Node("y", "dequantize_linear", ("q",), QuantAttrs((0.1,))))
    g = Graph({"x": TensorType((2, 3, 7, 5))}, nodes, ("y",))
    per_node = {r.name: r.flops for r in analysis.summarize(g).layers}
    assert per_node == {"q": 4 * 210, "y": 2 * 210}
    assert Q.vjp is None and DQ.vjp is None
    assert Q.traits == DQ.traits == frozenset({"elementwise"})


def test_a_quantized_graph_round_trips_through_json():
    attrs = QuantAttrs((0.01, 0.02, 0.03, 0.04), (0,), axis=0)
    nodes = (Node("wd", "dequantize_linear", ("w",), attrs),
             Node("xq", "quantize_linear", ("x",), QuantAttrs((0.05,), (7,), dtype="uint8")),
             Node("xd", "dequantize_linear", ("xq",), QuantAttrs((0.05,), (7,), dtype="uint8")),
             Node("y", "linear", ("xd", "wd"), ops.NoAttrs()))
    g = Graph({"x": TensorType((2, 3))}, nodes, ("y",), {"w": TensorType((4, 3), "int8")})
    assert from_json(to_json(g)) == g
