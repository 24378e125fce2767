"""The sweep end to end: real child processes on lenet5 / resnet18 at small sizes, with short time caps.

Covers the acceptance of the harness issue: 2 models × 2 backends × 2 batches give 8 complete lines; a report
and a comparison come from them; crash, hang, MemoryError, a foreign SIGKILL and an unsupported node are each
recorded as the case's status while the sweep goes on; SIGINT and SIGKILL of the parent leave valid JSONL that
``--resume`` completes without duplicates.

Sweeps that use the misbehaving backends of _bench_backends.py run as `convbench run` subprocesses: registered in
this pytest process, a backend that calls os.abort() would be listed by every later `names()` here.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

import psutil
import pytest

from convbench.backends import get, names
from convbench.bench.runner import Sweep, plan, run_sweep
from convbench.bench.schema import read_records
from convbench.bench.stats import Policy
from convbench.cli import main

BACKENDS = str(Path(__file__).with_name("_bench_backends.py"))
FAST = Policy(warmup_s=0.01, min_time_s=0.02, max_time_s=0.2, min_samples=5)
FAST_ARGS = ["--min-time", "0.02", "--max-time", "0.2", "--warmup", "0.01", "--threads", "1", "-q"]


def sweep_cmd(out: Path, models: str, backends: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "convbench", "run", "-m", models, "-b", backends, "--backend-module", BACKENDS,
            "-o", str(out), *FAST_ARGS, *extra]


def run_cli_sweep(out: Path, models: str, backends: str, *extra: str) -> list[dict]:
    done = subprocess.run(sweep_cmd(out, models, backends, *extra), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return read_records(out)


# The reference under another name is the second backend here: a torch child spends seconds importing torch,
# which would triple this fixture's time; test_torch_case_in_the_harness runs one real torch case instead.
SWEEP8 = ("lenet5,resnet18", "numpy,bench_twin", "--batch", "1,2", "--image-size", "small", "--gemm-size", "64",
          "--timeout", "300")


@pytest.fixture(scope="module")
def sweep8(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "results.jsonl"
    return out, run_cli_sweep(out, *SWEEP8)


@pytest.mark.slow  # whole sweeps of child processes: 6-14 s each
def test_sweep_writes_one_complete_line_per_case(sweep8):
    _, records = sweep8
    assert len(records) == 8 and {r["status"] for r in records} == {"ok"}
    assert len({r["case_id"] for r in records}) == 8
    for r in records:
        t = r["timing"]
        assert len(t["samples"]) == t["n"] >= 3
        assert t["min"] <= t["median"] <= t["p90"] <= t["p99"] <= t["max"]
        assert {"mean", "stdev", "iqr", "iqr_rel", "converged", "stop_reason", "warmup_calls"} <= set(t)
        assert r["throughput_ips"] == pytest.approx(r["case"]["batch"] / t["median"])
        assert r["gflops"] == pytest.approx(r["model_info"]["flops"] / t["median"] / 1e9)
        assert r["peak_fraction"] == pytest.approx(r["gflops"] / r["calibration"]["gemm_gflops"])
        # the best BLAS present sets the peak: numpy's always, torch's where torch is installed
        assert r["calibration"]["gemm_gflops"] == max(r["calibration"]["gemm_all"].values())
        assert r["calibration"]["gemm_all"].keys() >= ({"numpy", "torch"} if find_spec("torch") else {"numpy"})
        assert r["schema"] == 2 and r["compile"]["compile_s"] >= 0
        report = r["compile"]["report"]  # the typed compile report; a third-party backend (the twin) makes none
        assert report is None if r["case"]["backend"] == "bench_twin" else report["backend"] == "numpy"
        mem = r["memory"]
        assert mem["run_rss_peak_delta_bytes"] >= 0 and mem["rss_baseline_bytes"] > 0
        assert mem["static_activation_peak_bytes"] > 0 and mem["static_param_bytes"] > 0
        assert r["correctness"]["ok"] and r["correctness"]["top1"] == 1.0
        m = r["machine"]
        assert {"machine_id", "cpu", "cores_logical", "ram_bytes", "os", "python", "versions", "git_commit",
                "git_dirty", "cpu_flags"} <= set(m)
        assert r["worker"]["thread_env"]["OMP_NUM_THREADS"] == "1"


def test_resume_of_a_finished_sweep_runs_nothing(sweep8):
    out, _ = sweep8
    before = out.read_bytes()
    assert len(run_cli_sweep(out, *SWEEP8, "--resume")) == 8
    assert out.read_bytes() == before


def test_report_and_compare_from_the_sweep(sweep8, tmp_path, capsys):
    out, _ = sweep8
    assert main(["report", str(out), "-o", str(tmp_path / "rep")]) == 0
    files = {p.name for p in (tmp_path / "rep").iterdir()}
    assert {"report.md", "index.html", "throughput.png", "speedup.png", "latency.png", "memory.png",
            "roofline.png"} <= files
    page = (tmp_path / "rep" / "index.html").read_text()
    assert page.count("src='data:image/png;base64,") == 5 and "http" not in page  # self-contained
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "lenet5@32" in md and "Comparison of CNN architectures" in md

    assert main(["compare", str(out), str(out)]) == 0
    slower = tmp_path / "slower.jsonl"
    with open(slower, "w") as f:
        for r in read_records(out):
            t = r["timing"]
            for k in ("min", "median", "mean", "p90", "p99", "max"):
                t[k] *= 1.5
            t["samples"] = [s * 1.5 for s in t["samples"]]
            f.write(json.dumps(r) + "\n")
    capsys.readouterr()
    assert main(["compare", str(out), str(slower)]) == 1
    table = capsys.readouterr().out
    # lenet5 has hundreds of samples per case: significant. resnet18 may have too few (or too noisy) samples for
    # p < 0.01, and compare must then say so rather than call it a regression.
    rows = [line for line in table.splitlines() if line.startswith("| lenet5") or line.startswith("| resnet18")]
    assert len(rows) == 8
    for row in rows:
        assert "| regression" in row if row.startswith("| lenet5") else ("| regression" in row or "p = " in row
                                                                          or "too few samples" in row)


@pytest.mark.skipif(not ("torch" in names() and get("torch").available()[0]), reason="no torch backend here")
def test_torch_case_in_the_harness(tmp_path):
    out = tmp_path / "r.jsonl"
    run_sweep(Sweep(plan(["lenet5"], ["torch"], [2], ["float32"], threads=1), out, FAST, gemm_n=0))
    (r,) = read_records(out)
    assert r["status"] == "ok", r["message"]
    assert r["correctness"]["ok"] and r["worker"]["torch_threads"] == 1
    assert r["peak_fraction"] is None and r["calibration"] == {"skipped": "calibration turned off"}


@pytest.mark.slow  # whole sweeps of child processes: 6-14 s each
def test_crash_hang_oom_and_unsupported_are_statuses_and_the_sweep_goes_on(tmp_path):
    backends = ["bench_abort", "bench_hang", "bench_hog", "bench_killed", "bench_notanh", "bench_wrong", "bench_gone",
                "numpy"]
    records = run_cli_sweep(tmp_path / "r.jsonl", "lenet5", ",".join(backends), "--timeout", "5", "--gemm-size", "0")
    by = {r["case"]["backend"]: r for r in records}
    assert list(by) == backends
    assert by["bench_abort"]["status"] == "error" and "SIGABRT" in by["bench_abort"]["message"]
    assert by["bench_hang"]["status"] == "timeout" and "5 s" in by["bench_hang"]["message"]
    assert by["bench_hog"]["status"] == "oom" and "MemoryError" in by["bench_hog"]["message"]
    assert by["bench_killed"]["status"] == "oom" and "SIGKILL" in by["bench_killed"]["message"]
    assert by["bench_notanh"]["status"] == "unsupported" and "(tanh)" in by["bench_notanh"]["message"]
    assert by["bench_wrong"]["status"] == "ok" and not by["bench_wrong"]["correctness"]["ok"]
    assert by["bench_gone"]["status"] == "unsupported" and by["bench_gone"]["duration_s"] == 0
    assert by["bench_gone"]["message"] == "backend 'bench_gone' is not available: needs a device this machine lacks"
    assert by["numpy"]["status"] == "ok" and by["numpy"]["correctness"]["ok"]


@pytest.mark.slow  # whole sweeps of child processes: 6-14 s each
def test_a_timeout_answers_the_same_backends_bigger_cases_without_running_them(tmp_path):
    records = run_cli_sweep(tmp_path / "r.jsonl", "lenet5", "bench_hang,numpy", "--batch", "1,2", "--timeout", "3",
                            "--gemm-size", "0")
    hang1, hang2, np1, np2 = records
    assert hang1["duration_s"] >= 3 and "skipped" not in hang1
    assert hang2["status"] == "timeout" and hang2["skipped"] and hang2["duration_s"] == 0
    assert hang2["message"].startswith("not run: bench_hang already timed out on lenet5@32/bench_hang/b1")
    assert np1["status"] == np2["status"] == "ok"  # other backends are not affected


@pytest.mark.slow  # whole sweeps of child processes: 6-14 s each
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_killing_the_sweep_leaves_valid_jsonl_and_resume_completes_it(tmp_path, sig):
    out = tmp_path / "r.jsonl"
    # Started with SIGINT ignored, as a background job of a non-interactive shell is: the sweep must still stop.
    # (An earlier test in the same pytest worker once left SIGINT ignored, and the sweep ran on to its timeout.)
    parent = subprocess.Popen(sweep_cmd(out, "lenet5", "numpy,bench_hang", "--gemm-size", "0", "--timeout", "120"),
                              stderr=subprocess.PIPE, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    deadline = time.monotonic() + 90
    while not (out.exists() and out.read_bytes().count(b"\n") == 1):  # numpy done, bench_hang now in flight
        assert time.monotonic() < deadline and parent.poll() is None, "the first case never finished"
        time.sleep(0.2)
    children = psutil.Process(parent.pid).children(recursive=True)
    while not children:
        children = psutil.Process(parent.pid).children(recursive=True)
    parent.send_signal(sig)
    rc = parent.wait(timeout=30)
    assert rc == (130 if sig == signal.SIGINT else -signal.SIGKILL)
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, "the hanging child outlived the sweep"
    assert [r["case"]["backend"] for r in read_records(out)] == ["numpy"]

    records = run_cli_sweep(out, "lenet5", "numpy,bench_hang", "--gemm-size", "0", "--timeout", "2", "--resume")
    assert [r["case"]["backend"] for r in records] == ["numpy", "bench_hang"]
    assert records[1]["status"] == "timeout"


@pytest.mark.parametrize(("argv", "message"), [
    (["-m", "nosuchnet"], "unknown model 'nosuchnet'"),
    (["-m", "lenet5", "-b", "nosuchbackend"], "unknown backend 'nosuchbackend'"),
    (["-m", "lenet5", "-b", "numpy", "--batch", "0"], "--batch must be integers ≥ 1"),
    (["-m", "lenet5", "-b", "numpy:fast"], "is not KEY=VALUE"),
    (["-m", "resnet18", "-b", "numpy", "--image-size", "8"], "--image-size 8 is below resnet18's minimum 32"),
    (["-m", "lenet5", "-b", "numpy", "--image-size", "big"], "'full', 'small' or an integer"),
    (["-m", "lenet5", "-b", "numpy:memory_plan=maybe"], "option memory_plan must be bool | None, got 'maybe'"),
    (["-m", "lenet5", "-b", "torch:threads=abc"], "torch backend: option threads must be int | None, got 'abc'"),
    (["-m", "lenet5", "-b", "numpy", "--dtype", "float8"], "unknown dtype 'float8'"),
])
def test_bad_arguments_are_one_line_exit_2_and_no_file(argv, message, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    assert main(["run", *argv, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_unwritable_or_existing_output_is_refused(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["run", "-m", "lenet5", "-b", "numpy", "-o", str(blocker / "r.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "a-file is not a directory" in err and err.count("\n") == 1
    existing = tmp_path / "r.jsonl"
    existing.write_text("")
    assert main(["run", "-m", "lenet5", "-b", "numpy", "-o", str(existing)]) == 2
    assert "already exists; pass --resume" in capsys.readouterr().err
    assert existing.read_text() == ""


def test_scenarios_image_sizes_and_backend_specs_shape_the_plan(tmp_path):
    from convbench.cli import build_parser
    from convbench.commands.run import build_sweep

    def cases(*argv: str):
        args = build_parser().parse_args(["run", *argv, "-o", str(tmp_path / "r.jsonl"), "--threads", "3"])
        return build_sweep(args).cases

    assert {c.batch for c in cases("-m", "lenet5", "-b", "numpy", "--batch", "1,4,8", "--scenario", "latency")} == {1}
    assert {c.batch for c in cases("-m", "lenet5", "-b", "numpy", "--batch", "1,4,8", "--scenario", "throughput")} \
        == {8}
    # lenet5's small and full sizes are both 32: one case, not two
    got = cases("-m", "lenet5,resnet18", "-b", "numpy,numpy:passes=default", "--image-size", "small,full")
    assert [c.id for c in got] == [
        "lenet5@32/numpy/b1/float32/t3", "lenet5@32/numpy:passes=default/b1/float32/t3",
        "resnet18@32/numpy/b1/float32/t3", "resnet18@32/numpy:passes=default/b1/float32/t3",
        "resnet18@224/numpy/b1/float32/t3", "resnet18@224/numpy:passes=default/b1/float32/t3"]
    assert got[1].options == {"passes": "default"} and got[1].backend_name == "numpy"
    # options are typed against the backend's Options: "1" is memory_plan=True, not the integer 1
    assert cases("-m", "lenet5", "-b", "numpy:memory_plan=1")[0].options == {"memory_plan": True}
    # 'all' is every registered backend, as in check (one that cannot run here is recorded as unsupported)
    assert [c.backend for c in cases("-m", "lenet5", "-b", "all")] == names()
