"""`convbench models`, `convbench summary`, `python -m convbench` and their errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from test_zoo import PUBLISHED

from convbench.cli import main
from convbench.ir.serialize import save


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_models_json_is_the_published_table(capsys):
    code, out, err = run_cli(capsys, "models", "--json")
    assert code == 0 and err == ""
    rows = {r["name"]: r for r in json.loads(out)}
    for name, (params, macs) in PUBLISHED.items():
        assert rows[name]["params"] == params
        if macs is not None:
            assert rows[name]["macs"] == macs
    assert rows["lenet5"]["input_shape"] == [1, 1, 32, 32]
    assert rows["resnet50"]["conv_layers"] == 53 and rows["resnet50"]["linear_layers"] == 1


def test_models_table(capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0 and "resnet152" in out and "60,192,808" in out


def test_summary_table_and_json(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "summary", "lenet5")
    assert code == 0 and "c3" in out and "240,000" in out and "61,706 params" in out
    code, out, _ = run_cli(capsys, "summary", "resnet18", "--json", "--image-size", "64")
    doc = json.loads(out)
    assert doc["input_shape"] == [1, 3, 64, 64] and doc["params"] == 11_689_512
    assert {"name", "op", "output_shape", "params", "macs", "flops", "activation_bytes"} <= set(doc["layers"][0])


def test_summary_of_a_graph_file(capsys, tmp_path):
    import convbench as cb

    path = tmp_path / "g.json"
    save(cb.models.build("lenet5"), path)
    code, out, _ = run_cli(capsys, "summary", str(path), "--json")
    assert code == 0 and json.loads(out)["macs"] == 416_520


def test_unknown_model_is_one_line_exit_2(capsys):
    code, out, err = run_cli(capsys, "summary", "resnet19")
    assert code == 2 and out == ""
    assert err.strip().count("\n") == 0
    assert "unknown model 'resnet19'; known models: alexnet, alexnet_2012" in err


def test_bad_graph_file_is_one_line_exit_2(capsys, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"format": "convbench.graph", "version": 1, "inputs": {}, "params": {},
                                "nodes": [{"name": "x", "op": "gelu", "inputs": []}], "outputs": ["x"]}))
    code, _, err = run_cli(capsys, "summary", str(path))
    assert code == 2 and "unknown op 'gelu'; known ops:" in err and "Traceback" not in err


def test_python_dash_m():
    r = subprocess.run([sys.executable, "-m", "convbench", "models", "--json"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)) >= 17


@pytest.mark.parametrize("argv", [["summary"], ["nope"], ["models", "--bogus"]])
def test_bad_arguments_exit_2(argv):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2


def test_no_parser_accepts_an_abbreviated_option():
    from convbench.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices  # every subcommand's parser
    assert parser.allow_abbrev is False
    assert sorted(name for name, p in subparsers.items() if p.allow_abbrev) == []
    with pytest.raises(SystemExit) as e:
        main(["models", "--js"])  # once read as --json
    assert e.value.code == 2
