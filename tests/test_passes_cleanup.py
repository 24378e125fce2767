"""remove_identity, eliminate_dead_code and fold_constants: what each removes, what it must leave, purity,
idempotence, `verify` after each, and unchanged outputs."""

from __future__ import annotations

import numpy as np
import pytest

import convbench as cb
from convbench.backends.correctness import compare
from convbench.ir.builder import GraphBuilder
from convbench.ir.graph import Graph, Node, TensorType
from convbench.ir.ops import NoAttrs
from convbench.ir.passes import eliminate_dead_code, fold_constants, remove_identity
from convbench.ir.verify import verify

NUMPY = cb.backends.get("numpy")
X = (2, 3, 7, 5)


def params_for(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.normal(0, 0.5, t.shape).astype(np.float32) for k, t in graph.params.items()}


def same_outputs(a: Graph, pa, b: Graph, pb, dtype="float32") -> None:
    xs = [np.random.default_rng(7).standard_normal(t.shape).astype(np.float32) for t in a.inputs.values()]
    ya, yb = NUMPY.compile(a, pa, dtype=dtype)(*xs), NUMPY.compile(b, pb, dtype=dtype)(*xs)
    for u, v in zip(ya if isinstance(ya, tuple) else (ya,), yb if isinstance(yb, tuple) else (yb,), strict=True):
        np.testing.assert_array_equal(u, v)


def test_identities_go_and_their_readers_are_rewired():
    b = GraphBuilder("ids", X)
    y = b.dropout(b.dropout(b.relu(b.input, name="r"), name="d1"), name="d2")  # a chain of two
    y = b.max_pool2d(y, 1, 1, name="pool1x1")
    y = b.avg_pool2d(y, 1, name="avg1x1")
    y = b.adaptive_avg_pool2d(y, (7, 5), name="same_size")
    y = b.concat([y], name="cat1")
    keep = b.adaptive_avg_pool2d(y, (3, 2), name="really_pools")
    flat = b.flatten(b.flatten(keep, name="f1"), name="f_noop")  # the second flatten changes nothing
    graph = b.build(b.dropout(flat, name="out"))  # an identity that is the output: its producer takes the name
    cleaned = verify(remove_identity(graph))
    assert [(n.name, n.op) for n in cleaned.nodes] == [("r", "relu"), ("really_pools", "adaptive_avg_pool2d"),
                                                     ("out", "flatten")]
    assert cleaned.node_by_name["really_pools"].inputs == ("r",)
    assert cleaned.outputs == ("out",)
    same_outputs(graph, {}, cleaned, {})
    assert remove_identity(cleaned) == cleaned


def test_an_identity_of_a_graph_input_that_is_an_output_stays():
    b = GraphBuilder("passthrough", X)
    graph = b.build([b.dropout(b.input, name="d"), b.relu(b.input, name="r")])
    assert remove_identity(graph) == graph
    b = GraphBuilder("both", X)
    r = b.relu(b.input, name="r")
    graph = b.build([r, b.dropout(r, name="d")])  # its input is an output too: two names for one value stay
    assert remove_identity(graph) == graph


def test_dead_code_goes_with_its_parameters():
    b = GraphBuilder("dead", X)
    live = b.relu(b.conv2d(b.input, 4, 3, padding=1, name="conv"), name="live")
    dead = b.conv2d(b.input, 6, 1, name="unused_conv")
    b.relu(b.add(dead, dead, name="dead_add"), name="dead_tail")
    graph = b.build(live)
    cleaned = verify(eliminate_dead_code(graph))
    assert [n.name for n in cleaned.nodes] == ["conv", "live"]
    assert list(cleaned.params) == ["conv.weight", "conv.bias"]
    assert list(cleaned.inputs) == ["input"]
    assert eliminate_dead_code(cleaned) == cleaned
    p = params_for(graph)
    same_outputs(graph, p, cleaned, p)


def test_graph_inputs_stay_even_when_nothing_reads_them():
    graph = Graph({"a": TensorType(X), "unused": TensorType((3, 4))}, (Node("r", "relu", ("a",), NoAttrs()),),
                  ("r",))
    assert eliminate_dead_code(graph) == graph


