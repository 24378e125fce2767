"""The onnxruntime backend: the conformance suite (ops, zoo at small sizes, fuzzing), the explicit fallback,
options and errors. Every result is judged against the NumPy float64 reference by `backends.correctness`."""

from __future__ import annotations

import numpy as np
import pytest

import convbench as cb
from convbench.backends.base import BackendError, UnsupportedNodeError
from convbench.backends.correctness import compare
from convbench.ir.builder import GraphBuilder
from convbench.testing import conformance_params
from convbench.testing.fuzz import differential_test

pytest.importorskip("onnxruntime")
ORT = cb.backends.get("onnxruntime")

# One model per family and every op the zoo uses, to keep CI short: the float64 reference of VGG (120 M classifier
# weights) or ResNet-152 costs 10-30 s a case. `convbench check -m all -b onnxruntime` runs the whole zoo.
MODELS = ["lenet5", "alexnet_2012", "googlenet", "resnet18", "resnet50", "mobilenet_v2", "squeezenet1_0",
          "densenet121", "inception_v3"]


@pytest.mark.parametrize("item", conformance_params("onnxruntime", "ops", threads=1))
def test_ops(item):
    item.check()


@pytest.mark.parametrize("item", conformance_params("onnxruntime", "models", models=MODELS, threads=1))
def test_models(item):
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
    assert exe.info["sessions"] == 2  # conv before the LRN, proj + relu after it
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
    assert {k: exe.info[k] for k in ("dtype", "threads", "spinning", "optimization")} == {
        "dtype": "float32", "threads": 1, "spinning": True, "optimization": "basic"}
    with pytest.raises(BackendError, match="unknown option"):
        ORT.compile(g, params, channels_last=True)
    with pytest.raises(BackendError, match="dtype 'bfloat16' is not supported"):
        ORT.compile(g, params, dtype="bfloat16")
    with pytest.raises(BackendError, match="optimization 'max'"):
        ORT.compile(g, params, optimization="max")
    with pytest.raises(BackendError, match="unknown fallback"):
        ORT.compile(g, params, fallback="torch")


def test_default_threads_are_the_physical_cores():
    import psutil

    g = graph_with_even_lrn()
    exe = ORT.compile(g, cb.models.init_params(g, 0), fallback="numpy")
    assert exe.info["threads"] == (psutil.cpu_count(logical=False) or psutil.cpu_count())


def test_available_and_registered():
    ok, reason = ORT.available()
    assert ok and "onnxruntime" in reason
    assert "onnxruntime" in cb.backends.names()
    assert ORT.device() == "cpu" and ORT.version()
