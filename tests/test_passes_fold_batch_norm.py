"""fold_batch_norm: no foldable BN survives in any zoo model, outputs match within the fp32 tolerance, the pass
bails out when a precondition fails, is idempotent and pure, and `verify` holds after it."""

from __future__ import annotations

import numpy as np
import pytest

import convbench as cb
from convbench.backends.correctness import compare
from convbench.ir.builder import GraphBuilder
from convbench.ir.errors import IRError
from convbench.ir.graph import Graph
from convbench.ir.ops.conv2d import Conv2dAttrs
from convbench.ir.passes import fold_batch_norm
from convbench.ir.passes.fold_batch_norm import foldable
from convbench.ir.verify import verify

NUMPY = cb.backends.get("numpy")
# DenseNet is pre-activation (BN → ReLU → conv): its BNs read a concat or pool, so no conv precedes them.
PRE_ACTIVATION = {"densenet121"}


def cheap_params(graph: Graph) -> dict[str, np.ndarray]:
    """Distinct per-channel vectors (BN statistics, biases); weights as broadcast views, which cost no memory."""
    rng = np.random.default_rng(0)
    return {name: rng.uniform(0.5, 1.5, t.shape).astype(np.float32) if t.rank == 1
            else np.broadcast_to(np.float32(0.01), t.shape) for name, t in graph.params.items()}


def run_both(graph, params, folded, folded_params, x):
    ref = NUMPY.compile(graph, params, dtype="float64")(x)
    return NUMPY.compile(folded, folded_params)(x), ref


@pytest.mark.parametrize("name", cb.models.names())
def test_zoo_keeps_no_foldable_batch_norm(name):
    graph = cb.models.build(name, batch=1, image_size=cb.models.spec(name).small_image_size)
    params = cheap_params(graph)
    folded, folded_params = fold_batch_norm(graph, params)
    verify(folded)
    left = [n for n in folded.nodes if n.op == "batch_norm"]
    if name in PRE_ACTIVATION:
        producers = {folded.node_by_name[n.inputs[0]].op for n in left if n.inputs[0] in folded.node_by_name}
        assert left and producers <= {"concat", "max_pool2d", "avg_pool2d"}, producers
    else:
        assert left == []
    assert all(foldable(folded, n) is None for n in left)
    assert set(folded_params) == set(folded.params)
    again, again_params = fold_batch_norm(folded, folded_params)
    assert again == folded
    assert all(again_params[k] is folded_params[k] for k in folded_params)  # untouched, not recomputed


@pytest.mark.parametrize("name", ["resnet18", "googlenet", "mobilenet_v2", "densenet121"])
def test_zoo_outputs_match_within_float32_tolerance(name):
    size = cb.models.spec(name).small_image_size
    graph = cb.models.build(name, batch=2, image_size=size)
    params = cb.models.init_params(graph, seed=1)
    folded, folded_params = fold_batch_norm(graph, params)
    x = np.random.default_rng(2).standard_normal(graph.inputs["input"].shape).astype(np.float32)
    y, ref = run_both(graph, params, folded, folded_params, x)
    agreement = compare(y, ref, "float32")
    assert agreement.ok and agreement.top1 == 1.0, agreement
    assert len(folded) < len(graph)


def block(bias: bool = False) -> tuple[Graph, dict[str, np.ndarray]]:
    """conv (stride 2, dilation 2, groups 3) → BN → relu, linear → BN1d: all dimensions distinct."""
    b = GraphBuilder("block", (2, 3, 7, 5))
    y = b.conv2d(b.input, 6, 3, stride=2, padding=2, dilation=2, groups=3, bias=bias, name="conv")
    y = b.relu(b.batch_norm(y, eps=1e-3, name="bn"))
    y = b.linear(b.flatten(y), 4, name="fc")
    graph = b.build(b.batch_norm(y, name="bn_fc"))
    rng = np.random.default_rng(3)
    params = {k: rng.uniform(0.5, 1.5, t.shape).astype(np.float32) for k, t in graph.params.items()}
    return graph, params


@pytest.mark.parametrize("bias", [False, True])
def test_conv_and_linear_fold_and_the_bias_is_created_after_the_weight(bias):
    graph, params = block(bias)
    before = {k: v.copy() for k, v in params.items()}
    folded, folded_params = fold_batch_norm(graph, params)
    verify(folded)
    assert [n.op for n in folded.nodes] == ["conv2d", "relu", "flatten", "linear"]
    assert folded.outputs == ("bn_fc",)  # the BN was the output: the linear took its name
    assert folded.node_by_name["bn_fc"].inputs == ("flatten", "fc.weight", "fc.bias")
    assert list(folded.params) == ["conv.weight", "conv.bias", "fc.weight", "fc.bias"]
    assert all(np.array_equal(params[k], before[k]) for k in params)  # pure: the input is not modified
    x = np.random.default_rng(4).standard_normal((2, 3, 7, 5)).astype(np.float32)
    y, ref = run_both(graph, params, folded, folded_params, x)
    assert compare(y, ref, "float32").ok
    # the backend casts first, then folds: the float64 oracle keeps float64 weights and stays exact
    y64 = NUMPY.compile(graph, params, dtype="float64", passes=["fold_batch_norm"])(x)
    assert compare(y64, ref, "float64").ok


def test_preconditions_leave_the_batch_norm_in_place():
    b = GraphBuilder("bail", (2, 3, 7, 5))
    shared = b.conv2d(b.input, 4, 3, padding=1, name="shared")  # read by BN and by the add
    y = b.add(b.batch_norm(shared, name="bn_shared"), shared, name="add")
    on_input = b.batch_norm(b.input, name="bn_input")  # no conv before it
    seq = b.linear(b.input, 4, name="fc3d")  # rank-4 linear output: BN's channel axis is not the features axis
    graph = b.build([y, on_input, b.batch_norm(seq, name="bn_rank4")])
    params = {k: np.ones(t.shape, np.float32) for k, t in graph.params.items()}
    folded, _ = fold_batch_norm(graph, params)
    assert folded == graph


def test_a_weight_shared_by_two_convs_is_not_rewritten():
    b = GraphBuilder("tied", (2, 3, 7, 5))
    b.param("tied.weight", (3, 3, 1, 1))
    y = b.batch_norm(b.node("conv2d", [b.input, "tied.weight"], Conv2dAttrs(), "c1"), name="bn1")
    z = b.node("conv2d", [y, "tied.weight"], Conv2dAttrs(), "c2")
    graph = b.build(z)
    params = {k: np.full(t.shape, 0.5, np.float32) for k, t in graph.params.items()}
    assert fold_batch_norm(graph, params)[0] == graph


def test_a_missing_parameter_is_named():
    graph, params = block()
    del params["bn.running_var"]
    with pytest.raises(IRError, match=r"node 'bn' \(batch_norm\) reads parameter 'bn.running_var'"):
        fold_batch_norm(graph, params)
