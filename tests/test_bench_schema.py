"""Results schema: case ids, backend specs, atomic JSONL lines, torn-line tolerance and repair."""

from __future__ import annotations

import json

import pytest
from _bench_records import record

from convbench.bench.errors import BenchError
from convbench.bench.schema import (
    SCHEMA_VERSION,
    Case,
    SchemaError,
    append_record,
    parse_backend_spec,
    read_records,
    repair,
)


def _record(case_id: str = "a", **extra) -> dict:
    """A whole record (reading checks every field's type), under its own case id."""
    return {**record(), "case_id": case_id, **extra}


def test_case_id_names_every_field_that_changes_the_measurement():
    c = Case("resnet18", 64, "torch:compile=true", 8, "bfloat16", 2)
    assert c.id == "resnet18@64/torch:compile=true/b8/bfloat16/t2"
    assert c.backend_name == "torch" and c.options == {"compile": True}
    assert Case("resnet18", 64, "torch", 8, "bfloat16", 2).id != c.id


def test_backend_spec_values_are_typed():
    assert parse_backend_spec("x:a=1:b=0.5:c=false:d=cpu") == ("x", {"a": 1, "b": 0.5, "c": False, "d": "cpu"})
    with pytest.raises(BenchError, match="not KEY=VALUE"):
        parse_backend_spec("torch:compile")


def test_append_and_read_round_trip_with_non_finite_as_null(tmp_path):
    path = tmp_path / "r.jsonl"
    append_record(path, _record("a", x=float("inf"), y=[1.0, float("nan")]))
    append_record(path, _record("b"))
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(line) for line in lines)  # strict JSON, one object per line
    records = read_records(path)
    assert [r["case_id"] for r in records] == ["a", "b"]
    assert records[0]["x"] is None and records[0]["y"] == [1.0, None]


def test_torn_last_line_is_skipped_and_repair_trims_it(tmp_path):
    path = tmp_path / "r.jsonl"
    append_record(path, _record("a"))
    with open(path, "ab") as f:
        f.write(b'{"schema": 1, "case_id": "b", "ca')  # a write cut short
    with pytest.warns(UserWarning, match="torn last line"):
        assert [r["case_id"] for r in read_records(path)] == ["a"]
    assert repair(path) == len(b'{"schema": 1, "case_id": "b", "ca')
    assert path.read_bytes().endswith(b"}\n") and repair(path) == 0
    assert [r["case_id"] for r in read_records(path)] == ["a"]


def test_bad_lines_are_named(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"schema": 1}\n')
    with pytest.raises(SchemaError, match=r"r.jsonl:1: not a convbench result"):
        read_records(path)
    path.write_text("not json\n" + json.dumps(_record()) + "\n")
    with pytest.raises(SchemaError, match=r"r.jsonl:1: not JSON"):
        read_records(path)
    path.write_text(json.dumps(_record(schema=SCHEMA_VERSION + 1)) + "\n")
    with pytest.raises(SchemaError, match="newer than"):
        read_records(path)
    path.write_text(json.dumps(_record(status="maybe")) + "\n")
    with pytest.raises(SchemaError, match="unknown status 'maybe'"):
        read_records(path)
    with pytest.raises(SchemaError, match="cannot read"):
        read_records(tmp_path / "missing.jsonl")
