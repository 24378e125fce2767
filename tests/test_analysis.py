"""Static analysis: FLOP rules, activation liveness."""

from __future__ import annotations

import convbench as cb
from convbench.ir.analysis import live_bytes, summarize
from convbench.ir.builder import GraphBuilder


def test_flops_are_twice_macs_plus_stated_rules():
    s = summarize(cb.models.build("lenet5"))
    by = {r.name: r for r in s.layers}
    assert by["c1"].flops == 2 * by["c1"].macs + 6 * 28 * 28  # + bias
    assert by["c1_tanh"].flops == 5 * 6 * 28 * 28
    assert by["s2"].flops == 4 * 6 * 14 * 14
    assert s.flops == sum(r.flops for r in s.layers)
    assert all(r.flops > 0 for r in s.layers if r.op not in {"flatten", "dropout", "concat"})


def test_liveness_of_a_residual_block():
    b = GraphBuilder("res", (1, 2, 4, 4))  # 128 bytes per activation
    a = b.relu(b.input, name="a")
    c = b.relu(a, name="c")
    d = b.add(a, c, name="d")
    g = b.build(b.relu(d, name="e"))
    # step a: input + a; c: input + a + c (input freed after a); …
    assert live_bytes(g) == [256, 256, 384, 256]
    s = summarize(g)
    assert s.activation_peak_bytes == 384
    assert s.activation_sum_bytes == 5 * 128


def test_summary_json_shape():
    d = summarize(cb.models.build("resnet18")).to_dict()
    assert d["params"] == 11_689_512 and d["conv_layers"] == 20 and d["linear_layers"] == 1
    assert d["activation_peak_bytes"] < d["activation_sum_bytes"]
    assert d["buffer_bytes"] == 2 * 4 * sum(r["output_shape"][1] for r in d["layers"] if r["op"] == "batch_norm")
