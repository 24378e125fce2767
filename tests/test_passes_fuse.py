"""fuse and the fused ops: which chains fuse, where the fused node is scheduled, when fusion bails out, the
backend's `supports` veto, and that a fused graph computes bit for bit what the unfused one does."""

from __future__ import annotations

import numpy as np
import pytest

import convbench as cb
from convbench.ir import from_json, to_json
from convbench.ir.analysis import summarize
from convbench.ir.builder import GraphBuilder
from convbench.ir.errors import IRError, ShapeError
from convbench.ir.graph import Graph, Node, TensorType
from convbench.ir.ops import infer_node
from convbench.ir.ops.fused_conv2d import FusedConv2dAttrs
from convbench.ir.passes import fold_batch_norm, fuse
from convbench.ir.verify import verify

NUMPY = cb.backends.get("numpy")


def params_for(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.normal(0, 0.5, t.shape).astype(np.float32) for k, t in graph.params.items()}


def run(graph: Graph, params, x, dtype="float32"):
    return NUMPY.compile(graph, params, dtype=dtype)(x)


def residual_block(projection: bool) -> Graph:
    """A ResNet basic block on (2, 3, 7, 5): conv-relu, conv, + shortcut (1×1/2 conv if projecting), relu."""
    b = GraphBuilder("block", (2, 3, 7, 5))
    stride, out = (2, 4) if projection else (1, 3)
    y = b.relu(b.conv2d(b.input, out, 3, stride=stride, padding=1, name="conv1"), name="relu1")
    y = b.conv2d(y, out, 3, padding=1, dilation=1, name="conv2")
    skip = b.conv2d(b.input, out, 1, stride=2, bias=False, name="down") if projection else b.input
    return b.build(b.relu(b.add(y, skip, name="add"), name="relu"))


@pytest.mark.parametrize("projection", [False, True])
def test_residual_block_fuses_and_computes_the_same_bits(projection):
    graph = residual_block(projection)
    fused = verify(fuse(graph))
    ops = [(n.name, n.op) for n in fused.nodes]
    if projection:  # the residual (down) is computed after conv2: the fused node runs after it
        assert ops == [("relu1", "fused_conv2d"), ("down", "conv2d"), ("relu", "fused_conv2d")]
        assert fused.node_by_name["relu"].inputs == ("relu1", "conv2.weight", "conv2.bias", "down")
    else:
        assert ops == [("relu1", "fused_conv2d"), ("relu", "fused_conv2d")]
    last = fused.node_by_name["relu"].attrs
    assert (last.residual, last.activation, last.bias) == (True, "relu", True)
    assert fused.outputs == graph.outputs
    params = params_for(graph)
    x = np.random.default_rng(1).standard_normal((2, 3, 7, 5)).astype(np.float32)
    for dtype in ("float32", "float64"):
        np.testing.assert_array_equal(run(fused, params, x, dtype), run(graph, params, x, dtype))
    assert fuse(fused) == fused  # idempotent
    s0, s1 = summarize(graph), summarize(fused)
    assert (s1.flops, s1.macs, s1.params) == (s0.flops, s0.macs, s0.params)  # fusion saves traffic, not FLOPs
    assert s1.conv_layers == s0.conv_layers  # a fused conv is still a conv layer


def test_zoo_resnet_after_folding_fuses_every_block():
    graph = cb.models.build("resnet18", batch=2, image_size=32)
    params = cb.models.init_params(graph, seed=0)
    folded, folded_params = fold_batch_norm(graph, params)
    fused = verify(fuse(folded))
    counts = {op: sum(n.op == op for n in fused.nodes) for op in ("fused_conv2d", "conv2d", "add", "relu")}
    # 17 conv+relu / conv+add+relu chains; the 3 projection convs stay plain (the add went to the main path)
    assert counts == {"fused_conv2d": 17, "conv2d": 3, "add": 0, "relu": 0}
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(run(fused, folded_params, x), run(folded, folded_params, x))


