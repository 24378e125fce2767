"""``--int8``: how a sweep's int8 cases are quantized, parsed once (models/calibration.py), carried in the case id and
the record, and given to the quantizer in every process alike."""

from __future__ import annotations

import json

import numpy as np
import pytest

from convbench.bench.runner import plan
from convbench.bench.schema import Case, read_records
from convbench.bench.stats import Policy
from convbench.bench.workload import make_workload
from convbench.cli import main
from convbench.models.calibration import int8_spec, parse_int8


def test_a_spec_is_parsed_checked_and_spelled_one_way():
    settings = parse_int8(" weight_bits=7 , observer=minmax,views=8")
    assert settings == {"weight_bits": 7, "observer": "minmax", "views": 8}
    assert int8_spec(settings) == "observer=minmax,views=8,weight_bits=7"  # one spelling, whatever the order
    assert parse_int8("") == {} and int8_spec({}) == ""
    rounding = parse_int8("bias_correction=off,weight_clip=absmax,views=1")
    assert rounding == {"bias_correction": False, "weight_clip": "absmax", "views": 1}
    assert int8_spec(rounding) == "views=1,weight_clip=absmax,bias_correction=off"  # 1 is a count, not "on"
    for bad, words in [("weight_clip=entropy", "weight_clip must be one of absmax, mse"),
                       ("bias_correction=yes", "bias_correction must be on or off"),
                       ("observer=entropy", "observer must be one of minmax, percentile"),
                       ("views=0", "views must be calibration views a photograph, 1-64"),
                       ("weight_bits=4", "weight_bits must be one of 7, 8"), ("bits=7", "KEY one of observer"),
                       ("minmax", "expected KEY=VALUE"), ("views=2,views=3", "'views' is given twice")]:
        with pytest.raises(ValueError, match=words):
            parse_int8(bad)


def test_only_the_int8_cases_carry_the_spec_and_their_ids_say_it():
    cases = plan(["lenet5"], ["numpy"], [2], ["float32", "int8"], int8="weight_bits=8,observer=minmax")
    f32, i8 = cases
    assert f32.int8 == "" and f32.id == "lenet5@32/numpy/b2/float32/t2".replace("/t2", f"/t{f32.threads}")
    assert i8.int8 == "observer=minmax,weight_bits=8" and i8.id.endswith("/int8[observer=minmax,weight_bits=8]")
    assert "int8" not in f32.to_dict() and Case(**i8.to_dict()) == i8
    assert plan(["lenet5"], ["numpy"], [2], ["int8"])[0].id != i8.id  # the defaults are another case


def test_the_settings_reach_the_quantizer():
    wide = make_workload("lenet5", 2, None, dtype="int8", int8="weight_bits=8")
    narrow = make_workload("lenet5", 2, None, dtype="int8", int8="weight_bits=7,observer=minmax")
    assert narrow.quantization["weight_bits"] == 7 and narrow.quantization["observer"] == "minmax"
    codes = {w: max(int(np.abs(p).max()) for p in x.params.values() if p.dtype == np.int8)
             for w, x in (("wide", wide), ("narrow", narrow))}
    assert codes == {"wide": 127, "narrow": 63}
    plain = make_workload("lenet5", 2, None, dtype="int8", int8="weight_bits=8,bias_correction=off")
    assert wide.quantization["weight_clip"] == "mse" and wide.quantization["bias_correction"] is True
    assert plain.quantization["bias_correction"] is False
    kinds = {t: [k for k, v in plain.graph.params.items() if v.dtype == t] for t in ("int8", "int32")}
    assert all((plain.params[k] == wide.params[k]).all() for k in kinds["int8"])  # the same weights,
    assert any((plain.params[k] != wide.params[k]).any() for k in kinds["int32"])  # the biases corrected


@pytest.mark.parametrize("interleave", [False, True])
def test_the_cli_runs_and_records_them_and_refuses_them_without_int8(tmp_path, capsys, interleave):
    out = tmp_path / "r.jsonl"
    code = main(["run", "-m", "lenet5", "-b", "onnxruntime", "--dtype", "int8", "--int8", "weight_bits=7",
                 "--batch", "2", "--max-time", "0.05", "--warmup", "0", "-o", str(out)]
                + (["--interleave", "--rounds", "2", "--round-gap", "0"] if interleave else []))
    (r,) = read_records(out)
    assert code == 0 and r["case"]["int8"] == "weight_bits=7", json.dumps(r)[:400]
    # both ways a record carries the settings, and the model's counts are the float graph's (no Q/DQ nodes)
    assert r["model_info"]["quantization"]["weight_bits"] == 7 and r["model_info"]["conv_layers"] == 3
    assert r["model_info"]["nodes"] > 30  # the QDQ graph the backend was given (lenet5 itself has 12)
    capsys.readouterr()
    assert main(["run", "-m", "lenet5", "-b", "numpy", "--int8", "views=2", "-o", str(tmp_path / "x.jsonl")]) == 2
    assert "--dtype float32 has no int8" in capsys.readouterr().err
    assert main(["run", "-m", "lenet5", "-b", "numpy", "--dtype", "int8", "--int8", "views=x", "-o", str(out)]) == 2
    assert "views must be" in capsys.readouterr().err and len(read_records(out)) == 1  # nothing lost


