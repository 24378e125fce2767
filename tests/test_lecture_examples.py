"""The lectures' worked examples: output sizes, the max-pool example and parameter counts."""

from __future__ import annotations

import numpy as np
import pytest

from convbench.ir import ops
from convbench.ir.analysis import summarize
from convbench.ir.builder import GraphBuilder
from convbench.ir.graph import TensorType
from convbench.ir.ops._pool import PoolAttrs
from convbench.ir.ops.conv2d import Conv2dAttrs


@pytest.mark.parametrize("n, f, p, s, out", [(7, 3, 0, 1, 5), (7, 3, 0, 2, 3), (4, 2, 0, 1, 3), (5, 3, 2, 2, 4)])
def test_output_size_formula(n, f, p, s, out):
    """(N − F + 2P)/S + 1."""
    conv = ops.get("conv2d").infer(Conv2dAttrs(s, p), [TensorType((1, 1, n, n)), TensorType((1, 1, f, f))])
    assert conv.shape[2:] == (out, out)


def test_max_pool_example():
    x = np.array([[0, 4, 7, 8], [9, 2, 4, 5], [6, 7, 3, 4], [8, 2, 1, 5]], dtype=np.float32)[None, None]
    y = ops.get("max_pool2d").reference(PoolAttrs(2, 2), x)
    np.testing.assert_array_equal(y[0, 0], [[9, 8], [8, 5]])


@pytest.mark.parametrize("k, f, d", [(10, 5, 3), (96, 11, 3), (64, 3, 64)])
def test_conv_layer_parameters(k, f, d):
    """A conv layer with K filters of F×F over depth D has K·(F·F·D + 1) parameters."""
    b = GraphBuilder("conv", (1, d, 32, 32))
    g = b.build(b.conv2d(b.input, k, f, name="conv"))
    assert summarize(g).params == k * (f * f * d + 1)


def test_fully_connected_example():
    """64×64×3 input to 1000 units: 12,289,000 parameters."""
    b = GraphBuilder("fc", (1, 3, 64, 64))
    g = b.build(b.linear(b.flatten(b.input), 1000, name="fc"))
    assert summarize(g).params == 12_289_000
