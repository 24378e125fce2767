"""Differential fuzzing of the torch backend against the float64 reference: 650 generated conv2d / pooling /
linear / pad configurations per run (small tensors, a few seconds), and proof that a failure shrinks to a minimal
configuration (a planted dilation bug is reduced to one 1-channel conv with a 2-tap dilated kernel)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from convbench.testing.fuzz import check_case, conv2d_cases, differential_test, linear_cases, pad_cases, pool_cases

pytest.importorskip("torch")

test_fuzz_conv2d = differential_test("torch", conv2d_cases(), max_examples=250)
test_fuzz_pool = differential_test("torch", pool_cases(), max_examples=200)
test_fuzz_linear = differential_test("torch", linear_cases(), max_examples=100)
test_fuzz_pad = differential_test("torch", pad_cases(), max_examples=100)
test_fuzz_conv2d_bfloat16 = differential_test("torch", conv2d_cases(), dtype="bfloat16", max_examples=50)


def test_a_failure_shrinks_to_a_minimal_config():
    from test_conformance_planted import IgnoresDilation

    seen = []

    @settings(max_examples=300, database=None, derandomize=True, deadline=None)
    @given(case=conv2d_cases())
    def prop(case):
        seen.append(case)
        check_case(IgnoresDilation(), case)

    with pytest.raises(AssertionError, match="dilation="):
        prop()
    node = seen[-1].graph.nodes[0]  # hypothesis replays the shrunk example last
    x, w = (seen[-1].graph.types[i].shape for i in node.inputs[:2])
    assert x[:2] == (1, 1) and w[:2] == (1, 1) and node.attrs.groups == 1, seen[-1]
    assert node.attrs.stride == (1, 1) and node.attrs.padding == (0, 0), seen[-1]
    assert sorted(w[2:]) == [1, 2] and sorted(node.attrs.dilation) == [1, 2], seen[-1]
