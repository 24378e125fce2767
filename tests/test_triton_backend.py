"""The Triton backend (under the interpreter when there is no GPU): the conformance suite's op cases in float32
and float16, the plan it compiles (fusion, concat in place and as views, what each launch covers), its options
and errors, and that it stays importable and says why when triton is missing."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from convbench.backends import BackendError, BackendUnavailableError, UnsupportedNodeError
from convbench.backends.triton import BACKEND
from convbench.ir.builder import GraphBuilder
from convbench.testing import Expectations, conformance_params, make_case, run_case

AVAILABLE, WHY = BACKEND.available()
needs_backend = pytest.mark.skipif(not AVAILABLE, reason=f"triton backend not available: {WHY}")
EXPECT = Expectations()


@pytest.mark.parametrize("item", conformance_params("triton", "ops", EXPECT))
def test_ops(item):
    item.check()


@pytest.mark.parametrize("item", conformance_params("triton", "ops", EXPECT, dtype="float16"))
def test_ops_float16(item):
    item.check()


# -- plans ------------------------------------------------------------------------------------------------------
def basic_block_graph(bn: bool = True):
    """A ResNet basic block with a strided projection shortcut, BN after every conv, small shapes."""
    b = GraphBuilder("block", (2, 3, 9, 7))

    def conv_bn(x, out, k, name, stride=1):
        y = b.conv2d(x, out, k, stride=stride, padding=k // 2, bias=not bn, name=f"{name}.conv")
        return b.batch_norm(y, name=f"{name}.bn") if bn else y

    y = b.relu(conv_bn(b.input, 4, 3, "a", stride=2), name="a.relu")
    y = conv_bn(y, 4, 3, "b")
    short = conv_bn(b.input, 4, 1, "down", stride=2)
    return b.build(b.relu(b.add(y, short, name="add"), name="out"))


def compile_case(graph, **options):
    case = make_case(graph.name, graph)
    return case, BACKEND.compile(case.graph, case.params, **options)


@needs_backend
def test_residual_chain_is_one_launch_with_its_epilogue():
    case, exe = compile_case(basic_block_graph())
    plan = exe.report.details.plan
    assert exe.report.details.launches == 3, plan  # conv a (+BN+ReLU), the projection (+BN), conv b (+BN+add+ReLU)
    fused = next(line for line in plan if line.startswith("out:"))
    assert "+residual(down.conv)" in fused and fused.rstrip().endswith("[b.conv, b.bn, add, out]"), fused
    assert any(line.startswith("down.conv:") and "[down.conv, down.bn]" in line for line in plan), plan
    assert not any(k in line for line in plan for k in ("batch_norm", ": add", ": relu")), plan
    assert run_case(BACKEND, case).status == "pass"


@needs_backend
def test_without_passes_the_lowering_still_fuses_activations():
    case, exe = compile_case(basic_block_graph(), passes="none")
    plan = exe.report.details.plan
    assert exe.report.pipeline["pipeline"] == "none"
    assert "a.relu: batch_norm as per-channel affine relu" in plan, plan
    assert "out: add ×2 relu" in plan, plan
    assert run_case(BACKEND, case, passes="none").status == "pass"


def inception_graph():
    """Four branches into one concat: written in place, also when a conv reads the branch too (it takes the
    strided slice), but not when an elementwise op does (it needs a contiguous tensor: that branch is copied)."""
    b = GraphBuilder("inception", (2, 3, 7, 5))
    b1 = b.relu(b.conv2d(b.input, 2, 1, name="b1"), name="b1.relu")
    b2 = b.relu(b.conv2d(b.input, 4, 3, padding=1, name="b2"), name="b2.relu")
    b3 = b.max_pool2d(b.input, 3, 1, 1, ceil_mode=True, name="b3")
    b4 = b.relu(b.conv2d(b.input, 3, 1, name="b4"), name="b4.relu")
    cat = b.concat([b1, b2, b3, b4], name="cat")
    side = b.add(b.conv2d(b1, 12, 3, padding=1, name="side1"), b.conv2d(b.tanh(b4, name="side4.tanh"), 12, 1,
                                                                        name="side4"), name="side")
    return b.build(b.add(b.conv2d(cat, 12, 1, name="head"), side, name="out"))


@needs_backend
def test_concat_inputs_are_written_in_place():
    case, exe = compile_case(inception_graph())
    plan = exe.report.details.plan
    assert "cat: concat axis 1 ×4 (3 written in place, 1 copied)" in plan, plan
    assert any(line.startswith("b1.relu:") and line.endswith("→ into cat[0]") for line in plan), plan
    assert any(line.startswith("b2.relu:") and line.endswith("→ into cat[1]") for line in plan), plan
    assert any(line.startswith("b3:") and line.endswith("→ into cat[2]") for line in plan), plan
    assert run_case(BACKEND, case).status == "pass"


def dense_block_graph(layers: int = 3):
    """DenseNet's pattern: each layer reads the concat of the block input and every earlier layer."""
    b = GraphBuilder("dense", (2, 3, 7, 5))
    features = [b.max_pool2d(b.input, 3, 1, 1, name="stem")]
    for i in range(layers):
        x = features[0] if i == 0 else b.concat(features, name=f"cat{i}")
        x = b.relu(b.batch_norm(x, name=f"norm{i}"), name=f"relu{i}")
        features.append(b.conv2d(x, 2, 3, padding=1, bias=False, name=f"conv{i}"))
    return b.build(b.batch_norm(b.concat(features, name="block"), name="norm_out"))