# check and profile take --int8 as run does (commands/_common.py: one argument, one parser); these use lenet5 on
# onnxruntime, which every environment of the suite has, at batch 2 (a quantization is milliseconds there)
QUICK = Policy(warmup_s=0, min_time_s=0, max_time_s=0.001, min_samples=3)  # profile's timing is not under test


def _codes(params: dict[str, np.ndarray]) -> int:
    return max(int(np.abs(p).max()) for p in params.values() if p.dtype == np.int8)


def test_check_quantizes_its_int8_rows_and_their_reference_with_the_settings(capsys, monkeypatch):
    from convbench.models import calibration
    from convbench.testing import quantized

    graphs, references = [], []
    real_quantize, real_reference = calibration.quantize_graph, quantized.reference_outputs

    def quantize(graph, params, cal, **kw):
        qg, qp = real_quantize(graph, params, cal, **kw)
        graphs.append((kw["observer"], kw["weight_bits"], _codes(qp)))
        return qg, qp

    def reference(graph, params, inputs):
        references.append(_codes(params))  # the int8 reference is of the graph quantized with the settings
        return real_reference(graph, params, inputs)

    monkeypatch.setattr(calibration, "quantize_graph", quantize)
    monkeypatch.setattr(quantized, "reference_outputs", reference)
    for bits in (8, 7):
        code = main(["check", "-m", "lenet5", "-b", "onnxruntime", "--dtype", "float32,int8", "--batch", "2",
                     "--int8", f"weight_bits={bits},observer=minmax", "--json", "-q"])
        f32, i8 = json.loads(capsys.readouterr().out)
        assert f32["case_id"] == "lenet5-b2-s32" and "int8" not in f32  # only the int8 row carries the settings
        assert i8["case_id"] == f"lenet5-b2-s32/int8[observer=minmax,weight_bits={bits}]"
        assert i8["int8"] == f"observer=minmax,weight_bits={bits}"
        # 8 bits: ORT's kernels may saturate on a CPU without VNNI (README); what is asserted is what was checked
        assert code == 0 or (bits == 8 and i8["status"] == "fail"), i8
    assert graphs == [("minmax", 8, 127), ("minmax", 7, 63)] and references == [127, 63]


def test_the_check_table_and_progress_show_the_settings(capsys):
    assert main(["check", "-m", "lenet5", "-b", "onnxruntime", "--dtype", "int8", "--batch", "2",
                 "--int8", "weight_bits=7,views=2"]) == 0
    captured = capsys.readouterr()
    assert "lenet5-b2-s32/int8[views=2,weight_bits=7] onnxruntime int8: pass" in captured.err
    assert "views=2,weight_bits=7" in captured.out.splitlines()[1]  # the table's int8 column


def test_profile_quantizes_with_the_settings_and_records_them(capsys, monkeypatch):
    from convbench.backends import get
    from convbench.bench import profile as bench_profile
    from convbench.commands import profile as profile_command

    asked = []
    real_workload, real_measure = bench_profile.make_workload, bench_profile.measure

    def workload(*args, **kw):
        asked.append(kw.get("int8"))
        return real_workload(*args, **kw)

    monkeypatch.setattr(bench_profile, "make_workload", workload)  # the profiled graph and OpenVINO's
    monkeypatch.setattr(profile_command, "make_workload", workload)  # the graph OpenVINO's layers map onto
    monkeypatch.setattr(bench_profile, "measure", lambda fn, policy: real_measure(fn, QUICK))
    openvino = get("openvino").available()[0]
    assert main(["profile", "-m", "lenet5", "-b", "onnxruntime", "--dtype", "int8", "--batch", "2",
                 "--int8", "weight_bits=7,observer=minmax", "--json"] + (["--openvino"] if openvino else [])) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["int8"] == "observer=minmax,weight_bits=7" and doc["dtype"] == "int8"
    assert doc["quantization"]["weight_bits"] == 7 and doc["quantization"]["observer"] == "minmax"
    assert asked == ["observer=minmax,weight_bits=7"] * (3 if openvino else 1)
    assert ("openvino" in doc) == openvino


@pytest.mark.parametrize("command", [["check", "-b", "onnxruntime"], ["profile", "-b", "onnxruntime"]])
def test_check_and_profile_refuse_int8_settings_as_run_does(capsys, command):
    def refused(*more: str) -> str:
        assert main([command[0], "-m", "lenet5", *command[1:], *more]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        return err

    assert "--int8 views=2 says how to quantize, but --dtype float32 has no int8" in refused("--int8", "views=2")
    assert "--int8: int8 setting 'bits=7': expected KEY=VALUE" in refused("--dtype", "int8", "--int8", "bits=7")
    assert "weight_bits must be one of 7, 8" in refused("--dtype", "int8", "--int8", "weight_bits=4")
