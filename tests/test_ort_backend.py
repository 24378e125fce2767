"""The onnxruntime backend: the conformance suite (ops, zoo at small sizes, fuzzing), the explicit fallback,
options and errors. Every result is judged against the NumPy float64 reference by `backends.correctness`."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import convbench as cb
from convbench.backends.base import BackendError, UnsupportedDtypeError, UnsupportedNodeError
from convbench.backends.correctness import compare
from convbench.ir.builder import GraphBuilder
from convbench.ir.train import training_gaps
from convbench.testing import conformance_params
from convbench.testing.fuzz import differential_test

pytest.importorskip("onnxruntime")
ORT = cb.backends.get("onnxruntime")



@pytest.mark.parametrize("item", conformance_params("onnxruntime", "ops", threads=1))
def test_ops(item):
    item.check()


# The zoo at its small sizes. The VGG family is marked slow: 130 M parameters make each case 10-20 s on 2 cores
# (the float64 reference of the classifier, and ORT loading half a gigabyte of initializers).
SLOW_FAMILIES = {"vgg"}
FAST = [m for m in cb.models.names() if cb.models.spec(m).family not in SLOW_FAMILIES]
SLOW = [m for m in cb.models.names() if cb.models.spec(m).family in SLOW_FAMILIES]


@pytest.mark.parametrize("item", conformance_params("onnxruntime", "models", models=FAST, threads=1))
def test_models(item):
    item.check()


@pytest.mark.slow
@pytest.mark.parametrize("item", conformance_params("onnxruntime", "models", models=SLOW, threads=1))
def test_models_slow(item):
    item.check()


test_fuzz = differential_test("onnxruntime", max_examples=60)


def graph_with_even_lrn():
    b = GraphBuilder("even_lrn", (2, 6, 7, 5))
    x = b.conv2d(b.input, 4, 3, padding=1, name="conv")
    x = b.lrn(x, size=4, name="lrn4")
    x = b.relu(b.conv2d(x, 3, 1, name="proj"), name="relu")
    return b.build(x)


def test_supports_is_the_exporters_reach():
    g = graph_with_even_lrn()
    assert [ORT.supports(n) for n in g.nodes] == [True, False, True, True]


def test_the_lowering_table_is_the_export_table_and_answers_without_onnx():
    from convbench.ir.onnx_export import EMITTERS

    assert ORT.lowered_ops() == frozenset(EMITTERS) and ORT.gaps == training_gaps()
    code = ("import sys; sys.modules['onnx'] = sys.modules['onnxruntime'] = None\n"  # imports now fail
            "from convbench.backends import get\n"
            "ort = get('onnxruntime'); print(ort.available()[0]); print(','.join(sorted(ort.lowered_ops())))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    ok, table = out.splitlines()[:2]
    assert ok == "False" and table.split(",") == sorted(EMITTERS)


def test_unsupported_node_is_an_error_naming_it():
    g = graph_with_even_lrn()
    with pytest.raises(UnsupportedNodeError, match=r"'lrn4' \(lrn\)"):
        ORT.compile(g, cb.models.init_params(g, 0))


def test_fallback_runs_the_rest_on_ort_sessions_and_says_which_nodes_fell_back():
    g = graph_with_even_lrn()
    params = cb.models.init_params(g, 0)
    x = np.random.default_rng(1).standard_normal((2, 6, 7, 5)).astype(np.float32)
    exe = ORT.compile(g, params, fallback="numpy", threads=1)
    assert exe.fallback_nodes == ("lrn4",)
    assert exe.report.details.sessions == len(exe.artifact) == 2  # conv before the LRN, proj + relu after it
    ref = cb.backends.get("numpy").compile(g, params, dtype="float64")(x)
    assert compare(exe(x), ref, "float32").ok


def test_two_outputs_come_back_as_a_tuple():
    from convbench.models.inception import inception_v3

    g = inception_v3(batch=1, image_size=299, num_classes=7, aux_logits=True)
    params = cb.models.init_params(g, 0, calibrate=False)
    x = np.random.default_rng(3).standard_normal((1, 3, 299, 299)).astype(np.float32)
    logits, aux = ORT.compile(g, params)(x)
    assert logits.shape == aux.shape == (1, 7)


def test_options_are_recorded_and_checked():
    g = graph_with_even_lrn()
    params = cb.models.init_params(g, 0)
    exe = ORT.compile(g, params, fallback="numpy", threads=1, spinning=True, optimization="basic")
    r = exe.report
    assert (r.dtype, r.threads, r.details.spinning, r.details.optimization) == ("float32", 1, True, "basic")
    assert r.details.onnxruntime == ORT.version() and r.options.spinning is True
    # what the CLI passes (-b onnxruntime:threads=1,spinning=false) is coerced against OrtOptions
    assert ORT.compile(g, params, fallback="numpy", threads="1", spinning="false").report.details.spinning is False
    with pytest.raises(BackendError, match=r"^onnxruntime backend: unknown option\(s\) \['channels_last'\]; known: "):
        ORT.compile(g, params, channels_last=True)
    with pytest.raises(BackendError, match=r"^onnxruntime backend: option threads must be int \| None, got 'abc'$"):
        ORT.compile(g, params, threads="abc")
    with pytest.raises(UnsupportedDtypeError, match=r"^onnxruntime backend: dtype 'bfloat16' is not supported"):
        ORT.compile(g, params, dtype="bfloat16")
    with pytest.raises(BackendError, match=r"^onnxruntime backend: option optimization must be 'all' \| "
                                           r"'extended' \| 'basic' \| 'disable', got 'max'$"):
        ORT.compile(g, params, optimization="max")
    with pytest.raises(BackendError, match="unknown fallback"):
        ORT.compile(g, params, fallback="torch")


def test_default_threads_are_the_physical_cores():
    import psutil

    g = graph_with_even_lrn()
    exe = ORT.compile(g, cb.models.init_params(g, 0), fallback="numpy")
    assert exe.report.options.threads is None  # asked for the default; the report records what ran
    assert exe.report.threads == (psutil.cpu_count(logical=False) or psutil.cpu_count())


def test_available_and_registered():
    ok, reason = ORT.available()
    assert ok and "onnxruntime" in reason
    assert "onnxruntime" in cb.backends.names()
    assert ORT.device() == "cpu" and ORT.version()
