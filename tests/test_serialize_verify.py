"""JSON round trips, verify(), and the errors bad graphs get."""

from __future__ import annotations

import json

import pytest

import convbench as cb
from convbench.ir import GraphFormatError, IRError, ShapeError, UnknownOpError, from_json, to_json, verify
from convbench.ir.builder import GraphBuilder
from convbench.ir.graph import Graph, Node


@pytest.mark.parametrize("name", cb.models.names())
def test_zoo_round_trips_exactly(name):
    g = cb.models.build(name)
    text = to_json(g)
    back = from_json(text)
    assert back == g
    assert to_json(back) == text


def small_graph() -> Graph:
    b = GraphBuilder("small", (2, 3, 7, 5))
    x = b.relu(b.conv2d(b.input, 4, 3, padding=1, name="conv"))
    return b.build(b.linear(b.flatten(x), 6, name="fc"))


def test_missing_field_is_named():
    data = json.loads(to_json(small_graph()))
    del data["nodes"][0]["op"]
    with pytest.raises(GraphFormatError, match=r"node #0 'conv': missing field 'op'"):
        from_json(json.dumps(data))


def test_wrong_format_and_version():
    data = json.loads(to_json(small_graph()))
    with pytest.raises(GraphFormatError, match="version 99"):
        from_json(json.dumps({**data, "version": 99}))
    with pytest.raises(GraphFormatError, match="does not parse"):
        from_json("{not json")


def test_linear_in_features_mismatch_names_node_op_and_shapes():
    data = json.loads(to_json(small_graph()))
    data["params"]["fc.weight"]["shape"] = [6, 99]
    with pytest.raises(ShapeError) as e:
        from_json(json.dumps(data))
    msg = str(e.value)
    assert "'fc' (linear)" in msg and "140" in msg and "(6, 99)" in msg and "in_features=99" in msg


def test_unknown_op_lists_known_ones():
    data = json.loads(to_json(small_graph()))
    data["nodes"][1]["op"] = "gelu"
    with pytest.raises(UnknownOpError, match=r"unknown op 'gelu'; known ops: adaptive_avg_pool2d, add,"):
        from_json(json.dumps(data))


def test_bad_attribute():
    data = json.loads(to_json(small_graph()))
    data["nodes"][0]["attrs"]["strides"] = [1, 1]
    with pytest.raises(GraphFormatError, match=r"node 'conv' \(conv2d\).*unknown attribute"):
        from_json(json.dumps(data))


def test_verify_catches_order_and_names():
    g = small_graph()
    swapped = g.replace(nodes=(g.nodes[1], g.nodes[0], *g.nodes[2:]))
    with pytest.raises(IRError, match="defined later"):
        verify(swapped)
    dup = g.replace(nodes=(*g.nodes, Node("fc", "relu", ("fc",), cb.ir.ops.NoAttrs())))
    with pytest.raises(IRError, match="not unique"):
        verify(dup)
    with pytest.raises(IRError, match="output 'nope'"):
        verify(g.replace(outputs=("nope",)))


def test_arity_error():
    g = small_graph()
    bad = g.replace(nodes=(Node("conv", "conv2d", ("input",), g.nodes[0].attrs), *g.nodes[1:]))
    with pytest.raises(IRError, match=r"'conv' \(conv2d\): takes 2 to 3 inputs"):
        verify(bad)


def test_conv_channel_mismatch_names_shapes():
    b = GraphBuilder("g", (2, 3, 7, 5))
    b.param("w", (4, 5, 3, 3))
    with pytest.raises(ShapeError, match=r"node 'c' \(conv2d\).*input has 3.*input: float32\[2×3×7×5\]"):
        b.node("conv2d", ["input", "w"], cb.ir.ops.get("conv2d").attrs_type(), "c")


def test_bad_attrs_values():
    with pytest.raises(IRError, match="stride"):
        cb.ir.ops.get("conv2d").attrs_type(stride=0)
    with pytest.raises(IRError, match="padding"):
        cb.ir.ops.get("max_pool2d").attrs_type(kernel_size=2, padding=2)
