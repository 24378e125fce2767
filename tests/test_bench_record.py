"""The typed result record: schema 2 written, schema 1 (and every results file in reports/) still read by
``report`` and ``compare``. tests/data/sweep_v1.jsonl is nine real lines of reports/demo/sweep.jsonl, written by
convbench before the record was typed (compile.info, no compile.report)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from _bench_records import record

from convbench.bench.compare import compare_records
from convbench.bench.launch import ChildResult
from convbench.bench.record import CompileInfo, Record, load_records
from convbench.bench.runner import make_record
from convbench.bench.schema import SCHEMA_VERSION, Case, SchemaError, read_records
from convbench.cli import main

V1 = Path(__file__).with_name("data") / "sweep_v1.jsonl"
REPO = Path(__file__).resolve().parent.parent


def test_schema_1_reads_as_typed_records():
    assert SCHEMA_VERSION == 2
    records = load_records(V1)
    assert len(records) == 9 and {r.schema for r in records} == {1}
    by = {r.case_id: r for r in records}
    triton = by["lenet5@32/triton/b1/float32/t2"]
    assert isinstance(triton.case, Case) and triton.case.backend_name == "triton"
    assert isinstance(triton.compile, CompileInfo) and triton.compile.report is None
    assert triton.compile.info["launches"] == 7 and triton.compile.accuracy_dtype == "float32"
    assert triton.median_s == triton.timing["median"] and triton.correct is True
    assert triton.memory.static_param_bytes > 0 and triton.worker.pid > 0
    skipped = by["alexnet@224/triton/b8/float32/t2"]
    assert skipped.status == "timeout" and skipped.skipped and skipped.median_s is None and skipped.samples == []


def _keeps(raw: dict, written: dict) -> bool:
    """Every key and value of ``raw`` is in ``written``; what ``written`` adds is a field left empty (null, [])."""
    for k, v in written.items():
        if k not in raw:
            if v not in (None, []):
                return False
        elif isinstance(v, dict) and isinstance(raw[k], dict):
            if not _keeps(raw[k], v):
                return False
        elif v != raw[k]:
            return False
    return set(raw) <= set(written)


def test_reading_and_writing_back_loses_nothing():
    for line in V1.read_text().splitlines():
        d = json.loads(line)
        assert _keeps(d, Record.from_dict(d).to_dict())
    assert not _keeps({"a": 1}, {"a": 2}) and not _keeps({"a": 1}, {}) and not _keeps({}, {"a": 0})


@pytest.mark.parametrize("path", sorted(p.relative_to(REPO).as_posix() for p in (REPO / "reports").rglob("*.jsonl")
                                        if p.name != "paired.jsonl"))
def test_every_committed_results_file_still_reads(path):
    """Older writers left keys the record does not name (compile.wall_s, triton_gpu's layer): kept, not refused."""
    raw = read_records(REPO / path)
    typed = load_records(REPO / path)
    assert len(typed) == len(raw) and all(_keeps(d, r.to_dict()) for d, r in zip(raw, typed, strict=True))


def test_the_runner_writes_schema_2_and_refuses_a_field_it_does_not_know():
    case = Case("lenet5", 32, "numpy", 1, "float32", 1)
    child = ChildResult("ok", {"status": "ok", "message": "", "device": "cpu", "gflops": 2.0,
                               "compile": {"compile_s": 0.5, "report": {"backend": "numpy"}, "fallback_nodes": []}},
                        1.0)
    r = make_record(case, child, {"gemm_gflops": 100.0}, {"machine_id": "m"}, "run", "now")
    assert r.schema == 2 and r.peak_fraction == pytest.approx(0.02) and r.compile.report == {"backend": "numpy"}
    d = r.to_dict()
    assert d["compile"] == {"compile_s": 0.5, "report": {"backend": "numpy"}, "fallback_nodes": []}
    assert "info" not in d["compile"] and "timing" not in d  # absent, not null, where nothing was measured
    with pytest.raises(SchemaError, match=r"unknown field\(s\) \['gflop'\]"):
        make_record(case, dataclasses.replace(child, result={"gflop": 1.0}), {}, {}, "run", "now")
    with pytest.raises(SchemaError, match="unknown status 'maybe'"):
        Record.from_dict({**d, "status": "maybe"})


def test_report_reads_a_schema_1_file(tmp_path, capsys):
    assert main(["report", str(V1), "-o", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "alexnet@224" in md and "Cases that did not run" in md and "timeout" in md


def test_compare_reads_schema_1_against_itself_and_against_schema_2(tmp_path, capsys):
    assert main(["compare", str(V1), str(V1)]) == 0
    assert "0 regression(s)" in capsys.readouterr().out
    # the same cases written by this convbench (schema 2), one case (5 samples: enough for p < 0.01) 2× slower
    new = tmp_path / "new.jsonl"
    with open(new, "w") as f:
        for r in load_records(V1):
            d = {**r.to_dict(), "schema": SCHEMA_VERSION}
            if r.case_id == "lenet5@32/triton/b1/float32/t2":
                d["timing"] = {**d["timing"], "median": d["timing"]["median"] * 2,
                               "samples": [s * 2 for s in d["timing"]["samples"]]}
            f.write(json.dumps(d) + "\n")
    assert main(["compare", str(V1), str(new), "--format", "json"]) == 1
    rows = {r["case_id"]: r["verdict"] for r in json.loads(capsys.readouterr().out)["rows"]}
    assert rows["lenet5@32/triton/b1/float32/t2"] == "regression"
    assert rows["alexnet@224/torch/b1/float32/t2"] == "same" and rows["alexnet@224/tvm/b8/float32/t2"] == "both failed"


def test_compare_takes_records_or_the_dicts_a_file_holds():
    a, b = record(), record(median=2e-3, seed=1)
    assert [r.verdict for r in compare_records([a], [b]).rows] == ["regression"]
    assert [r.verdict for r in compare_records([Record.from_dict(a)], [Record.from_dict(b)]).rows] == ["regression"]
