"""benchmarks/precision_matrix.py's summary: a cell's time next to OpenVINO's at the same precision, taken round by
round where both ran interleaved in one workload group, else as the ratio of the medians."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from _bench_records import record

from convbench.bench.record import Record
from convbench.bench.schema import Case

spec = importlib.util.spec_from_file_location("precision_matrix",
                                              Path(__file__).parents[1] / "benchmarks/precision_matrix.py")
precision_matrix = importlib.util.module_from_spec(spec)
spec.loader.exec_module(precision_matrix)


def _record(backend: str, dtype: str, rounds: list[float] | None, median: float) -> Record:
    d = record(model="resnet50", backend=backend, median=median, image_size=224)
    case = Case("resnet50", 224, backend, 1, dtype, 2)
    d.update(case_id=case.id, case=case.to_dict())
    if rounds is not None:
        d["interleave"] = {"group": "resnet50@224/b1/" + dtype + "/t2", "rounds": len(rounds), "calls_per_round": 5,
                           "round_medians": rounds, "round_other_cores": [0.0] * len(rounds)}
    return Record.from_dict(d)


def test_the_openvino_ratio_is_taken_round_by_round_when_both_were_interleaved():
    torch = _record("torch", "bfloat16", [0.020, 0.030, 0.016], 0.02)
    ov = _record("openvino", "bfloat16", [0.010, 0.010, 0.010], 0.01)
    # rounds 2.0, 3.0, 1.6: the median ratio with its spread, not the ratio of the medians
    assert precision_matrix.vs_openvino(torch, ov) == " 2.00ov(1.60–3.00)"
    text = precision_matrix.summary([torch, ov])
    assert "2.00ov(1.60–3.00)" in text and "resnet50 224px batch 1" in text, text
    # a sweep's records (no rounds), or two groups: the medians' ratio
    plain = _record("torch", "bfloat16", None, 0.03)
    text = precision_matrix.vs_openvino(plain, ov)
    assert "(" not in text and abs(float(text.removesuffix("ov")) - plain.median_s / ov.median_s) < 0.005, text
    other = _record("openvino", "float32", [0.01, 0.01, 0.01], 0.01)
    assert "(" not in precision_matrix.vs_openvino(torch, other)
