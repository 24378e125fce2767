"""IR → ONNX → IR: every zoo model and every conformance op case comes back as the same graph with bit-identical
parameters, and the same outputs; the exported models pass onnx.checker; what ONNX cannot say is refused, listed."""

from __future__ import annotations

import numpy as np
import pytest

import convbench as cb
from convbench.ir.builder import GraphBuilder
from convbench.testing import op_cases

onnx = pytest.importorskip("onnx")
from convbench.ir.onnx_export import OnnxExportError, to_onnx  # noqa: E402
from convbench.ir.onnx_import import from_onnx  # noqa: E402

NUMPY = cb.backends.get("numpy")


def max_rel(y: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(y.astype(np.float64) - ref).max() / np.abs(ref).max())


def assert_same_params(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for k in want:
        assert got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k]), k


def quick_params(graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Finite parameters at a tenth of init_params' cost (no BN calibration pass, float32 draws): the round trip
    compares a graph with itself, so any finite values do; BN variances are kept positive."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, t in graph.params.items():
        fan_in = int(np.prod(t.shape[1:])) if len(t.shape) > 1 else 1
        a = (rng.random(t.shape, dtype=np.float32) - np.float32(0.5)) * np.float32(2 * np.sqrt(3 / fan_in))
        out[name] = np.abs(a) + np.float32(0.5) if name.endswith("running_var") else a
    return out


# onnx.checker serialises the whole model (a few seconds per VGG); the VGGs share every op and attribute, so
# vgg11 and vgg19_bn stand for the family there.
UNCHECKED = {"vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if n.startswith("vgg") else [])
                                  for n in cb.models.names()])  # a VGG's 130 M weights through protobuf: 3-6 s
def test_zoo_model_round_trips(name):
    g = cb.models.build(name, batch=1, image_size=cb.models.spec(name).small_image_size)
    params = quick_params(g)
    g2, p2 = from_onnx(to_onnx(g, params, check=name not in UNCHECKED))
    assert g2 == g  # same nodes, names, attributes, parameter types, outputs
    assert_same_params(p2, params)
    x = np.random.default_rng(0).standard_normal(g.inputs["input"].shape).astype(np.float32)
    assert max_rel(NUMPY.compile(g2, p2)(x), NUMPY.compile(g, params)(x)) < 1e-5


def test_round_trip_through_a_file(tmp_path):
    g = cb.models.build("mobilenet_v2", batch=2, image_size=32)
    params = cb.models.init_params(g, seed=1)
    path = tmp_path / "mobilenet_v2.onnx"
    to_onnx(g, params, path)
    onnx.checker.check_model(str(path), full_check=True)  # with ONNX's own shape inference
    g2, p2 = from_onnx(path)
    assert g2 == g
    assert_same_params(p2, params)


def exportable(case) -> bool:
    return not any(n.op == "lrn" and n.attrs.size % 2 == 0 for n in case.graph.nodes)


def is_divisible_adaptive_pool(node, graph) -> bool:
    if node.op != "adaptive_avg_pool2d":
        return False
    (h, w), (oh, ow) = graph.types[node.inputs[0]].shape[2:], node.attrs.output_size
    return (oh, ow) != (1, 1) and h % oh == 0 and w % ow == 0


# ONNX has no adaptive pool: one whose windows are equal is written as the AveragePool it is and comes back as
# avg_pool2d; fused ops are written as their parts and come back unfused. Everything else comes back unchanged.
CASES = op_cases()
CANONICALISED = [c for c in CASES if exportable(c) and (c.ops & {"fused_conv2d", "fused_linear"} or any(
    is_divisible_adaptive_pool(n, c.graph) for n in c.graph.nodes))]
EXACT = [c for c in CASES if exportable(c) and c not in CANONICALISED]


@pytest.mark.parametrize("case", EXACT, ids=[c.id for c in EXACT])
def test_op_case_round_trips_exactly(case):
    """Every op and attribute of the conformance corpus (uneven adaptive pools, flatten from any axis, 3-input add,
    linear on rank 3, ceil_mode, count_include_pad …) survives export and import unchanged."""
    g2, p2 = from_onnx(to_onnx(case.graph, case.params))
    assert g2 == case.graph
    assert_same_params(p2, case.params)


@pytest.mark.parametrize("case", CANONICALISED, ids=[c.id for c in CANONICALISED])
def test_op_case_round_trips_to_an_equivalent_graph(case):
    g2, p2 = from_onnx(to_onnx(case.graph, case.params))
    assert not {n.op for n in g2.nodes} & {"fused_conv2d", "fused_linear"}
    assert g2.outputs == case.graph.outputs
    ys = NUMPY.compile(g2, p2, dtype="float64")(*case.input_list())
    for y, ref in zip(ys if isinstance(ys, tuple) else (ys,), case.reference, strict=True):
        assert max_rel(y, ref) < 1e-12


def test_uneven_adaptive_pool_is_two_averaging_matmuls():
    b = GraphBuilder("vgg_head", (2, 3, 1, 2))
    g = b.build(b.adaptive_avg_pool2d(b.input, (7, 5), name="avgpool"))
    model = to_onnx(g, {})
    assert [n.op_type for n in model.graph.node] == ["MatMul", "MatMul"]
    assert from_onnx(model)[0] == g


def test_export_refuses_every_inexact_node_at_once():
    b = GraphBuilder("bad", (2, 8, 7, 5))
    x = b.lrn(b.input, size=4, name="lrn_a")
    x = b.relu(b.lrn(x, size=2, name="lrn_b"), name="relu")
    g = b.build(x)
    with pytest.raises(OnnxExportError) as e:
        to_onnx(g, {})
    assert "'lrn_a' (lrn)" in str(e.value) and "'lrn_b' (lrn)" in str(e.value) and "even size" in str(e.value)


def test_export_names_missing_and_misshapen_parameters():
    g = cb.models.build("lenet5")
    params = cb.models.init_params(g, seed=0)
    with pytest.raises(OnnxExportError, match="missing"):
        to_onnx(g, {k: v for k, v in params.items() if k != "c1.weight"})
    with pytest.raises(OnnxExportError, match=r"'c1.bias' has shape \(7,\), the graph expects \(6,\)"):
        to_onnx(g, {**params, "c1.bias": np.zeros(7, np.float32)})


def test_import_does_not_load_onnx_with_convbench():
    import subprocess
    import sys

    code = "import sys, convbench; assert 'onnx' not in sys.modules and 'onnxruntime' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert cb.ir.from_onnx is from_onnx and cb.ir.to_onnx is to_onnx
