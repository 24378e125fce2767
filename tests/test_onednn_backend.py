"""The oneDNN backend: the conformance corpus and the zoo at every float precision, what its report says ran, and
its errors. Speed is a benchmark (benchmarks/cpu_peers.py, benchmarks/precision_matrix.py), not a test here."""

from __future__ import annotations

import numpy as np
import pytest

import convbench as cb
from convbench.backends import onednn
from convbench.backends.base import BackendError
from convbench.backends.correctness import compare
from convbench.backends.onednn import capi, lowering, rules
from convbench.ir.builder import GraphBuilder
from convbench.testing import conformance_params, make_case, op_cases, run_case
from convbench.testing.fuzz import differential_test

BACKEND = onednn.BACKEND
OK, WHY = BACKEND.available()
needs_onednn = pytest.mark.skipif(not OK, reason=WHY)


def _runs(dtype: str) -> None:
    """Skip where this CPU has no ``dtype`` kernels in oneDNN 3.2 (the backend's own probe says so)."""
    try:
        onednn._probe(onednn._engine(), dtype)
    except onednn.UnsupportedDtypeError as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("item", conformance_params("onednn", "ops", threads=1))
def test_ops(item):
    item.check()


@pytest.mark.parametrize("item", conformance_params("onednn", "ops", dtype="bfloat16", threads=1))
def test_ops_bfloat16(item):
    item.check()


# a CPU without AVX-512-FP16 has no float16 convolution in oneDNN 3.2: UnsupportedDtypeError, so these skip there
@pytest.mark.parametrize("item", conformance_params("onednn", "ops", dtype="float16", threads=1))
def test_ops_float16(item):
    item.check()


SLOW = [m for m in cb.models.names() if cb.models.spec(m).family == "vgg" or m == "resnet152"]
FAST = [m for m in cb.models.names() if m not in SLOW]
FULL = ["resnet50", "googlenet", "mobilenet_v2", "efficientnet_lite0"]


@pytest.mark.parametrize("item", conformance_params("onednn", "models", models=FAST, threads=1))
def test_models(item):
    assert item.check().agreement.top1 == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("item", conformance_params("onednn", "models", models=SLOW, threads=1))
def test_models_slow(item):
    assert item.check().agreement.top1 == 1.0


@pytest.mark.parametrize("item", conformance_params("onednn", "models", size="full", models=FULL, threads=1))
def test_models_full_size(item):
    assert item.check().agreement.top1 == 1.0


# as on torch and OpenVINO: on random weights bf16's max-error bound holds for the shallow nets only; deep nets'
# bf16 is judged on the real network and photographs (tests/test_precision_real.py)
@pytest.mark.parametrize("item", conformance_params("onednn", "models", models=["lenet5", "squeezenet1_0", "resnet18"],
                                                    dtype="bfloat16", threads=1))
def test_models_bfloat16(item):
    item.check()


test_fuzz = differential_test("onednn", max_examples=60, threads=1)


# -- what the program is ------------------------------------------------------------------------------------------
def _residual_block() -> tuple[cb.ir.Graph, dict[str, np.ndarray]]:
    """conv → BN → relu → conv → BN → + input → relu at distinct dims; the default pipeline folds and fuses it."""
    b = GraphBuilder("block", (2, 6, 9, 7))
    y = b.relu(b.batch_norm(b.conv2d(b.input, 6, 3, padding=1, name="c1"), name="bn1"), name="r1")
    y = b.batch_norm(b.conv2d(y, 6, (3, 1), padding=(1, 0), bias=False, name="c2"), name="bn2")
    g = b.build(b.relu(b.add(y, b.input, name="sum"), name="out"))
    return g, cb.models.init_params(g, seed=3)


@needs_onednn
def test_the_default_pipeline_makes_each_conv_one_primitive_with_its_epilogue():
    """Folded BN, bias, residual add and relu run inside the two convolutions: 2 conv primitives, plus the input's
    and the output's reorders, and nothing else; with passes='none' every op is a primitive of its own."""
    g, params = _residual_block()
    x = np.random.default_rng(0).standard_normal((2, 6, 9, 7)).astype(np.float32)
    ref = cb.backends.get("numpy").compile(g, params, dtype="float64")(x.astype(np.float64))
    fused = BACKEND.compile(g, params, threads=1)
    unfused = BACKEND.compile(g, params, threads=1, passes="none")
    assert fused.report.details.primitives == 4
    assert unfused.report.details.primitives == 2 + 7  # conv, bn, relu, conv, bn, add, relu
    for exe in (fused, unfused):
        agreement = compare(exe(x), ref, "float32")
        assert agreement.ok and agreement.max_rel < 1e-5, agreement
    assert sum(v for k, v in fused.report.details.implementations.items() if "conv" in k) == 2
    # c2 adds the residual in place (a sum post-op over the block's input, read last there): two activation
    # buffers, not three
    assert fused.report.details.activation_bytes == 2 * (2 * 6 * 9 * 7 * 4), fused.report.details


