"""Classification metrics (`correctness.accuracy`) on hand-computable logits; the input kind in case ids and
records (random ids unchanged, real ones distinct, older records still load); the report's accuracy column, its
accuracy-against-speed plot and the peer-engine kind."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from _bench_records import record

from convbench.backends.correctness import Accuracy, accuracy
from convbench.bench.errors import BenchError
from convbench.bench.record import Record, check_record
from convbench.bench.report import backend_kind, load, write_report
from convbench.bench.schema import Case, SchemaError


def test_identical_logits_agree_fully_with_zero_kl_and_unit_cosine():
    y = np.array([[3.0, 1.0, 0.0, -1.0, -2.0, -3.0], [0.0, 5.0, 1.0, 2.0, 3.0, 4.0]])
    a = accuracy(y, y, [{0}, {2}])
    assert a == Accuracy(n=2, top1=0.5, top5=1.0, top1_agreement=1.0, top5_overlap=1.0, kl=0.0, cosine=1.0)


def test_top1_and_top5_against_label_sets():
    y = np.array([[0.0, 1, 2, 3, 4, 5, 6],    # top-1 6, top-5 {6,5,4,3,2}
                  [6.0, 5, 4, 3, 2, 1, 0]])   # top-1 0, top-5 {0,1,2,3,4}
    a = accuracy(y, y, [{6, 0}, {5, 6}])
    assert a.top1 == 0.5  # row 0 right; row 1 says 0, which is not acceptable
    assert a.top5 == 0.5  # row 1's acceptable classes 5 and 6 are both outside its top 5
    assert accuracy(y, y).top1 is None and accuracy(y, y).top5 is None


def test_agreement_overlap_kl_and_cosine_by_hand():
    ref = np.array([[math.log(3.0), 0.0]])  # softmax (3/4, 1/4)
    y = np.array([[0.0, math.log(3.0)]])  # softmax (1/4, 3/4)
    a = accuracy(y, ref)
    assert a.top1_agreement == 0.0
    assert a.top5_overlap == 1.0  # two classes: k = 2, both top-2 sets are {0, 1}
    # KL(p ‖ q) = 3/4 log 3 + 1/4 log(1/3) = log(3) / 2
    assert a.kl == pytest.approx(math.log(3.0) / 2, rel=1e-12)
    assert a.cosine == pytest.approx(0.0, abs=1e-15)  # orthogonal logit vectors
    assert accuracy(-ref, ref).cosine == pytest.approx(-1.0)


def test_kl_is_shift_invariant_and_overlap_counts_shared_top5():
    ref = np.arange(10.0)[None]  # top-5 {9,8,7,6,5}
    y = ref.copy()
    y[0, [5, 6]] = -1.0  # top-5 now {9,8,7,4,3}: three shared
    a = accuracy(y, ref)
    assert a.top5_overlap == pytest.approx(3 / 5)
    assert a.top1_agreement == 1.0
    assert accuracy(ref + 100.0, ref).kl == pytest.approx(0.0, abs=1e-12)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="shaped like"):
        accuracy(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="finite"):
        accuracy(np.array([[np.nan, 0.0]]), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="label sets"):
        accuracy(np.zeros((2, 3)), np.zeros((2, 3)), [{0}])


def test_the_case_id_carries_real_input_and_random_ids_are_unchanged():
    random = Case("efficientnet_lite0", 224, "torch", 5, "float32", 2)
    real = Case("efficientnet_lite0", 224, "torch", 5, "float32", 2, input="real")
    assert random.id == "efficientnet_lite0@224/torch/b5/float32/t2"
    assert real.id == random.id + "/real" and real != random
    assert "input" not in random.to_dict() and real.to_dict()["input"] == "real"
    with pytest.raises(BenchError, match="input must be one of"):
        Case("lenet5", 32, "numpy", 1, "float32", 1, input="photos")


ACC = {"n": 5, "top1": 0.8, "top5": 1.0, "top1_agreement": 1.0, "top5_overlap": 0.96, "kl": 3e-9, "cosine": 1.0}


def _real(backend: str, median: float, **acc) -> dict:
    r = record("efficientnet_lite0", backend, batch=5, median=median, image_size=224)
    case = {**r["case"], "input": "real"}
    return {**r, "case": case, "case_id": Case(**case).id, "accuracy": {**ACC, **acc}}


def test_records_with_and_without_accuracy_load_and_accuracy_is_typed():
    old = check_record(record(), "f:1")
    assert old.accuracy is None and old.case.input == "random"
    new = check_record(_real("torch", 1e-3), "f:2")
    assert new.accuracy == ACC and new.case.input == "real" and new.case_id.endswith("/real")
    assert Record.from_dict(new.to_dict()) == new
    with pytest.raises(SchemaError, match=r"accuracy\.kl"):
        check_record(_real("torch", 1e-3, kl="small"), "f:3")
    with pytest.raises(SchemaError, match=r"case\.input"):
        check_record({**record(), "case": {**record()["case"], "input": "photos"}}, "f:4")


def test_report_shows_accuracy_kind_and_the_accuracy_plot(tmp_path):
    path = tmp_path / "r.jsonl"
    rows = [_real("numpy", 2e-2), _real("onnxruntime", 2e-3, kl=1e-7, top1_agreement=0.8), record()]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    df, _ = load([path])
    assert set(df.input) == {"random", "real"}
    assert backend_kind("onnxruntime") == backend_kind("openvino") == "peer engine"
    assert backend_kind("numpy") == backend_kind("torch") == "convbench"
    files = write_report([path], tmp_path / "out")
    assert "accuracy.png" in files.written
    md = (tmp_path / "out" / "report.md").read_text()
    assert "top-1 agree" in md and "KL" in md and "peer engine" in md and "80%" in md
    assert "efficientnet_lite0@224 (real input)" in md
    # without accuracy, no accuracy plot and no accuracy columns
    only = tmp_path / "random.jsonl"
    only.write_text(json.dumps(record()) + "\n")
    plain = write_report([only], tmp_path / "out")
    assert "accuracy.png" not in plain.written and "accuracy.png" in plain.removed
    assert "top-1 agree" not in (tmp_path / "out" / "report.md").read_text()
