"""report: tables, speed-ups per machine, multi-machine merge, lecture tables, self-contained HTML."""

from __future__ import annotations

import json

import pytest
from _bench_records import MACHINE_B, record

from convbench import models
from convbench.bench.errors import BenchError
from convbench.bench.lecture import comparison_table, depth, vgg_resnet_table
from convbench.bench.report import load, write_report


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def two_machines(tmp_path):
    a = _write(tmp_path / "a.jsonl", [record(backend="numpy", median=4e-3), record(backend="fast", median=1e-3),
                                      record(backend="fast", batch=8, median=2e-3),
                                      record(backend="broken", status="timeout")])
    b = _write(tmp_path / "b.jsonl", [record(backend="numpy", median=2e-3, machine=MACHINE_B),
                                      record(backend="fast", median=1e-3, machine=MACHINE_B)])
    return a, b


def test_speedup_is_taken_against_the_reference_on_the_same_machine(two_machines):
    df, machines = load(list(two_machines))
    assert set(machines) == {"aaaa", "bbbb"}
    fast = df[(df.backend == "fast") & (df.batch == 1)].set_index("machine_id").speedup
    assert fast["aaaa"] == pytest.approx(4.0, rel=0.05) and fast["bbbb"] == pytest.approx(2.0, rel=0.05)
    assert df[(df.backend == "fast") & (df.batch == 8)].speedup.isna().all()  # no batch-8 reference: no ratio


def test_report_writes_md_html_and_plots_grouped_by_machine(two_machines, tmp_path):
    out = write_report(list(two_machines), tmp_path / "rep").directory
    names = {p.name for p in out.iterdir()}
    assert {"report.md", "index.html", "throughput.png", "speedup.png", "latency.png", "memory.png",
            "roofline.png"} <= names
    md = (out / "report.md").read_text()
    assert "alpha (CPU A, 2 cores)" in md and "beta (CPU B, 16 cores)" in md
    assert "Cases that did not run" in md and "timeout" in md
    assert "Scenario — latency" in md and "Scenario — throughput" in md
    assert "VGG19 vs ResNet50" in md and "swapped" in md
    page = (out / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 5 and "<img" in page and "src='http" not in page


def test_lecture_tables_match_the_lecture_where_the_lecture_is_right():
    # Depth on the longest path is the lecture's "layers": AlexNet 8, VGG 16/19, GoogLeNet 22, ResNet 50/152.
    expected = {"alexnet": 8, "vgg16": 16, "vgg19": 19, "googlenet": 22, "resnet50": 50, "resnet152": 152}
    for name, d in expected.items():
        assert depth(models.build(name)) == d, name
    import pandas as pd

    table = comparison_table(pd.DataFrame())
    assert list(table["size MB (lecture)"]) == ["238", "540", "560", "40", "100", "235"]
    assert list(table["params (M)"]) == ["61.1", "138.4", "143.7", "6.6", "25.6", "60.2"]
    vr = vgg_resnet_table(pd.DataFrame()).set_index("model")
    assert vr.loc["VGG19", "params (lecture)"] == "25M" and vr.loc["VGG19", "params (ours)"] == "143.7M"
    assert vr.loc["ResNet50", "MACs (ours)"] == "4.09B"


def test_report_input_errors(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(BenchError, match="no results"):
        write_report([empty], tmp_path / "rep")
    good = _write(tmp_path / "r.jsonl", [record()])
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(BenchError, match="not a directory"):
        write_report([good], blocker)