def constant_graph() -> Graph:
    """A linear whose weight is relu(w) · then tanh'd, a bias that is a sum of parameters: all foldable."""
    b = GraphBuilder("consts", (2, 7))
    w = b.tanh(b.relu(b.param("raw.weight", (5, 7)), name="w_relu"), name="w")
    bias = b.add(b.param("b1", (5,)), b.param("b2", (5,)), name="bias")
    y = b.node("linear", [b.input, w, bias], None, "fc")
    return b.build([y, b.relu(b.param("only", (4, 3)), name="const_out")])  # an output stays computed


def test_constant_nodes_become_parameters():
    graph = constant_graph()
    params = params_for(graph)
    before = {k: v.copy() for k, v in params.items()}
    folded, folded_params = fold_constants(graph, params)
    verify(folded)
    assert [n.name for n in folded.nodes] == ["fc", "const_out"]
    assert folded.node_by_name["fc"].inputs == ("input", "w", "bias")
    assert set(folded.params) == {"w", "bias", "only"} == set(folded_params)
    assert folded_params["w"].dtype == np.float32
    assert all(np.array_equal(params[k], before[k]) for k in params)
    x = np.random.default_rng(7).standard_normal((2, 7)).astype(np.float32)
    ref = NUMPY.compile(graph, params, dtype="float64")(x)
    for y, r in zip(NUMPY.compile(folded, folded_params)(x), ref, strict=True):  # folded in float64: within fp32
        assert compare(y, r, "float32").ok
    again = fold_constants(folded, folded_params)
    assert again[0] == folded and all(again[1][k] is folded_params[k] for k in folded_params)


def test_constant_folding_keeps_float64_parameters_float64():
    graph = constant_graph()
    params = {k: v.astype(np.float64) for k, v in params_for(graph).items()}
    _, folded_params = fold_constants(graph, params)
    assert folded_params["w"].dtype == np.float64
    np.testing.assert_allclose(folded_params["w"], np.tanh(np.maximum(params["raw.weight"], 0)), rtol=1e-15)


@pytest.mark.parametrize("name", ["googlenet", "squeezenet1_0", "mobilenet_v2"])
def test_zoo_cleanup_keeps_outputs(name):
    """Dropout (and the 1×1 adaptive pools of small inputs) go; the outputs do not change by a bit."""
    graph = cb.models.build(name, batch=2, image_size=cb.models.spec(name).min_image_size)
    cleaned = verify(eliminate_dead_code(remove_identity(graph)))
    assert not any(n.op == "dropout" for n in cleaned.nodes) and len(cleaned) < len(graph)
    params = cb.models.init_params(graph, seed=0, calibrate=False)
    same_outputs(graph, params, cleaned, {k: params[k] for k in cleaned.params})


def test_a_dequantized_weight_stays_unless_asked_and_then_folds_to_float32():
    """An int8 engine must see a weight's dequantize_linear (ORT fuses the QDQ pair into an int8 conv), so it stays
    by default; ``dequantize=True`` (Triton's QDQ path: float32 convs on the dequantized weights) folds it into a
    float32 parameter, and the activations' QDQ pairs, which are not constants, stay."""
    from convbench.ir.passes.quantize import quantize_graph

    b = GraphBuilder("qconv", X)
    graph = b.build(b.relu(b.conv2d(b.input, 4, 3, name="c", padding=1)))
    rng = np.random.default_rng(1)
    qg, qp = quantize_graph(graph, params_for(graph), [rng.standard_normal(X).astype(np.float32)])
    weight_dqs = [n.name for n in qg.nodes if n.op == "dequantize_linear" and n.inputs[0] in qg.params]
    assert len(weight_dqs) == 2  # the weight and the bias
    kept, _ = fold_constants(qg, qp)
    assert all(name in kept.node_by_name for name in weight_dqs)
    folded, fp = fold_constants(qg, qp, dequantize=True)
    verify(folded)
    assert not any(name in folded.node_by_name for name in weight_dqs)
    assert all(fp[name].dtype == np.float32 for name in weight_dqs)
    assert [n.op for n in folded.nodes] == ["quantize_linear", "dequantize_linear", "conv2d", "relu"]
    x = rng.standard_normal(X).astype(np.float32)
    ref = np.asarray(NUMPY.compile(qg, qp, dtype="float64")(x))
    assert compare(np.asarray(NUMPY.compile(folded, fp)(x)), ref, "float32").ok
