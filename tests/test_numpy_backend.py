"""The NumPy reference backend: dtypes, freeing values, errors, agreement of float32 with float64."""

from __future__ import annotations

import numpy as np
import pytest

import convbench as cb
from convbench.backends import BackendError
from convbench.backends.correctness import compare
from convbench.ir import interpreter
from convbench.ir.builder import GraphBuilder


@pytest.fixture(scope="module")
def resnet18_small():
    g = cb.models.build("resnet18", batch=2, image_size=40)
    return g, cb.models.init_params(g)


def test_float32_agrees_with_float64(resnet18_small):
    g, p = resnet18_small
    x = np.random.default_rng(0).standard_normal((2, 3, 40, 40)).astype(np.float32)
    backend = cb.backends.get("numpy")
    y32, y64 = backend.compile(g, p)(x), backend.compile(g, p, dtype="float64")(x)
    assert y32.dtype == np.float32 and y64.dtype == np.float64
    agreement = compare(y32, y64, "float32")
    assert agreement.ok and agreement.top1 == 1.0, agreement
    assert 0 < agreement.max_rel < 1e-5


def test_values_are_freed_after_last_use(resnet18_small):
    g, _ = resnet18_small
    frees = g.frees
    freed = [v for step in frees for v in step]
    assert len(freed) == len(set(freed))
    assert set(freed) == {"input", *(n.name for n in g.nodes)} - set(g.outputs)


def test_errors_name_what_is_wrong(resnet18_small):
    g, p = resnet18_small
    backend = cb.backends.get("numpy")
    with pytest.raises(BackendError, match="dtype 'int8'"):
        backend.compile(g, p, dtype="int8")
    with pytest.raises(BackendError, match=r"parameter 'fc.weight' has shape \(3, 3\)"):
        backend.compile(g, {**p, "fc.weight": np.zeros((3, 3), np.float32)})
    with pytest.raises(BackendError, match="missing"):
        backend.compile(g, {k: v for k, v in p.items() if k != "conv1.weight"})
    with pytest.raises(BackendError, match=r"input 'input' must have shape \(2, 3, 40, 40\)"):
        backend.compile(g, p)(np.zeros((1, 3, 40, 40), np.float32))


def test_a_failing_node_is_named():
    b = GraphBuilder("g", (1, 2, 5, 4))
    g = b.build(b.relu(b.input, name="act"))
    exe = cb.backends.get("numpy").compile(g, {})
    with pytest.raises(interpreter.NodeError, match=r"node 'act' \(relu\) failed"):
        interpreter.run(g, {}, {"input": np.array(["a"], dtype=object).reshape(1, 1, 1, 1)})
    assert exe(np.ones((1, 2, 5, 4), np.float32)).shape == (1, 2, 5, 4)


def test_compare_accepts_matching_infinities_only():
    ref = np.array([[1.0, -np.inf], [2.0, 3.0]])
    assert compare(ref.astype(np.float32), ref, "float32").ok
    assert not compare(np.array([[1.0, 0.0], [2.0, 3.0]]), ref, "float32").ok
    assert not compare(np.array([[1.0, -np.inf], [np.nan, 3.0]]), ref, "float32").ok