@needs_backend
def test_dense_block_concats_are_views_of_the_block_output():
    case, exe = compile_case(dense_block_graph())
    plan = exe.report.details.plan
    assert "cat1: concat as a view of block[0:2] (no launch)" in plan, plan
    assert "cat2: concat as a view of block[0:3] (no launch)" in plan, plan
    assert "block: concat axis 1 ×4 (4 written in place, 0 copied)" in plan, plan
    assert sum(": concat axis" in line for line in plan) == 1
    assert run_case(BACKEND, case).status == "pass"


@needs_backend
def test_the_concat_layout_is_decided_from_the_graph_before_lowering():
    """`layout_concats` reads only the graph and which op's launch writes each value; the plan is built from
    it, and a value the reference computes (a fresh array) is copied, so no concat holding it is a view."""
    from convbench.backends.triton.plan import layout_concats

    graph = dense_block_graph()
    writers = {n.name: n.op for n in graph.nodes}
    layout = layout_concats(graph, writers)
    assert layout.into == {"stem": ("block", 0), "conv0": ("block", 1), "conv1": ("block", 2), "conv2": ("block", 3)}
    assert layout.views == {"cat1": ("block", 0, 2), "cat2": ("block", 0, 3)}
    assert layout.in_place("block", graph.node_by_name["block"].inputs) == (True, True, True, True)
    assert layout.shapes["block"] == ((2, 9, 7, 5), 1, (3, 2, 2, 2))
    del writers["conv1"]
    layout = layout_concats(graph, writers)
    assert "conv1" not in layout.into and layout.views == {"cat1": ("block", 0, 2)}
    _, exe = compile_case(graph)
    assert exe.artifact.layout.views == {"cat1": ("block", 0, 2), "cat2": ("block", 0, 3)}
    assert [s.into for s in exe.artifact.steps if s.into] == [("block", k) for k in range(4)]


def classifier_graph(pooled: int):
    """VGG's head below its design size: features end ``pooled``×``pooled``, the adaptive pool makes 6×6."""
    b = GraphBuilder("head", (2, 3, 2 * pooled, 2 * pooled))
    x = b.max_pool2d(b.relu(b.conv2d(b.input, 5, 3, padding=1, name="conv"), name="relu"), 2, 2, name="pool")
    x = b.flatten(b.adaptive_avg_pool2d(x, 6, name="avgpool"), name="flatten")
    return b.build(b.linear(b.relu(b.linear(x, 7, name="fc1"), name="fc1.relu"), 3, name="fc2"))


@needs_backend
def test_a_replicating_pool_folds_into_the_linear():
    case, exe = compile_case(classifier_graph(1))  # 1×1 → 6×6: a copy, folded (K 180 → 5)
    plan = exe.report.details.plan
    assert "fc1.relu: linear 5→7 +bias relu  [fc1, fc1.relu]  (avgpool 1×1→6×6 (a copy) folded into the weight)" in plan
    assert not any("adaptive_avg_pool2d" in line for line in plan), plan
    assert run_case(BACKEND, case).status == "pass"
    case, exe = compile_case(classifier_graph(4))  # 4×4 → 6×6 averages overlapping windows: kept
    assert any(line.startswith("avgpool: adaptive_avg_pool2d") for line in exe.report.details.plan)
    assert run_case(BACKEND, case).status == "pass"


