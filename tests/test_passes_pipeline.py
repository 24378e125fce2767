"""Named pipelines and the numpy backend's ``passes=`` option: what runs, what is recorded, what is refused."""

from __future__ import annotations

import numpy as np
import pytest

import convbench as cb
from convbench.backends import BackendError
from convbench.backends.correctness import compare
from convbench.ir.errors import IRError
from convbench.ir.passes import PASSES, PIPELINES, resolve, run_pipeline
from convbench.testing import backend_or_skip

NUMPY = cb.backends.get("numpy")


@pytest.fixture(scope="module")
def googlenet():
    graph = cb.models.build("googlenet", batch=2, image_size=32)
    params = cb.models.init_params(graph, seed=0)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    return graph, params, x, NUMPY.compile(graph, params, dtype="float64")(x)


def test_pipelines_name_known_passes_and_plan_last():
    assert PIPELINES["none"] == ()
    assert set(PIPELINES["default"]) <= set(PASSES)
    assert PIPELINES["all"] == (*PIPELINES["default"], "plan_memory")
    assert resolve("default") == ("default", PIPELINES["default"])
    assert resolve(None) == ("none", ())
    assert resolve("fold_batch_norm, fuse") == ("fold_batch_norm+fuse", ("fold_batch_norm", "fuse"))
    assert resolve(["dead_code"]) == ("dead_code", ("dead_code",))
    assert resolve("fold_batch_norm+fuse") == resolve("fold_batch_norm, fuse")
    with pytest.raises(IRError, match=r"unknown pipeline or pass\(es\) \['fastest'\]; pipelines: none, default"):
        resolve("fastest")
    with pytest.raises(IRError, match="plan_memory plans the final graph: it must be the last pass"):
        resolve(["plan_memory", "fuse"])


def test_run_pipeline_records_every_pass_and_keeps_its_inputs(googlenet):
    graph, params, _, _ = googlenet
    keys = set(params)
    result = run_pipeline(graph, params, "all")
    assert [r.name for r in result.records] == list(PIPELINES["all"])
    assert result.records[0].nodes_before == len(graph) and result.records[-1].nodes_after == len(result.graph)
    assert set(result.params) == set(result.graph.params)
    assert set(params) == keys  # the caller's dict is untouched
    assert result.plan is not None and result.plan.arena_bytes < result.plan.naive_bytes
    described = result.describe()
    assert described["pipeline"] == "all" and described["nodes"] == [len(graph), len(result.graph)]
    assert described["memory_plan"]["arena_bytes"] == result.plan.arena_bytes


@pytest.mark.parametrize("pipeline", ["none", "default", "all", "remove_identity,fold_batch_norm"])
def test_numpy_backend_runs_every_pipeline_within_tolerance(googlenet, pipeline):
    graph, params, x, ref = googlenet
    exe = NUMPY.compile(graph, params, passes=pipeline)
    assert exe.report.pipeline["pipeline"] == resolve(pipeline)[0]
    assert (exe.report.details.memory_plan is not None) == (pipeline == "all")
    agreement = compare(exe(x), ref, "float32")
    assert agreement.ok and agreement.top1 == 1.0, agreement
    if pipeline != "none":
        assert len(exe.graph) < len(graph)


def test_float64_oracle_with_passes_stays_float64_exact(googlenet):
    graph, params, x, ref = googlenet
    y = NUMPY.compile(graph, params, dtype="float64", passes="all")(x)
    assert compare(y, ref, "float64").ok


def test_arena_mode_can_be_declined_and_options_are_checked(googlenet):
    graph, params, _, _ = googlenet
    assert NUMPY.compile(graph, params, passes="all", memory_plan=False).report.details.memory_plan is None
    missing = {k: v for k, v in params.items() if k != "conv1.bn.running_var"}
    with pytest.raises(IRError, match=r"pass 'fold_batch_norm' on googlenet: .*'conv1.bn.running_var', which is miss"):
        run_pipeline(graph, missing, "default")
    with pytest.raises(IRError, match="unknown pipeline"):
        NUMPY.compile(graph, params, passes="bogus")
    with pytest.raises(BackendError, match="unknown option"):
        NUMPY.compile(graph, params, pases="default")


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_other_backends_accept_a_pipeline(googlenet, backend):
    be = backend_or_skip(backend)
    graph, params, x, ref = googlenet
    for pipeline in ("none", "default"):
        exe = be.compile(graph, params, passes=pipeline)
        assert exe.report.pipeline["pipeline"] == pipeline
        nodes = exe.report.pipeline["nodes"]
        assert nodes[0] == len(graph) and (nodes[1] < nodes[0]) == (pipeline == "default")
        assert compare(exe(x), ref, "float32").ok


@pytest.mark.parametrize("name", ["resnet50", "inception_v3", "densenet121", "squeezenet1_0"])
def test_default_pipeline_is_idempotent(name):
    graph = cb.models.build(name, batch=1, image_size=cb.models.spec(name).small_image_size)
    params = {k: np.broadcast_to(np.float32(1), t.shape) for k, t in graph.params.items()}
    once = run_pipeline(graph, params, "default")
    twice = run_pipeline(once.graph, once.params, "default")
    assert twice.graph == once.graph
    assert all(twice.params[k] is once.params[k] for k in once.params)
    assert all(r.nodes_before == r.nodes_after for r in twice.records)
