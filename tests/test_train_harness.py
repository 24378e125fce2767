"""``convbench run --mode train`` (bench/train_case.py): a train-mode case through the sweep — its id, its typed
record (step timing, train GFLOP/s, static and measured memory, gradient agreement with the float64 trainer), a
backend that cannot train recorded unsupported without a child, and the report's training section kept apart
from the inference tables. One sweep (numpy, torch, onnxruntime on lenet5) serves every test of the module."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _bench_records import record as inference_record

from convbench.bench.record import SchemaError, TrainInfo, case_from_dict, load_records
from convbench.bench.report import write_report
from convbench.bench.runner import Sweep, plan, run_sweep
from convbench.bench.schema import Case, append_record
from convbench.bench.stats import Policy
from convbench.ir.optim import SGD
from convbench.ir.train import train_step
from convbench.ir.train_counts import train_counts
from convbench.models import build

DATA = Path(__file__).parent / "data"
BACKENDS = ("numpy", "torch", "onnxruntime")  # onnxruntime declares the train-step ops gaps (ir.train.training_gaps)


def test_the_case_id_carries_the_mode_only_in_train():
    inference = Case("lenet5", 32, "numpy", 2, "float32", 1)
    train = Case("lenet5", 32, "numpy", 2, "float32", 1, mode="train")
    assert inference.id == "lenet5@32/numpy/b2/float32/t1" and "mode" not in inference.to_dict()
    assert train.id == "lenet5@32/numpy/b2/float32/t1/train" and train.to_dict()["mode"] == "train"
    assert case_from_dict(train.to_dict()) == train and train != inference
    with pytest.raises(SchemaError, match=r"case\.mode' must be one of inference, train"):
        case_from_dict({**train.to_dict(), "mode": "serve"})


def test_earlier_records_keep_their_ids():
    records = load_records(DATA / "sweep_v1.jsonl")
    assert records and all(r.case.mode == "inference" and r.case.id == r.case_id for r in records)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train") / "results.jsonl"
    cases = plan(["lenet5"], list(BACKENDS), [2], ["float32"], ["32"], threads=1, mode="train")
    policy = Policy(warmup_s=0.0, min_time_s=0.05, max_time_s=0.2, min_samples=3)
    counts = run_sweep(Sweep(cases, out, policy, timeout_s=120, gemm_n=64))
    assert counts == {"ok": 2, "unsupported": 1}
    return out


@pytest.mark.slow
def test_train_records_hold_the_step(sweep: Path):
    records = {r.case.backend: r for r in load_records(sweep)}
    counts = train_counts(train_step(build("lenet5", batch=2, image_size=32), SGD(lr=0.1)))
    for name in ("numpy", "torch"):
        r = records[name]
        assert r.status == "ok" and r.case_id == f"lenet5@32/{name}/b2/float32/t1/train"
        assert isinstance(r.train, TrainInfo)
        t = r.train
        assert t.total_flops == counts.total_flops and t.step_peak_bytes == counts.step_peak_bytes
        assert t.optimizer == "sgd(lr=0.1, momentum=0.9, weight_decay=0.0001)"
        assert t.total_flops == t.forward_flops + t.backward_flops + t.optimizer_flops + counts.loss_flops
        assert 2.5 < t.ratio_to_inference < 3.5
        median = r.timing["median"]
        assert r.throughput_ips == pytest.approx(2 / median)
        assert r.gflops == pytest.approx(counts.total_flops / median / 1e9)
        assert r.peak_fraction is not None and r.peak_fraction > 0  # against the sweep's GEMM calibration
        assert 0 < t.update_median_s < median and t.loss > 0
        assert r.memory.static_activation_peak_bytes == counts.activation_peak_bytes
        assert r.memory.run_rss_peak_delta_bytes is not None
        assert r.correct is True and t.gradients["max_rel"] < t.gradients["bound"]
        assert t.gradients["reason"].startswith("worst tensor: ")
        assert r.correctness is None  # one place: the train part holds the step's agreement
    assert records["torch"].train.loss == pytest.approx(records["numpy"].train.loss, rel=1e-5)


@pytest.mark.slow
def test_a_backend_that_cannot_train_is_unsupported_without_a_child(sweep: Path):
    (r,) = [r for r in load_records(sweep) if r.case.backend == "onnxruntime"]
    assert r.status == "unsupported" and r.duration_s == 0.0 and r.worker is None
    assert r.message.startswith("batch_norm_train: ") and r.case_id.endswith("/train")


@pytest.mark.slow
def test_report_has_a_training_section_apart_from_inference(sweep: Path, tmp_path: Path):
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_bytes(sweep.read_bytes())
    here = load_records(sweep)[0].machine  # the same machine: one "Results" section
    append_record(mixed, inference_record(backend="numpy", batch=2, machine=here))
    files = write_report([mixed], tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    train_part = md.split("## Training steps")[1].split("## ")[0]
    results_part = md.split("## Results")[1].split("## ")[0]
    assert "train_step.png" in files.written
    for name in ("numpy", "torch", "onnxruntime"):
        assert f"| {name} " in train_part
    assert "✓" in train_part and "train GFLOP/s" in train_part and "unsupported: batch_norm_train" in train_part
    assert results_part.count("lenet5@32") == 1  # only the inference record: no train step in the forward tables
    assert json.loads(mixed.read_text().splitlines()[0])["case"]["mode"] == "train"


def test_pass_ablation_says_which_passes_apply_in_train_mode():
    from convbench.bench.ablation_train import train_pass_rows

    rows = {r["pass"]: r for r in train_pass_rows("resnet18", 32, 2, "numpy", "all")}
    assert list(rows) == ["remove_identity", "fold_batch_norm", "constant_fold", "dead_code", "fuse", "plan_memory"]
    fold = rows["fold_batch_norm"]
    assert fold["in train mode"].startswith("does not apply: the train step's BN is batch_norm_train")
    assert fold["train nodes"] == "256 → 256" and fold["inference nodes"] == "68 → 48"  # 20 BNs folded
    assert rows["fuse"]["in train mode"].startswith("does not apply: every conv/linear output")
    # at 32 px the last stage is 1×1: its adaptive average pool is an identity, in the step as in inference
    assert rows["remove_identity"]["in train mode"].startswith("applies (step agrees")
    assert rows["plan_memory"]["in train mode"].startswith("applies")
    lenet = {r["pass"]: r for r in train_pass_rows("lenet5", 32, 2, "numpy", "default")}
    assert lenet["fuse"]["train nodes"] == "35 → 31"  # conv→tanh chains of the forward: tanh's vjp saves its out
    assert lenet["fuse"]["in train mode"].startswith("applies (step agrees")


def test_passes_command_renders_the_train_section(tmp_path: Path, capsys):
    from convbench.cli import main

    assert main(["passes", "-m", "lenet5", "-b", "numpy", "--timing", "none", "--train", "-o", str(tmp_path)]) == 0
    md = (tmp_path / "report.md").read_text()
    section = md.split("## Passes in train mode")[1]
    assert "| fuse " in section and "applies (step agrees" in section
    assert "passes in train mode:" in capsys.readouterr().out


def test_run_mode_train_rejects_real_input(tmp_path: Path, capsys):
    from convbench.cli import main

    out = tmp_path / "r.jsonl"
    assert main(["run", "-m", "lenet5", "-b", "numpy", "--mode", "train", "--input", "real", "-o", str(out)]) == 2
    assert "--mode train runs on the seeded random batch" in capsys.readouterr().err and not out.exists()
