"""The torch backend's residual post-op (backends/torch/layers.py: fuse_residual_adds): conv + add (+ ReLU) as one
oneDNN call, in place only where nothing reads the residual after the add, never across a broadcast; checked
against the float64 reference on distinct dims, in float32 and bfloat16."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from convbench import models
from convbench.backends import get
from convbench.backends.correctness import compare
from convbench.ir.builder import GraphBuilder
from convbench.testing.cases import reference_outputs


def residual_graph():
    """N=2, C=3, H=7, W=5: three adds after convs — a residual read before the add (written over), one read after
    it and one the graph returns (both a new buffer) — and an add of two non-conv values (not fused)."""
    b = GraphBuilder("residuals", (2, 3, 7, 5))
    a = b.relu(b.conv2d(b.input, 4, 3, padding=1, name="a"), name="a_relu")
    r1 = b.relu(b.add(b.conv2d(a, 4, 1, name="b"), a, name="add1"), name="relu1")
    s = b.add(b.conv2d(r1, 4, 3, padding=1, name="c"), r1, name="add2")
    t = b.add(s, r1, name="add3")  # r1 read after add2: add2 must not write over it
    return b.build([b.add(b.conv2d(t, 4, (3, 1), padding=(1, 0), name="d"), t, name="add4"), t])  # t returned


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_residual_post_ops_match_the_float64_reference(dtype):
    torch_backend = get("torch")
    g = residual_graph()
    params = models.init_params(g, seed=1)
    x = np.random.default_rng(1).standard_normal(g.inputs["input"].shape).astype(np.float32)
    ref = reference_outputs(g, params, {"input": x})
    exe = torch_backend.compile(g, params, dtype=dtype, threads=1, residual_post_ops=True)
    if not exe.report.details.prepack:
        pytest.skip("oneDNN pre-packing is not available for this dtype here")
    assert exe.report.details.residual_post_ops == 3  # add1 (+ relu1), add2, add4; add3 adds no conv
    modules = [m for _, m in exe.artifact.named_modules() if type(m).__name__ == "PackedConvAdd"]
    assert [(m.activation, m.in_place) for m in modules] == [("relu", True), (None, False), (None, False)]
    for _ in range(2):  # a second call: nothing the first wrote over is read again
        for y, want in zip(exe(x), ref, strict=True):
            agreement = compare(np.asarray(y), want, dtype)
            assert agreement.ok, agreement
    plain = torch_backend.compile(g, params, dtype=dtype, threads=1, residual_post_ops=False)
    assert plain.report.details.residual_post_ops == 0
    assert all(compare(np.asarray(y), want, dtype).ok for y, want in zip(plain(x), ref, strict=True))


def test_resnet_bottlenecks_all_take_the_post_op():
    g = models.build("resnet50", batch=2, image_size=64)
    exe = get("torch").compile(g, models.init_params(g, seed=0), threads=1, residual_post_ops=True)
    if not exe.report.details.prepack:
        pytest.skip("oneDNN pre-packing is not available here")
    assert exe.report.details.residual_post_ops == 16  # every bottleneck: conv3 + identity + ReLU
    targets = {str(n.target) for n in exe.artifact.graph.nodes if n.op == "call_function"}
    assert not any("relu" in t or "add" in t for t in targets)