# -- options, errors, availability ------------------------------------------------------------------------------
@needs_backend
def test_report_records_mode_dtype_and_tf32():
    case, exe = compile_case(basic_block_graph(), tf32=True)
    report = exe.report
    assert report.accuracy_dtype == "tf32" and report.dtype == "float32" and report.options.tf32
    assert report.details.mode in ("interpreter", "cuda") and report.pipeline["pipeline"] == "default"
    assert report.backend == "triton" and report.compile_s > 0 and report.details.nodes == len(case.graph.nodes)
    assert list(report.to_dict()["details"]["plan"]) == exe.artifact.lines() == list(report.details.plan)
    _, plain = compile_case(basic_block_graph())
    assert plain.report.accuracy_dtype == "float32" and not plain.report.options.tf32
    y = exe(*case.input_list())
    assert y.dtype == np.float32 and y.shape == case.reference[0].shape


@needs_backend
def test_bad_options_and_inputs_are_one_clear_error():
    case, exe = compile_case(basic_block_graph())
    with pytest.raises(BackendError, match=r"unknown option\(s\) \['channels_last'\]"):
        BACKEND.compile(case.graph, case.params, channels_last=True)
    with pytest.raises(BackendError, match="dtype 'float64' is not supported"):
        BACKEND.compile(case.graph, case.params, dtype="float64")
    with pytest.raises(BackendError, match=r"must have shape \(2, 3, 9, 7\)"):
        exe(np.zeros((2, 3, 7, 9), np.float32))
    with pytest.raises(BackendError, match="parameter"):
        BACKEND.compile(case.graph, {k: v for k, v in case.params.items() if k != "a.bn.weight"})


@needs_backend
def test_bfloat16_only_on_gpu():
    from convbench.kernels.triton import runtime

    assert ("bfloat16" in BACKEND.dtypes) == (not runtime.INTERPRET)
    if runtime.INTERPRET:
        case = make_case("block", basic_block_graph())
        assert run_case(BACKEND, case, "bfloat16").status == "skip"


@needs_backend
def test_unsupported_node_needs_an_explicit_fallback(monkeypatch):
    from convbench.backends.triton import lower as triton_lower

    monkeypatch.delitem(triton_lower.LOWERINGS, "max_pool2d")
    case = make_case("inception", inception_graph())
    with pytest.raises(UnsupportedNodeError, match=r"'b3' \(max_pool2d\)"):
        BACKEND.compile(case.graph, case.params)
    exe = BACKEND.compile(case.graph, case.params, fallback="numpy")
    assert exe.fallback_nodes == ("b3",)
    assert "b3: max_pool2d on the NumPy reference (fallback)" in exe.report.details.plan
    assert run_case(BACKEND, case, fallback="numpy").status == "pass"


def test_without_triton_it_says_why_and_nothing_breaks(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "triton" else real(name, *a))
    ok, why = BACKEND.available()
    assert not ok and "triton is not installed" in why
    assert not BACKEND.supports(basic_block_graph().nodes[0])
    with pytest.raises(BackendUnavailableError, match="triton is not installed"):
        BACKEND.compile(basic_block_graph(), {})
    assert run_case(BACKEND, make_case("block", basic_block_graph())).status == "skip"


def test_the_table_loads_where_torch_and_triton_cannot_be_imported():
    """Coverage and ``supports`` read the lowering table on machines that cannot run the kernels."""
    code = ("import importlib.util, sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('torch', 'triton'): raise ImportError('no ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "real = importlib.util.find_spec\n"
            "importlib.util.find_spec = lambda n, *a: None if n in ('torch', 'triton') else real(n, *a)\n"
            "from convbench.backends.triton import BACKEND\n"
            "from convbench.testing.coverage import coverage_problems\n"
            "print(BACKEND.available()[0], coverage_problems('triton'), len(BACKEND.lowered_ops()))\n"
            "print('torch' in sys.modules or 'triton' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    from convbench.ir import ops

    lowered = len(set(ops.names()) - set(BACKEND.gaps))  # every op but its declared gaps (train-step ops, int8 QDQ)
    assert out.stdout.splitlines() == [f"False [] {lowered}", "False"], out.stdout + out.stderr


@needs_backend
def test_triton_imported_before_the_mode_was_chosen_is_reported():
    """torch.compile imports triton; if that happens before this backend chose the interpreter, triton's own jit
    helpers cannot run interpreted, and the backend must say so instead of failing inside a kernel."""
    from convbench.kernels.triton import runtime

    if not runtime.INTERPRET:
        pytest.skip("only the interpreter depends on the import order")
    code = ("import torch._dynamo; from convbench.backends.triton import BACKEND; "
            "ok, why = BACKEND.available(); print(ok); print(why)")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.stdout.splitlines()[:1] == ["False"], out.stdout + out.stderr
    assert "imported before TRITON_INTERPRET=1 was set" in out.stdout
