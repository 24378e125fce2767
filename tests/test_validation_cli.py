"""Numbers and options are checked, compare is a gate, correctness never calls all-NaN ok, reports escape what
they copy (issue 13). Each test names the finding it covers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _bench_records import record

from convbench.backends.correctness import compare
from convbench.bench.compare import compare_records
from convbench.bench.errors import BenchError
from convbench.bench.report import md_text, write_report
from convbench.bench.runner import Sweep
from convbench.bench.stats import Policy
from convbench.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def write(path, *records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


# -- numbers: NaN, infinities and out-of-range values are refused, naming the flag ---------------------------------
RUN = ["run", "-m", "lenet5", "-b", "numpy"]


@pytest.mark.parametrize(("argv", "flag"), [
    ([*RUN, "--timeout", "nan"], "--timeout"),  # was: the watchdog off, a hang hangs the sweep
    ([*RUN, "--timeout", "inf"], "--timeout"),
    ([*RUN, "--timeout", "1e300"], "--timeout"),
    ([*RUN, "--max-time", "inf"], "--max-time"),
    ([*RUN, "--min-time", "nan"], "--min-time"),
    ([*RUN, "--warmup", "nan"], "--warmup"),
    ([*RUN, "--warmup", "-1"], "--warmup"),
    ([*RUN, "--target-iqr", "nan"], "--target-iqr"),
    ([*RUN, "--target-iqr", "0"], "--target-iqr"),
    ([*RUN, "--threads", "0"], "--threads"),
    ([*RUN, "--threads", "1000000"], "--threads"),
    ([*RUN, "--gemm-size", "1000000"], "--gemm-size"),
    (["compare", "a", "b", "--factor", "nan"], "--factor"),  # was: regression detection off
    (["compare", "a", "b", "--factor", "inf"], "--factor"),
    (["compare", "a", "b", "--alpha", "nan"], "--alpha"),
    (["compare", "a", "b", "--alpha", "1"], "--alpha"),
    (["passes", "-m", "lenet5", "--rounds", "0"], "--rounds"),
    (["passes", "-m", "lenet5", "--timeout", "nan"], "--timeout"),
    (["passes", "-m", "lenet5", "--max-time", "inf"], "--max-time"),
    (["profile", "-m", "lenet5", "--top", "-1"], "--top"),
    (["profile", "-m", "lenet5", "--threads", "0"], "--threads"),
    (["summary", "lenet5", "--batch", "0"], "--batch"),
    (["models", "--image-size", "0"], "--image-size"),
])
def test_numeric_flags_reject_non_finite_and_out_of_range(tmp_path, capsys, argv, flag):
    if argv[0] in ("run", "passes"):
        argv = [*argv, "-o", str(tmp_path / "out")]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and f"{flag} must be" in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_the_harness_api_refuses_a_non_finite_timeout_and_policy(tmp_path):
    with pytest.raises(BenchError, match="timeout"):
        Sweep([], tmp_path / "r.jsonl", timeout_s=float("nan"))
    for field in ("warmup_s", "max_time_s", "target_iqr_rel"):
        with pytest.raises(ValueError, match=field):
            Policy(**{field: float("nan")})


# -- options that are axes of the case are refused in -b; bools are true/false/1/0 --------------------------------
@pytest.mark.parametrize(("argv", "message"), [
    # was: measured in float64, recorded, named and compared as float32
    (["run", "-m", "lenet5", "-b", "numpy:dtype=float64"], "give it with --dtype"),
    (["run", "-m", "lenet5", "-b", "numpy:threads=4"], "give it with --threads"),
    (["check", "-m", "lenet5", "-b", "numpy:dtype=float64"], "give it with --dtype"),  # was a TypeError traceback
    (["profile", "-m", "lenet5", "-b", "numpy:dtype=float64"], "give it with --dtype"),
    (["passes", "-m", "lenet5", "-b", "numpy:dtype=float64"], "measures float32"),
    (["run", "-m", "lenet5", "-b", "torch:compile=maybe"], "option compile must be bool, got 'maybe'"),
    (["run", "-m", "lenet5", "-b", "numpy:memory_plan=yes"], "option memory_plan must be bool | None, got 'yes'"),
    (["run", "-m", "lenet5", "-b", "numpy:memory_plan=2"], "option memory_plan must be bool | None"),
])
def test_case_axes_are_refused_in_backend_options(tmp_path, capsys, argv, message):
    code, _, err = run_cli(capsys, *argv, *(["-o", str(tmp_path / "out")] if argv[0] in ("run", "passes") else []))
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


# -- compare is a gate ---------------------------------------------------------------------------------------------
def test_compare_of_an_empty_new_file_is_an_error(tmp_path, capsys):
    base, empty = write(tmp_path / "base.jsonl", record()), write(tmp_path / "empty.jsonl")
    code, out, err = run_cli(capsys, "compare", base, empty)  # was: exit 0, "0 regression(s)"
    assert code == 2 and "new file holds no results" in err and out == ""
    code, _, err = run_cli(capsys, "compare", empty, base)
    assert code == 2 and "base file holds no results" in err


def test_compare_fails_when_the_new_file_lacks_cases_unless_a_subset_is_allowed(tmp_path, capsys):
    base = write(tmp_path / "base.jsonl", record("lenet5"), record("resnet18"))
    subset = write(tmp_path / "new.jsonl", record("lenet5"))
    code, out, _ = run_cli(capsys, "compare", base, subset)  # was: exit 0, "0 regression(s)"
    assert code == 1 and "only in base" in out and "1 case(s) of the base missing from the new file" in out
    code, out, _ = run_cli(capsys, "compare", base, subset, "--allow-subset")
    assert code == 0 and "accepted (--allow-subset)" in out
    code, out, _ = run_cli(capsys, "compare", base, subset, "--format", "json")
    doc = json.loads(out)
    assert code == 1 and doc["missing"] == 1 and doc["failed"] is True and doc["regressions"] == 0
    superset = write(tmp_path / "more.jsonl", record("lenet5"), record("resnet18"), record("vgg11"))
    assert run_cli(capsys, "compare", base, superset)[0] == 0  # a case only in new fails nothing


def test_compare_refuses_a_non_finite_median_and_a_record_without_samples_is_inconclusive():
    nan = record()
    nan["timing"] = {**nan["timing"], "median": float("nan")}
    with pytest.raises(BenchError, match=r"'timing\.median' must be a finite number"):  # was: verdict "same"
        compare_records([record()], [nan])
    with pytest.raises(BenchError, match=r"'timing\.median' must be a finite number"):
        compare_records([{**record(), "timing": {**record()["timing"], "median": float("inf")}}], [record()])
    no_samples = {**record(median=2e-3), "timing": {**record(median=2e-3)["timing"], "samples": []}}
    (row,) = compare_records([record()], [no_samples]).rows  # was: a ValueError out of mannwhitneyu
    assert row.verdict == "inconclusive" and row.note == "no raw samples to test"
    with pytest.raises(ValueError, match="factor"):
        compare_records([record()], [record()], factor=float("nan"))


# -- correctness: all-NaN against all-NaN is not ok ----------------------------------------------------------------
def test_an_output_that_is_nan_everywhere_like_its_reference_fails_with_the_reason():
    nan = np.full((2, 3), np.nan)
    a = compare(nan, nan)  # was: ok with error 0
    assert not a.ok and "all 6 values are NaN in the output and in the reference alike" in a.reason
    inf = np.full((1, 2, 2, 2), -np.inf)
    assert not compare(inf, inf).ok and "NaN or infinite" in compare(inf, inf).reason
    assert compare(inf, inf, nonfinite_expected=True).ok  # an op known to produce it (a window in the padding)
    some = np.array([[1.0, -np.inf], [2.0, 3.0]])
    assert compare(some, some).ok  # non-finite at the same places, with a finite remainder: as before
    assert not compare(np.array([1.0, np.nan]), np.array([1.0, 2.0])).ok


# -- reports: cells escaped, stale plots removed, the message lists what was written --------------------------------
def test_report_markdown_escapes_pipes_newlines_and_html(tmp_path):
    broken = record(backend="other", status="error")
    broken["message"] = "a | b\nc <script>x</script> \\"
    results = write(tmp_path / "r.jsonl", record(), broken)
    md = (write_report([results], tmp_path / "rep").directory / "report.md").read_text()
    row = next(ln for ln in md.splitlines() if "a \\| b" in ln and ln.startswith("| aaaa"))  # "Cases that did not run"
    assert row.count(" | ") == 3  # four cells: machine, case, status, message; the message's own | is escaped
    assert "<br>c &lt;script&gt;" in row and "<script>" not in md and row.rstrip().endswith("\\\\ |")
    assert md_text("x|y\r\nz") == "x\\|y<br>z"


def test_report_of_records_without_samples_or_flops_draws_what_it_can(tmp_path, capsys):
    bare = record()
    bare["timing"] = {**bare["timing"], "samples": []}
    bare.pop("gflops")
    code, _, err = run_cli(capsys, "report", write(tmp_path / "r.jsonl", bare), "-o", str(tmp_path / "rep"))
    assert code == 0, err  # was: ValueError out of matplotlib (a figure with 0 rows)
    assert "latency.png" not in err and "roofline.png" not in err and "throughput.png" in err


def test_report_into_an_older_report_s_folder_removes_its_stale_plots_and_lists_what_it_wrote(tmp_path, capsys):
    out = tmp_path / "rep"
    out.mkdir()
    for stale in ("speedup.png", "roofline.png"):
        (out / stale).write_bytes(b"an older report's plot")
    (out / "notes.txt").write_text("mine")
    only_errors = write(tmp_path / "r.jsonl", record(status="error"))  # nothing ran ok: no plot at all
    code, _, err = run_cli(capsys, "report", only_errors, "-o", str(out))
    assert code == 0
    # was: "wrote index.html, report.md, roofline.png, speedup.png": the older report's plots, as if written now
    assert err == (f"convbench report: wrote report.md, index.html to {out}; removed speedup.png, roofline.png of "
                   "an older report\n")
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "notes.txt", "report.md"]
    md = (out / "report.md").read_text()
    assert "speedup.png" not in md and "roofline.png" not in md


@pytest.mark.parametrize("command", [["backends"], ["check", "-m", "lenet5", "-b", "numpy"],
                                     ["run", "-m", "lenet5", "-b", "numpy"], ["profile", "-m", "lenet5"]])
def test_a_backend_module_that_does_not_import_is_one_line_exit_2(tmp_path, capsys, command):
    module = tmp_path / "plugin.py"
    module.write_bytes(b"def broken(:\n\xff")
    argv = [*command, "--backend-module", str(module)] + (["-o", str(tmp_path / "r.jsonl")] if "run" in command
                                                           else [])
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "failed to import: UnicodeDecodeError" in err and err.count("\n") == 1
    assert module.read_bytes() == b"def broken(:\n\xff"


def test_a_message_of_several_lines_is_printed_as_one(monkeypatch, capsys):
    from convbench.cli import one_line
    from convbench.commands import summary
    from convbench.ir.onnx_import import OnnxImportError

    error = OnnxImportError("m", [("a", "Pad", "no IR op for it"), ("b", "Erf", "no IR op for it")])
    assert one_line(str(error)) == ("ONNX model 'm': 2 node(s) cannot be imported: 'a' (Pad): no IR op for it; "
                                    "'b' (Erf): no IR op for it")

    def fail(args):
        raise error

    monkeypatch.setattr(summary, "run", fail)
    code, _, err = run_cli(capsys, "summary", "lenet5")
    assert code == 2 and err.count("\n") == 1 and "'b' (Erf)" in err
