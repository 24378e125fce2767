"""Sweeps across machines on a real multi-node Ray cluster on 127.0.0.1 (`ray.cluster_utils.Cluster`): a head
that runs nothing and 1-CPU worker nodes with different tags, a small object store, no dashboard.

The drivers run as `convbench run --cluster ADDRESS` subprocesses, as a user runs them (and so that the
misbehaving test backends, registered by --backend-module, are never registered in this pytest process).
"""

from __future__ import annotations

import datetime as dt
import itertools
import signal
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

import psutil
import pytest

from convbench.bench import cluster as cb  # imports Ray only when a cluster is used
from convbench.bench.errors import BenchError
from convbench.bench.launch import ChildResult
from convbench.bench.runner import best_calibration, make_record, plan
from convbench.bench.schema import append_record, read_records

needs_ray = pytest.mark.skipif(find_spec("ray") is None,
                               reason="Ray is not installed (pip install -c constraints.txt 'convbench[cluster]')")

BACKENDS = str(Path(__file__).with_name("_bench_backends.py"))
FAST = ["-m", "lenet5", "--image-size", "small", "--threads", "1", "--min-time", "0.02", "--max-time", "0.05",
        "--warmup", "0", "--gemm-size", "0", "--timeout", "60", "--backend-module", BACKENDS, "-q"]


@pytest.fixture(scope="module")
def cluster():
    c = cb.start_local([{"machine": "alpha", "gpu": "Fake H100 80GB"}, {"machine": "beta"}])
    yield c
    c.shutdown()


def drive(c, out: Path, backends: str, *extra: str, check: bool = True, wait: bool = True):
    cmd = [sys.executable, "-m", "convbench", "run", *FAST, "-b", backends, "--cluster", c.address, "-o", str(out),
           *extra]
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def span(r: dict) -> tuple[float, float]:
    start = dt.datetime.fromisoformat(r["started"]).timestamp()
    return start, start + r["duration_s"]


@pytest.fixture(scope="module")
def swept(cluster, tmp_path_factory):
    out = tmp_path_factory.mktemp("fleet") / "out"
    # abort and a foreign SIGKILL before the well-behaved cases: the agent must survive them
    drive(cluster, out, "bench_abort,bench_killed,numpy")
    return out


@needs_ray
@pytest.mark.slow
def test_one_file_per_machine_every_case_once_named_and_never_overlapping(swept):
    assert sorted(p.name for p in swept.iterdir() if not p.name.startswith(".")) == ["alpha.jsonl", "beta.jsonl"]
    node_ids = set()
    for name in ("alpha", "beta"):
        records = read_records(swept / f"{name}.jsonl")
        ids = [r["case_id"] for r in records]
        assert len(ids) == len(set(ids)) == 3  # each of the 3 backends once
        assert {r["machine"]["name"] for r in records} == {name}
        node_ids |= {r["machine"]["ray_node_id"] for r in records}
        status = {r["case"]["backend"]: r["status"] for r in records}
        assert status == {"bench_abort": "error", "bench_killed": "oom", "numpy": "ok"}
        assert all(r["correctness"]["ok"] for r in records if r["status"] == "ok")
        spans = sorted(span(r) for r in records)
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end - 2e-3, f"two cases overlapped on {name}"  # `started` has millisecond resolution
    assert len(node_ids) == 2


@needs_ray
@pytest.mark.slow
def test_report_over_the_directory_has_a_section_per_machine(swept, tmp_path):
    from convbench.bench.report import write_report

    write_report([swept], tmp_path / "rep")
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "## alpha (" in text and "## beta (" in text


