"""``--int8``: how a sweep's int8 cases are quantized, parsed once (models/calibration.py), carried in the case id and
the record, and given to the quantizer in every process alike."""

from __future__ import annotations

import json

import numpy as np
import pytest

from convbench.bench.runner import plan
from convbench.bench.schema import Case, read_records
from convbench.bench.workload import make_workload
from convbench.cli import main
from convbench.models.calibration import int8_spec, parse_int8


def test_a_spec_is_parsed_checked_and_spelled_one_way():
    settings = parse_int8(" weight_bits=7 , observer=minmax,views=8")
    assert settings == {"weight_bits": 7, "observer": "minmax", "views": 8}
    assert int8_spec(settings) == "observer=minmax,views=8,weight_bits=7"  # one spelling, whatever the order
    assert parse_int8("") == {} and int8_spec({}) == ""
    for bad, words in [("observer=entropy", "observer must be one of minmax, percentile"),
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
