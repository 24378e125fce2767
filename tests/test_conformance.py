"""The conformance suite itself: the corpus covers what it claims, and run_case tells pass, fail, skip and error
apart with messages a backend developer can act on. The NumPy backend in float32 is the backend under test."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from convbench.backends.base import Executable
from convbench.backends.correctness import tolerance
from convbench.backends.numpy_ref import BACKEND as NUMPY
from convbench.backends.registry import UnknownBackendError
from convbench.ir import ops as ir_ops
from convbench.testing import Expectations, conformance_params, model_cases, op_cases, run_case
from convbench.testing.cases import changed_attrs
from convbench.testing.train_corpus import train_cases

CASES = op_cases() + train_cases()  # the inference corpus and the train-step ops' (convbench/testing/train_corpus.py)


def test_corpus_covers_every_registered_op():
    covered = {op for c in CASES for op in c.ops}
    assert set(ir_ops.names()) - covered == set(), "ops without a conformance case"


# attributes that mean nothing for the op: max_pool2d and avg_pool2d share PoolAttrs, but average pooling has
# no dilation (its shape rule rejects one) and max pooling no divisor to count padding in
FIXED = {"avg_pool2d": {"dilation"}, "max_pool2d": {"count_include_pad"}}


def test_corpus_sets_every_attribute_away_from_its_default():
    """Each attribute of each op is exercised with a non-default value by at least one case."""
    seen: dict[str, set[str]] = {}
    for c in CASES:
        for node in c.graph.nodes:
            seen.setdefault(node.op, set()).update(a.split("=")[0] for a in changed_attrs(node.attrs))
    for op in ir_ops.names():
        attrs_type = ir_ops.get(op).attrs_type
        if not dataclasses.is_dataclass(attrs_type):
            continue
        missing = {f.name for f in dataclasses.fields(attrs_type)} - seen.get(op, set()) - FIXED.get(op, set())
        assert not missing, f"{op}: attribute(s) {sorted(missing)} never differ from their default"


def test_rank4_inputs_have_distinct_dimensions_except_1x1_edge_cases():
    for c in CASES:
        for name, t in c.graph.inputs.items():
            if t.rank == 4 and not any(tag in c.id for tag in ("in1x1", "concat", "regress-")):
                assert len(set(t.shape)) == 4, f"{c.id}: input {name} {t.shape} repeats a dimension"


def test_edge_cases_are_present():
    ids = {c.id for c in CASES}
    for fragment in ("in1x1", "kernel-eq-input", "stride-gt-kernel", "ceil-drop-last", "depthwise", "-d2-g3"):
        assert any(fragment in i for i in ids), fragment
    # the drop-last case really exercises torch's rule: ceil would give 4 rows, the last one starting in padding
    drop = next(c for c in CASES if c.id == "max_pool2d-k2-s2-p1-ceil-drop-last")
    assert drop.graph.types[drop.graph.outputs[0]].shape == (2, 3, 3, 3)


def test_cases_are_deterministic_and_float32():
    again = {c.id: c for c in op_cases(["conv2d"])}
    for c in CASES:
        if c.id in again:
            for k, v in c.inputs.items():
                assert v.dtype == np.float32
                np.testing.assert_array_equal(v, again[c.id].inputs[k])
            for k, v in c.params.items():
                np.testing.assert_array_equal(v, again[c.id].params[k])


def test_op_filter_keeps_cases_using_only_those_ops():
    convs = op_cases(["conv2d", "relu"])
    assert convs and all(c.ops <= {"conv2d", "relu"} for c in convs)
    assert any(c.id.startswith("pattern-") for c in op_cases(["conv2d", "batch_norm"]))
    with pytest.raises(KeyError, match="known ops"):
        op_cases(["conv3d"])


@pytest.mark.parametrize("item", conformance_params("numpy", "ops"))
def test_numpy_float32_ops(item):
    item.check()


@pytest.mark.parametrize("item", conformance_params("numpy", "models", models=["lenet5", "resnet18"]))
def test_numpy_float32_models(item):
    r = item.check()
    assert r.agreement.top1 == 1.0


# -- run_case verdicts --------------------------------------------------------------------------------------

class Wrong:
    """A backend wrapping numpy whose outputs are altered by ``mutate``."""

    def __init__(self, name="wrong", mutate=lambda y: y, available=(True, ""), supports=lambda n: True):
        self.name, self._mutate, self._available, self._supports = name, mutate, available, supports
        self.dtypes = ("float32",)

    def available(self):
        return self._available

    def supports(self, node):
        return self._supports(node)

    def compile(self, graph, params, dtype="float32", **options):
        exe = NUMPY.compile(graph, params, dtype=dtype)
        return Executable(graph, self.name, lambda xs: [self._mutate(y) for y in exe.run(xs)])


CONV = next(c for c in CASES if c.id == "conv2d-k3-s2-p1-d2-g3")


def test_pass_records_agreement():
    r = run_case("numpy", CONV)
    assert r.status == "pass" and r.ok and r.agreement.max_abs < 1e-5 and r.message == ""


def test_fail_message_names_case_op_shapes_and_tolerance():
    r = run_case(Wrong(mutate=lambda y: y * 1.01), CONV)
    assert r.status == "fail" and not r.agreement.ok
    for text in ("conv2d-k3-s2-p1-d2-g3", "wrong", "float32", "conv2d x(2,6,9,8) weight(9,2,3,3)", "→ (2,9,4,3)",
                 "dilation=(2, 2)", "groups=3", f"rtol {tolerance('float32').rtol:g}", "max abs error"):
        assert text in r.message, text


def _bump(y: np.ndarray, index: tuple[int, ...]) -> np.ndarray:
    y = y.copy()
    y[index] += 1.0
    return y


def test_fail_message_says_where_the_worst_element_is_and_whether_it_is_on_the_border():
    # CONV's output is (2, 9, 4, 3): (1, 5, 2, 1) is interior, (0, 3, 3, 1) lies in the last row
    interior = run_case(Wrong(mutate=lambda y: _bump(y, (1, 5, 2, 1))), CONV)
    assert interior.agreement.worst_index == (1, 5, 2, 1) and interior.agreement.on_border is False
    assert "at index (1, 5, 2, 1) (interior)" in interior.message
    border = run_case(Wrong(mutate=lambda y: _bump(y, (0, 3, 3, 1))), CONV)
    assert border.agreement.worst_index == (0, 3, 3, 1) and border.agreement.on_border is True
    assert "at index (0, 3, 3, 1) (on the border)" in border.message


def test_wrong_shape_and_wrong_output_count_fail():
    assert "shape" in run_case(Wrong(mutate=lambda y: y[:1]), CONV).message
    r = run_case(Wrong(mutate=lambda y: y), next(c for c in CASES if c.id == "pattern-two-outputs"))
    assert r.status == "pass"
    nan = run_case(Wrong(mutate=lambda y: y * np.nan), CONV)
    assert nan.status == "fail" and "non-finite" in nan.message


def test_skip_reasons():
    r = run_case(Wrong(available=(False, "needs a GPU")), CONV)
    assert r.status == "skip" and "needs a GPU" in r.message
    r = run_case(Wrong(supports=lambda n: n.op != "conv2d"), CONV)
    assert r.status == "skip" and "'conv2d' (conv2d)" in r.message
    r = run_case(Wrong(), CONV, dtype="bfloat16")
    assert r.status == "skip" and "bfloat16" in r.message


def test_errors_are_results_not_exceptions():
    class Broken(Wrong):
        def compile(self, graph, params, dtype="float32", **options):
            raise RuntimeError("kernel exploded")

    r = run_case(Broken(), CONV)
    assert r.status == "error" and "compile failed: RuntimeError: kernel exploded" in r.message
    assert "conv2d x(2,6,9,8)" in r.message
    with pytest.raises(UnknownBackendError, match="known backends"):
        run_case("nope", CONV)


def test_expectations_marks_and_stale_patterns():
    expect = Expectations(exclude={"lrn-*": "no LRN"}, xfail={"conv2d-*-d2-*": "dilation bug"})
    params = {p.id: p for p in conformance_params("numpy", "ops", expect)}
    assert params["lrn-n5-2x7x5x4"].marks[0].kwargs["reason"] == "excluded: no LRN"
    mark = params["conv2d-k3-s2-p1-d2-g3"].marks[0]
    assert mark.name == "xfail" and mark.kwargs == {"reason": "dilation bug", "strict": True}
    assert not params["conv2d-k3-s1-p0-d1-g1"].marks
    with pytest.raises(ValueError, match="match no conformance case"):
        conformance_params("numpy", "ops", Expectations(xfail={"conv3d-*": "typo"}))


def test_unavailable_backend_skips_every_param(monkeypatch):
    monkeypatch.setattr(NUMPY, "available", lambda: (False, "numpy went missing"))
    params = conformance_params("numpy", "ops")
    assert all(p.marks[0].name == "skip" and "numpy went missing" in p.marks[0].kwargs["reason"] for p in params)


def test_model_case_ids_and_sizes():
    small = {c.id for c in model_cases("small")}
    assert "resnet50-b2-s32" in small and "lenet5-b2-s32" in small
    assert {c.id for c in model_cases("full", ["resnet50"])} == {"resnet50-b1-s224"}
    with pytest.raises(ValueError):
        model_cases("medium")