@needs_ray
@pytest.mark.slow
def test_resume_on_selected_machines_requeues_only_the_missing_cases(cluster, swept, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("alpha", "beta"):
        lines = (swept / f"{name}.jsonl").read_text().splitlines(keepends=True)
        (out / f"{name}.jsonl").write_text("".join(lines[:1]))  # two cases lost from each
    beta_before = (out / "beta.jsonl").read_bytes()
    drive(cluster, out, "bench_abort,bench_killed,numpy", "--resume", "--on", "gpu=h100")
    alpha = read_records(out / "alpha.jsonl")
    assert len(alpha) == 3 and len({r["case_id"] for r in alpha}) == 3
    assert len({r["run_id"] for r in alpha[1:]}) == 1 and alpha[1]["run_id"] != alpha[0]["run_id"]
    assert (out / "beta.jsonl").read_bytes() == beta_before  # not selected: untouched
    done = drive(cluster, out, "numpy", "--machines", "gamma", check=False)
    assert done.returncode == 2 and "no agent named gamma" in done.stderr


def _raylet(node) -> int:
    from ray._private import ray_constants

    return node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid


def _node(c, name: str):
    [node] = [n for n in c.worker_nodes if (n._ray_params.labels or {}).get(cb.NAME_LABEL) == name]
    return node


def _hang_child(raylet: int) -> int | None:
    """The pid of a case child running bench_hang under this node (other tests' children are not ours)."""
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        try:
            if ("convbench.bench.worker" in cmd and len(cmd) > 3 and "bench_hang" in Path(cmd[-2]).read_text()
                    and raylet in {q.pid for q in p.parents()}):
                return p.pid
        except (OSError, psutil.Error):
            continue
    return None


def _wait(until, what: str, driver=None, seconds: float = 90):
    deadline = time.monotonic() + seconds
    while not (value := until()):
        assert time.monotonic() < deadline and (driver is None or driver.poll() is None), \
            (what, driver.communicate() if driver else None)
        time.sleep(0.2)
    return value


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@needs_ray
@pytest.mark.slow
def test_ctrl_c_of_the_driver_leaves_valid_files_and_no_lock(cluster, tmp_path):
    out = tmp_path / "out"
    driver = drive(cluster, out, "numpy,bench_hang", "--machines", "alpha", wait=False)
    raylet = _raylet(_node(cluster, "alpha"))
    child = _wait(lambda: _hang_child(raylet), "the hanging case to start", driver)
    driver.send_signal(signal.SIGINT)
    _, err = driver.communicate(timeout=60)
    assert driver.returncode == 130 and "--resume completes the sweep" in err
    assert [r["case"]["backend"] for r in read_records(out / "alpha.jsonl")] == ["numpy"]
    assert sorted(p.name for p in out.iterdir()) == ["alpha.jsonl"]  # the lock went with the driver
    _wait(lambda: _gone(child), "the hanging case's child to die with its agent (PDEATHSIG)", seconds=20)


@needs_ray
@pytest.mark.slow
def test_a_node_lost_mid_case_is_that_cases_error_and_resume_finishes_the_machine(cluster, tmp_path):
    out = tmp_path / "out"
    gamma = cluster.add_node(num_cpus=1, resources={cb.RESOURCE: 1}, labels={cb.NAME_LABEL: "gamma"},
                             node_ip_address="127.0.0.1", object_store_memory=cb.LOCAL_OBJECT_STORE)
    driver = drive(cluster, out, "bench_hang,numpy", "--machines", "gamma", wait=False)
    child = _wait(lambda: _hang_child(_raylet(gamma)), "the hanging case to start", driver)
    cluster.remove_node(gamma, allow_graceful=False)
    _, err = driver.communicate(timeout=120)
    assert driver.returncode == 0, err[-3000:]
    [lost] = read_records(out / "gamma.jsonl")
    assert lost["case"]["backend"] == "bench_hang" and lost["status"] == "error"
    assert lost["message"].startswith("node lost: gamma") and "1 more case(s)" in lost["message"]
    _wait(lambda: _gone(child), "the case's child to die with its node", seconds=20)
    cluster.add_node(num_cpus=1, resources={cb.RESOURCE: 1}, labels={cb.NAME_LABEL: "gamma"},
                     node_ip_address="127.0.0.1", object_store_memory=cb.LOCAL_OBJECT_STORE)
    drive(cluster, out, "bench_hang,numpy", "--machines", "gamma", "--resume")
    records = read_records(out / "gamma.jsonl")
    assert [r["case"]["backend"] for r in records] == ["bench_hang", "numpy"]  # the lost case is not re-run
    assert records[1]["status"] == "ok"


def test_selection_by_name_and_tag():
    described = {"a": {"tags": {"name": "a", "cpu": "AMD EPYC 9454", "gpu": "NVIDIA H100 80GB"}},
                 "b": {"tags": {"name": "b", "cpu": "Intel Xeon", "gpu": "none"}}}
    assert cb.select(described, [], cb.parse_on(["gpu=h100"])) == ["a"]
    assert cb.select(described, ["a", "b"], cb.parse_on(["cpu=xeon"])) == ["b"]
    assert cb.select(described, [], []) == ["a", "b"]
    for machines, on, message in ((["c"], [], "no agent named c"), ([], ["rack=1"], "no machine has a tag 'rack'"),
                                  (["a"], ["cpu=xeon"], "no machine matches")):
        with pytest.raises(BenchError, match=message):
            cb.select(described, machines, cb.parse_on(on))
    with pytest.raises(BenchError, match="KEY=TEXT"):
        cb.parse_on(["gpu"])


def test_a_cluster_output_must_be_a_directory(tmp_path):
    from convbench.bench.runner import Sweep, plan

    (tmp_path / "f.jsonl").write_text("")
    sweep = Sweep(plan(["lenet5"], ["numpy"], [1], ["float32"], ("small",), 1), tmp_path / "f.jsonl")
    with pytest.raises(BenchError, match="names a directory"):
        cb.run_cluster(sweep, "local:1")


def test_an_interpreter_run_has_no_peak_share_and_a_faster_than_peak_case_keeps_its_figure():
    [case] = plan(["lenet5"], ["numpy"], [1], ["float32"], ("small",), 1)

    def record(details: dict) -> float | None:
        child = ChildResult("ok", {"compile": {"compile_s": 0.1, "report": {"details": details}}, "gflops": 100.0}, 1.0)
        return make_record(case, child, {"gemm_gflops": 50.0}, {}, "r", "now").peak_fraction

    assert record({"mode": "interpreter"}) is None
    assert record({"mode": "cuda"}) == 2.0  # kept: reports flag it rather than hide a calibration problem
    best = best_calibration({"gemm_gflops": 40.0}, {"error": "timeout"}, {"gemm_gflops": 50.0, "runs": 2})
    assert best["gemm_gflops"] == 50.0 and best["runs"] == 4


def test_a_report_times_no_interpreter_and_shows_no_peak_share_over_100_percent(tmp_path):
    from convbench.bench.report import load, results_table

    out = tmp_path / "r.jsonl"
    timing = {"n": 5, "samples": [0.01] * 5, "median": 0.01, "p90": 0.01, "iqr_rel": 0.0}
    for backend, mode, gflops in (("numpy", None, 10.0), ("triton", "interpreter", 0.1), ("torch", None, 60.0)):
        [case] = plan(["lenet5"], [backend], [1], ["float32"], ("small",), 1)
        result = {"compile": {"compile_s": 0.1, "report": {"details": {"mode": mode} if mode else {}}},
                  "gflops": gflops, "timing": timing, "throughput_ips": 100.0}
        append_record(out, make_record(case, ChildResult("ok", result, 1.0), {"gemm_gflops": 50.0},
                                       {"machine_id": "m", "name": "m"}, "r", "now").to_dict())
    df, _ = load([out])
    table = results_table(df).set_index("backend")
    assert df.set_index("backend").loc["triton", ["median_s", "gflops", "speedup"]].isna().all()
    assert table.loc["triton", "status"] == "ok: checked under an interpreter, not timed"
    assert table.loc["triton", "median ms"] == "—" and table.loc["numpy", "median ms"] == "10.000"
    assert table.loc["torch", "% peak"] == "above peak: calibration low" and table.loc["numpy", "% peak"] == "20.0%"


@needs_ray
def test_an_address_nothing_answers_on_fails_at_once(tmp_path):
    from convbench.bench.runner import Sweep, plan

    sweep = Sweep(plan(["lenet5"], ["numpy"], [1], ["float32"], ("small",), 1), tmp_path / "out")
    started = time.monotonic()
    with pytest.raises(BenchError, match="no Ray head answers"):
        cb.run_cluster(sweep, "127.0.0.1:1")
    with pytest.raises(BenchError, match="local:N needs N"):
        cb.run_cluster(sweep, "local:0")
    assert time.monotonic() - started < 10 and not (tmp_path / "out").exists()