def test_linear_chains_and_activations():
    b = GraphBuilder("mlp", (3, 9))
    y = b.tanh(b.linear(b.input, 7, name="fc1"), name="t1")
    y = b.sigmoid(b.linear(y, 7, bias=False, name="fc2"), name="s2")
    y = b.relu6(b.add(b.linear(y, 7, name="fc3"), y, name="res"), name="r6")
    graph = b.build(b.leaky_relu(b.linear(y, 4, name="fc4"), name="leaky"))  # leaky_relu has attrs: not fused
    fused = verify(fuse(graph))
    assert [(n.name, n.op, getattr(n.attrs, "activation", None)) for n in fused.nodes] == [
        ("t1", "fused_linear", "tanh"), ("s2", "fused_linear", "sigmoid"), ("r6", "fused_linear", "relu6"),
        ("fc4", "linear", None), ("leaky", "leaky_relu", None)]
    assert not fused.node_by_name["s2"].attrs.bias and fused.node_by_name["r6"].attrs.residual
    params = params_for(graph, 2)
    x = np.random.default_rng(3).standard_normal((3, 9)).astype(np.float32)
    np.testing.assert_array_equal(run(fused, params, x), run(graph, params, x))


def test_values_seen_elsewhere_are_not_absorbed():
    b = GraphBuilder("bail", (2, 3, 7, 5))
    seen = b.conv2d(b.input, 4, 3, padding=1, name="seen")  # read by relu and by concat: must stay a value
    cat = b.concat([b.relu(seen, name="r"), seen], name="cat")
    out_conv = b.conv2d(b.input, 4, 3, padding=1, name="out_conv")  # a graph output itself
    added = b.add(b.conv2d(b.input, 4, 3, padding=1, name="c3"), out_conv, name="added")  # an output, read on
    doubled = b.add(b.conv2d(b.input, 4, 1, name="c4"), "c4", name="doubled")  # conv + itself: not a residual
    graph = b.build([cat, out_conv, added, b.relu(added, name="after"), doubled])
    fused = verify(fuse(graph))
    by_name = fused.node_by_name
    assert by_name["seen"].op == "conv2d" and by_name["r"].op == "relu"
    # c3 absorbs the add (the fused node is named "added", so the output survives), not the relu after it
    assert by_name["added"].op == "fused_conv2d" and by_name["added"].attrs.activation is None
    assert by_name["after"].op == "relu" and by_name["doubled"].op == "add"
    assert fused.outputs == graph.outputs


def test_supports_veto_keeps_only_what_the_backend_lowers():
    graph = residual_block(projection=False)
    no_residual = verify(fuse(graph, supports=lambda n: not n.attrs.residual))
    assert [n.op for n in no_residual.nodes] == ["fused_conv2d", "conv2d", "add", "relu"]
    assert fuse(graph, supports=lambda n: False) == graph
    shortened = fuse(graph, supports=lambda n: n.attrs.activation is None or not n.attrs.residual)
    assert shortened.node_by_name["add"].op == "fused_conv2d"  # conv + add fused, the relu left on its own
    assert shortened.node_by_name["relu"].op == "relu"


def test_fused_graph_round_trips_through_json():
    fused = fuse(residual_block(projection=True))
    assert from_json(to_json(fused)) == fused


def test_fused_attrs_and_arity_errors_name_the_problem():
    with pytest.raises(IRError, match="activation must be None or one of"):
        FusedConv2dAttrs(activation="softmax")
    with pytest.raises(IRError, match="stride"):
        FusedConv2dAttrs(stride=0)
    types = {"x": TensorType((2, 3, 7, 5)), "w": TensorType((4, 3, 3, 3)), "r": TensorType((2, 4, 6, 3))}
    node = Node("f", "fused_conv2d", ("x", "w", "r"), FusedConv2dAttrs(bias=False, residual=True))
    with pytest.raises(ShapeError, match=r"node 'f' \(fused_conv2d\): residual must have the output's shape"):
        infer_node(node, types)
    node = Node("f", "fused_conv2d", ("x", "w"), FusedConv2dAttrs(bias=True))
    with pytest.raises(ShapeError, match="takes 3 inputs, got 2"):
        infer_node(node, types)