@needs_onednn
def test_activation_buffers_are_reused_by_liveness():
    """ResNet-18's activations at batch 2 sum to 21.5 MB, its stem's output (6.4 MB) with the input and the pooled
    stem live at once to 9.2 MB: the program's buffers hold about the latter (10.8 MB measured), not the sum."""
    g = cb.models.build("resnet18", batch=2)
    params = cb.models.init_params(g, seed=0)
    exe = BACKEND.compile(g, params, threads=1)
    every = sum(g.types[n.name].numel * 4 for n in exe.graph.nodes)
    largest = max(g.types[n.name].numel * 4 for n in exe.graph.nodes)
    assert largest < exe.report.details.activation_bytes < every / 1.8, (exe.report.details.activation_bytes, every)


@needs_onednn
def test_bfloat16_runs_in_bfloat16_and_its_error_is_bfloat16_sized():
    _runs("bfloat16")
    g, params = _residual_block()
    x = np.random.default_rng(1).standard_normal((2, 6, 9, 7)).astype(np.float32)
    ref = cb.backends.get("numpy").compile(g, params, dtype="float64")(x.astype(np.float64))
    f32 = compare(BACKEND.compile(g, params, threads=1)(x), ref, "float32")
    exe = BACKEND.compile(g, params, threads=1, dtype="bfloat16")
    bf16 = compare(exe(x), ref, "bfloat16")
    assert exe.report.accuracy_dtype == "bfloat16" and bf16.ok
    assert bf16.max_rel > 30 * f32.max_rel  # not a float32 run under a bf16 label


@needs_onednn
def test_a_pad_keeps_its_fill_across_calls():
    """pad writes its input into a buffer filled once: a second call with other data leaves the border as it was."""
    b = GraphBuilder("pad", (2, 3, 5, 4))
    g = b.build(b.relu(b.pad(b.input, (1, 2, 0, 3), value=-7.0, name="p"), name="r"))
    exe = BACKEND.compile(g, {}, threads=1)
    rng = np.random.default_rng(2)
    for _ in range(2):
        x = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
        want = np.maximum(np.pad(x, ((0, 0), (0, 0), (1, 0), (2, 3)), constant_values=-7.0), 0)
        np.testing.assert_array_equal(exe(x), want)


@needs_onednn
@pytest.mark.parametrize("value", [0.0, 0.5])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_zero_pad_before_a_conv_is_the_convs_own_padding(value, dtype):
    """TF "same" padding (0, 1, 0, 2) before a strided depthwise conv with its own padding 1: a zero pad becomes the
    conv's asymmetric padding (input reorder, conv, output reorder: 3 primitives), another value stays a pad."""
    b = GraphBuilder("same", (2, 6, 11, 9))
    y = b.pad(b.input, (0, 1, 0, 2), value=value, name="pad")
    g = b.build(b.relu6(b.conv2d(y, 6, (3, 5), stride=2, padding=1, groups=6, name="dw"), name="act"))
    if dtype != "float32":
        _runs(dtype)
    params = cb.models.init_params(g, seed=4)
    x = np.random.default_rng(4).standard_normal((2, 6, 11, 9)).astype(np.float32)
    ref = cb.backends.get("numpy").compile(g, params, dtype="float64")(x.astype(np.float64))
    exe = BACKEND.compile(g, params, threads=1, dtype=dtype)
    agreement = compare(exe(x), ref, dtype)
    assert agreement.ok, agreement
    assert exe.report.details.primitives == (3 if value == 0.0 else 4)
    assert ("pad" in {s.node for s in exe.artifact.steps}) == (value != 0.0)


# -- errors -------------------------------------------------------------------------------------------------------
@needs_onednn
def test_a_primitive_onednn_refuses_is_one_error_naming_the_node(monkeypatch):
    def refused(lw, node):
        lw.primitive(lambda *args: 2, what="a convolution")  # oneDNN's status 2: invalid arguments

    monkeypatch.setitem(rules.LOWERINGS, "relu", refused)
    case = next(c for c in op_cases(["relu"]))
    with pytest.raises(BackendError, match=r"^onednn backend: .*node 'relu' \(relu, inputs \(.*\)\): a convolution: "
                                           r"oneDNN says invalid arguments$"):
        BACKEND.compile(case.graph, case.params, threads=1)


def test_a_missing_library_is_a_reason_not_an_exception(monkeypatch):
    def missing():
        raise OSError(f"libdnnl.so.3 not found; {capi.INSTALL}")

    monkeypatch.setattr(capi, "load", missing)
    ok, why = onednn.OnednnBackend().available()
    assert not ok and "onednn" in why and "constraints.txt" in why


@needs_onednn
def test_conformance_regressions_stay_fixed():
    """Cases that first failed while the rules were written: clip with min > max (oneDNN's clip refuses it; torch
    gives max everywhere), and an average pool whose ceil_mode window overhangs the padding."""
    b = GraphBuilder("avg", (1, 2, 5, 6))
    g = b.build(b.avg_pool2d(b.input, 3, 2, 1, ceil_mode=True, name="p"))
    for case in [make_case("avg-ceil-overhang", g), next(c for c in op_cases(["clip"]) if "min-gt-max" in c.id)]:
        result = run_case(BACKEND, case, threads=1)
        assert result.status == "pass", result.message


def test_the_lowering_table_is_the_backends_list():
    assert BACKEND.lowered_ops() == frozenset(rules.LOWERINGS) and lowering.Lowering.rules is rules.LOWERINGS
