"""``convbench backends`` and ``convbench check``: tables, JSON, exit codes 0 / 1 / 2, skipped-not-failed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from convbench import models
from convbench.backends import registry
from convbench.backends.base import Executable
from convbench.backends.numpy_ref import BACKEND as NUMPY
from convbench.cli import main
from convbench.commands import check
from convbench.testing import CaseResult


class Fake:
    """numpy, with its outputs scaled (a wrong backend) or declared unavailable."""

    def __init__(self, name: str, scale: float = 1.0, available: tuple[bool, str] = (True, "")):
        self.name, self.scale, self._available = name, scale, available
        self.dtypes = ("float32",)

    def available(self):
        return self._available

    def supports(self, node):
        return True

    def compile(self, graph, params, dtype="float32", **options):
        exe = NUMPY.compile(graph, params, dtype=dtype)
        return Executable(graph, self.name, lambda xs: [y * np.float32(self.scale) for y in exe.run(xs)])


@pytest.fixture
def fakes(monkeypatch):
    """Register two extra backends for one test (the registry's own dicts are restored afterwards)."""
    monkeypatch.setattr(registry, "_registered", dict(registry._registered))
    monkeypatch.setattr(registry, "_loaded", dict(registry._loaded))
    registry.register(Fake("wrong", scale=1.01))
    registry.register(Fake("gpu-only", available=(False, "needs a CUDA device")))


def test_backends_lists_availability_version_device(capsys):
    assert main(["backends", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["numpy"]["available"] and rows["numpy"]["version"] == np.__version__
    assert rows["torch"]["available"] and rows["torch"]["device"].startswith("cpu")
    assert rows["torch"]["dtypes"] == ["float32", "bfloat16", "float16", "int8"]
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    assert "numpy" in out and "torch" in out and "available" in out


def test_backends_options_lists_each_backends_options_from_its_dataclass(fakes, capsys):
    assert main(["backends", "--options", "--json"]) == 0
    docs = {d["name"]: d for d in json.loads(capsys.readouterr().out)}
    numpy_opts = {o["name"]: o for o in docs["numpy"]["options"]}
    assert docs["numpy"]["declared"] and list(numpy_opts)[:4] == ["dtype", "threads", "passes", "fallback"]
    assert numpy_opts["memory_plan"] == {"name": "memory_plan", "type": "bool | None", "default": None,
                                         "doc": numpy_opts["memory_plan"]["doc"]}
    assert numpy_opts["threads"]["type"] == "int | None" and numpy_opts["dtype"]["default"] == "float32"
    assert all(o["doc"] for o in numpy_opts.values())
    # a third-party backend without an Options dataclass: the keywords its compile() takes
    assert not docs["wrong"]["declared"] and "any keyword" in docs["wrong"]["note"]
    assert main(["backends", "--options"]) == 0
    out = capsys.readouterr().out
    assert "memory_plan" in out and "bool | None" in out and "run every activation out of one planned arena" in out


def test_backends_reports_an_unavailable_backend_with_its_reason(fakes, capsys):
    assert main(["backends"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if "gpu-only" in ln)
    assert " no " in line and "needs a CUDA device" in line


def test_check_passes_numpy_and_torch(capsys):
    code = main(["check", "-m", "lenet5,squeezenet1_0", "-b", "numpy,torch,torch:channels_last=false",
                 "--image-size", "small", "--batch", "2", "-q"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.count(" pass ") == 6 and "6 pass" in out
    assert "torch:channels_last=false" in out and "max abs err" in out and "top-1" in out


def test_check_json(capsys):
    assert main(["check", "-m", "lenet5", "-b", "torch", "--dtype", "float32,bfloat16", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["dtype"], r["status"]) for r in rows] == [("float32", "pass"), ("bfloat16", "pass")]
    assert rows[0]["agreement"]["top1"] == 1.0 and rows[0]["image_size"] == 32


def test_mismatch_exits_1_and_unavailable_is_skipped(fakes, capsys):
    code = main(["check", "-m", "lenet5", "-b", "numpy,wrong,gpu-only", "-q"])
    out = capsys.readouterr().out
    assert code == 1
    assert "lenet5-b1-s32 wrong float32 [fail]" in out and "max abs error" in out
    assert "lenet5-b1-s32 gpu-only float32 [skip]: backend 'gpu-only' is not available: needs a CUDA device" in out
    assert "1 pass, 1 fail, 1 skip" in out
    assert main(["check", "-m", "lenet5", "-b", "numpy,gpu-only", "-q"]) == 0  # a skip alone is not a failure


def test_a_backend_that_fails_to_import_is_an_error_row(monkeypatch, capsys):
    monkeypatch.setitem(registry.BUILTIN, "broken", "convbench.backends.no_such_module")
    monkeypatch.setattr(registry, "_loaded", dict(registry._loaded))
    assert main(["check", "-m", "lenet5", "-b", "numpy,broken", "-q"]) == 1
    out = capsys.readouterr().out
    assert "[error]: backend 'broken' failed to load: ModuleNotFoundError" in out and "1 pass, 1 error" in out


def test_unsupported_dtype_is_skipped_and_a_check_where_nothing_ran_fails(capsys):
    assert main(["check", "-m", "lenet5", "-b", "numpy", "--dtype", "bfloat16", "-q"]) == 1
    captured = capsys.readouterr()
    assert "[skip]: backend 'numpy' does not support dtype bfloat16 (supports float32, float64)" in captured.out
    assert "nothing ran: all 1 case(s) were skipped" in captured.err
    assert main(["check", "-m", "lenet5", "-b", "numpy", "--dtype", "float32,bfloat16", "-q"]) == 0  # one ran


def test_unsupported_means_the_same_in_check_and_run(tmp_path, capsys):
    """A dtype the backend lacks: check skips it, run records it as unsupported, with the same reason."""
    from convbench.bench.runner import Sweep, plan, run_sweep
    from convbench.bench.schema import read_records

    assert main(["check", "-m", "lenet5", "-b", "numpy", "--dtype", "bfloat16", "--json"]) == 1
    (row,) = json.loads(capsys.readouterr().out)
    out = tmp_path / "r.jsonl"
    run_sweep(Sweep(plan(["lenet5"], ["numpy"], [1], ["bfloat16"], threads=1), out, gemm_n=0))
    (record,) = read_records(out)
    assert row["status"] == "skip" and record["status"] == "unsupported"
    assert record["message"] == row["message"] != "" and record["duration_s"] == 0  # no child was started


def test_a_compile_time_unsupported_dtype_is_a_skip_not_an_error(monkeypatch, capsys):
    """A backend that declares no dtypes and refuses one only when compiling (UnsupportedDtypeError)."""
    monkeypatch.setattr(registry, "_registered", dict(registry._registered))
    monkeypatch.setattr(registry, "_loaded", dict(registry._loaded))
    fake = Fake("undeclared")
    del fake.dtypes  # numpy then refuses bfloat16 inside compile
    registry.register(fake)
    assert main(["check", "-m", "lenet5", "-b", "undeclared", "--dtype", "float32,bfloat16", "-q"]) == 0
    out = capsys.readouterr().out
    assert "1 pass, 1 skip" in out and "[skip]: numpy backend: dtype 'bfloat16' is not supported" in out


def test_backend_options_are_typed_at_parse_time(capsys):
    for spec, message in (("numpy:threads=abc", "numpy backend: option threads must be int | None, got 'abc'"),
                          ("torch:threads=abc", "torch backend: option threads must be int | None, got 'abc'"),
                          ("numpy:nope=1", "numpy backend: unknown option(s) ['nope']")):
        assert main(["check", "-m", "lenet5", "-b", spec]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_several_image_sizes(capsys):
    assert main(["check", "-m", "resnet18", "-b", "numpy", "--image-size", "small,40", "--json"]) == 0
    assert [r["image_size"] for r in json.loads(capsys.readouterr().out)] == [32, 40]


def test_all_expands_to_every_model_and_backend(monkeypatch, capsys):
    calls = []

    def fake_run_case(backend, case, dtype, **options):
        calls.append((case.id, backend.name, dtype))
        return CaseResult(case.id, backend.name, dtype, "pass")

    monkeypatch.setattr(check, "run_case", fake_run_case)
    monkeypatch.setattr(check, "unavailable_reason", lambda backend, dtype: None)  # 'all' names unavailable ones too
    monkeypatch.setattr(check, "model_case", lambda m, b, s: type("C", (), {"id": f"{m}-b{b}-s{s}"})())
    assert main(["check", "-m", "all", "-b", "all", "--batch", "1,8", "-q"]) == 0
    assert len(calls) == len(models.names()) * len(registry.names()) * 2
    assert {c[1] for c in calls} == set(registry.names())
    assert ("resnet50-b8-s224", "torch", "float32") in calls


@pytest.mark.parametrize("argv, message", [
    (["-m", "resnet51", "-b", "numpy"], "unknown model 'resnet51'; known models: lenet5"),
    (["-m", "lenet5", "-b", "nope"], "unknown backend 'nope'; known backends: numpy, torch"),
    (["-m", "lenet5", "-b", "torch:compile"], "is not KEY=VALUE"),
    (["-m", "lenet5", "-b", "numpy", "--dtype", "float8"], "unknown dtype 'float8'"),
    (["-m", "lenet5", "-b", "numpy", "--batch", "0"], "--batch must be integers ≥ 1"),
    (["-m", "lenet5", "-b", "numpy", "--image-size", "8"], "--image-size 8 is below lenet5's minimum 32"),
    (["-m", "lenet5", "-b", "numpy", "--image-size", "big"], "'full', 'small' or an integer"),
    (["-m", "lenet5", "-b", ""], "no backend given"),
])
def test_bad_arguments_exit_2_with_one_line(argv, message, capsys):
    assert main(["check", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_prefix_is_not_read_as_a_longer_option():
    """`--mode train` once parsed as `--models train` and ran an inference check; now that --mode exists, a
    prefix of it (`--mod`) is refused rather than expanded."""
    with pytest.raises(SystemExit) as e:
        main(["check", "--mod", "train", "-m", "lenet5", "-b", "numpy"])
    assert e.value.code == 2
