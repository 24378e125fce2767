"""`convbench passes`: the static ablation table, a real (tiny) timed sweep in rounds, the report, and errors."""

from __future__ import annotations

import json

import pytest
from _bench_records import record

from convbench.bench import ablation
from convbench.bench.schema import append_record
from convbench.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_static_table_json_and_report(capsys, tmp_path):
    out = tmp_path / "static"
    code, text, _ = run_cli(capsys, "passes", "-m", "resnet18,googlenet", "--image-size", "small", "--timing",
                            "none", "-p", "default,fold_batch_norm,all", "-o", str(out), "--json")
    assert code == 0
    rows = json.loads(text)
    by = {(r["model"], r["pipeline"]): r for r in rows}
    assert [r["pipeline"] for r in rows if r["model"] == "resnet18"] == ["none", "default", "fold_batch_norm", "all"]
    none, folded, default = by["resnet18", "none"], by["resnet18", "fold_batch_norm"], by["resnet18", "default"]
    assert none["batch_norms"] == 20 and folded["batch_norms"] == 0 and folded["fused_nodes"] == 0
    assert default["fused_nodes"] == 17 and default["nodes"] < folded["nodes"] < none["nodes"]
    assert default["flops"] < none["flops"]  # BN's 2 FLOPs per element go, the conv bias's 1 comes
    assert all(r["naive_bytes"] > r["arena_bytes"] > 0 for r in rows)
    report = (out / "report.md").read_text()
    assert "| resnet18@32 " in report and "fold_batch_norm" in report and (out / "memory.png").stat().st_size
    assert not (out / "speedup.png").exists()


def test_paired_timing_checks_and_times_every_pipeline(capsys, tmp_path):
    out = tmp_path / "paired"
    code, text, err = run_cli(capsys, "passes", "-m", "lenet5", "-p", "default,all", "--min-time", "0.05",
                              "--max-time", "0.3", "-o", str(out), "--json")
    assert code == 0, err
    rows = {r["pipeline"]: r for r in json.loads(text)}
    assert list(rows) == ["none", "default", "all"]
    assert rows["none"]["speedup"] == 1.0 and rows["none"]["speedup_lo"] == 1.0
    for r in rows.values():
        assert r["status"] == "ok" and r["correct"] and r["samples"] >= 7
        assert r["speedup_lo"] <= r["speedup"] <= r["speedup_hi"] and r["median_s"] > 0
    lines = [json.loads(line) for line in (out / "paired.jsonl").read_text().splitlines()]
    assert [line["pipeline"] for line in lines] == ["none", "default", "all"]
    report = (out / "report.md").read_text()
    assert "Timing is paired" in report and "(paired.jsonl)" in report and (out / "speedup.png").exists()
    # --resume keeps the timed rows (nothing is timed again) and rebuilds the report, here with a note
    code, again, err = run_cli(capsys, "passes", "-m", "lenet5", "-p", "default,all", "--resume", "--note",
                               "a note", "-o", str(out), "--json")
    timed = [(r["pipeline"], r["median_s"], r["speedup"], r["samples"]) for r in json.loads(text)]
    assert code == 0 and "timing lenet5" not in err
    assert [(r["pipeline"], r["median_s"], r["speedup"], r["samples"]) for r in json.loads(again)] == timed
    assert "- a note" in (out / "report.md").read_text()


@pytest.mark.slow  # a real timed sweep: 7 s
def test_a_real_timed_sweep_gives_speedups_against_none(capsys, tmp_path):
    out = tmp_path / "timed"
    code, text, err = run_cli(capsys, "passes", "-m", "lenet5", "-p", "default", "--timing", "sweep", "--rounds",
                              "1", "--min-time", "0.02", "--max-time", "0.05", "--gemm-size", "64", "-o", str(out),
                              "--json")
    assert code == 0, err
    rows = {r["pipeline"]: r for r in json.loads(text)}
    assert set(rows) == {"none", "default"}
    assert rows["none"]["speedup"] == 1.0 and rows["default"]["speedup"] > 0
    assert all(r["status"] == "ok" and r["correct"] and r["samples"] == 1 for r in rows.values())
    assert [p.name for p in out.glob("*.jsonl")] == ["ablation-round1.jsonl"]
    report = (out / "report.md").read_text()
    assert "× none" in report and "(ablation-round1.jsonl)" in report and (out / "speedup.png").exists()


def test_speedups_are_taken_within_a_round_then_the_median(tmp_path):
    """Round 2 ran on a machine twice as loaded: its absolute times double, its ratios do not."""
    paths = []
    for k, scale in enumerate((1.0, 2.0, 1.1)):
        path = tmp_path / f"r{k}.jsonl"
        for spec, median in (("numpy:passes=none", 10e-3), ("numpy:passes=default", 8e-3),
                             ("torch:passes=none", 4e-3), ("torch:passes=default", 4.4e-3)):
            append_record(path, record(backend=spec, median=median * scale, spread=0.0, seed=k))
        paths.append(path)
    table = ablation.measured(paths).set_index(["backend", "pipeline"])
    assert table.loc[("numpy", "default"), "speedup"] == pytest.approx(1.25)
    assert table.loc[("torch", "default"), "speedup"] == pytest.approx(4 / 4.4)
    assert table.loc[("numpy", "none"), "median_s"] == pytest.approx(11e-3)  # median over the rounds
    assert (table.samples == 3).all() and (table.status == "ok").all()
    assert table.loc[("numpy", "default"), "speedup_lo"] == pytest.approx(1.25)  # min over rounds


@pytest.mark.parametrize("argv, message", [
    (["-m", "resnet18", "-p", "fastest"], "unknown pipeline or pass(es) ['fastest']"),
    (["-m", "nonet"], "unknown model 'nonet'"),
    (["-m", "lenet5", "-b", "numpy:passes=all"], "give pipelines with --pipelines"),
    (["-m", "lenet5", "--rounds", "0"], "--rounds must be ≥ 1"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, argv, message):
    code, _, err = run_cli(capsys, "passes", *argv, "--timing", "none", "-o", str(tmp_path / "x"))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_all_and_unavailable_mean_what_they_mean_in_run_and_check(capsys, tmp_path, monkeypatch):
    from convbench.backends import registry
    from convbench.bench.ablation_paired import PairedPolicy, run_paired

    code, text, _ = run_cli(capsys, "passes", "-m", "lenet5", "-b", "all", "-p", "default", "--timing", "none",
                            "-o", str(tmp_path / "all"), "--json")
    assert code == 0 and list(dict.fromkeys(r["backend"] for r in json.loads(text))) == registry.names()

    class Gone:
        name = "passes_gone"
        available = staticmethod(lambda: (False, "needs a device this machine lacks"))
        supports = staticmethod(lambda node: True)

    monkeypatch.setattr(registry, "_registered", dict(registry._registered))
    monkeypatch.setattr(registry, "_loaded", dict(registry._loaded))
    registry.register(Gone())
    rows = run_paired("lenet5", 32, 1, "passes_gone", ["none", "default"], 1, PairedPolicy())  # starts no child
    assert [(r["pipeline"], r["status"]) for r in rows] == [("none", "unsupported"), ("default", "unsupported")]
    assert rows[0]["message"] == "backend 'passes_gone' is not available: needs a device this machine lacks"
