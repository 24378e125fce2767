"""compare: ratio of medians + Mann-Whitney U, verdicts, exit codes, machine warnings."""

from __future__ import annotations

import json

import pytest
from _bench_records import MACHINE_B, record

from convbench.bench.compare import compare_records, min_p_value
from convbench.cli import main


def _verdicts(base, new, **kw) -> dict[str, str]:
    return {r.case_id: r.verdict for r in compare_records(base, new, **kw).rows}


def test_same_samples_are_same_and_a_clear_slow_down_is_a_regression():
    base = [record(batch=1), record(batch=8, median=5e-3)]
    assert set(_verdicts(base, base).values()) == {"same"}
    slower = [record(batch=1, median=1.5e-3, seed=1), record(batch=8, median=5e-3, seed=1)]
    result = compare_records(base, slower)
    by = {r.case_id: r for r in result.rows}
    assert by[base[0]["case_id"]].verdict == "regression" and by[base[0]["case_id"]].ratio == pytest.approx(1.5, 0.05)
    assert by[base[0]["case_id"]].p_value < 1e-6
    assert by[base[1]["case_id"]].verdict == "same"
    assert len(result.regressions) == 1


def test_faster_is_an_improvement_and_not_a_regression():
    assert set(_verdicts([record()], [record(median=0.5e-3, seed=2)]).values()) == {"improvement"}


def test_too_few_samples_is_inconclusive_not_same():
    assert min_p_value(3, 3) == pytest.approx(0.1)
    verdicts = _verdicts([record(n=3)], [record(n=3, median=2e-3, seed=3)])
    assert set(verdicts.values()) == {"inconclusive"}


def test_broken_wrong_fixed_and_missing_cases():
    base = [record("lenet5"), record("resnet18"), record("alexnet", status="error"), record("vgg11")]
    new = [record("lenet5", status="timeout"), record("resnet18", correct=False), record("alexnet"),
           record("googlenet")]
    v = _verdicts(base, new)
    assert v == {base[0]["case_id"]: "broken", base[1]["case_id"]: "wrong result", base[2]["case_id"]: "fixed",
                 base[3]["case_id"]: "only in base", new[3]["case_id"]: "only in new"}
    assert {r.verdict for r in compare_records(base, new).regressions} == {"broken", "wrong result"}


def test_machines_that_differ_are_warned_about():
    result = compare_records([record()], [record(machine=MACHINE_B)])
    assert any("different machines" in w and "alpha" in w and "beta" in w for w in result.warnings)
    assert compare_records([record()], [record()]).warnings == ()


def test_cli_exit_codes_and_formats(tmp_path, capsys):
    base, new = tmp_path / "base.jsonl", tmp_path / "new.jsonl"
    base.write_text(json.dumps(record()) + "\n")
    new.write_text(json.dumps(record(median=2e-3, seed=4, machine=MACHINE_B)) + "\n")
    assert main(["compare", str(base), str(base)]) == 0
    assert "0 regression(s)" in capsys.readouterr().out
    assert main(["compare", str(base), str(new), "--format", "json"]) == 1
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["regressions"] == 1 and doc["rows"][0]["verdict"] == "regression"
    assert "different machines" in captured.err
    assert main(["compare", str(base), str(tmp_path / "missing.jsonl")]) == 2
    assert main(["compare", str(base), str(base), "--factor", "0.5"]) == 2
