"""``convbench run --interleave`` (bench/interleave.py, launch.Worker, worker.py's serve job): the records carry
the rounds, the rotation and the per-round medians; a worker that crashes mid-run records its status while the
others go on; the records read back through ``report``'s and ``compare``'s loader."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from convbench.bench.errors import BenchError
from convbench.bench.interleave import (
    OTHER_CORES_LIMIT,
    Rounds,
    cpu_seconds,
    group_key,
    loaded,
    other_cores,
    rotated,
    round_ratios,
    run_interleaved,
)
from convbench.bench.launch import Worker, child_env
from convbench.bench.record import load_records
from convbench.bench.runner import Sweep, plan
from convbench.bench.stats import Policy

HERE = Path(__file__).resolve()
TINY = Policy(warmup_s=0.0, warmup_calls=1, min_time_s=0.0, max_time_s=0.2, min_samples=3)


# -- peer factories the workers load from this file (worker.load_factory) ------------------------------------

def numpy_then_crash(graph, params, case):
    """The NumPy reference, crashing with SIGSEGV on its 6th call: after setup (2) and round 1 (3), in round 2."""
    from convbench.backends import get

    exe = get("numpy").compile(graph, params)
    calls = [0]

    def run(x: np.ndarray) -> np.ndarray:
        calls[0] += 1
        if calls[0] == 6:
            os.kill(os.getpid(), signal.SIGSEGV)
        return exe(x)

    return run


def hang_in_setup(graph, params, case):
    import time

    time.sleep(60)


# -- the pieces -----------------------------------------------------------------------------------------------

def test_rotation_and_groups() -> None:
    assert [rotated("abc", r) for r in range(4)] == [list("abc"), list("bca"), list("cab"), list("abc")]
    a, b = plan(["lenet5"], ["numpy", "torch"], [2], ["float32"], ["small"], threads=1)
    assert group_key(a) == group_key(b) == f"lenet5@{a.image_size}/b2/float32/t1"
    assert loaded(3.1, 2) and not loaded(2.4, 2) and not loaded(None, 2)
    with pytest.raises(BenchError, match="rounds"):
        Rounds(rounds=0)
    with pytest.raises(BenchError, match="gap"):
        Rounds(gap_s=-1)


def test_worker_answers_and_reports_a_timeout(tmp_path: Path) -> None:
    """The worker protocol alone: a setup that hangs past the timeout is killed and says so."""
    (case,) = plan(["lenet5"], ["numpy"], [1], ["float32"], ["small"], threads=1)
    job = {"kind": "serve", "case": case.to_dict(), "policy": {}, "reference": None, "reference_error": "skipped",
           "factory": f"{HERE}:hang_in_setup"}
    with Worker("convbench.bench.worker", job, child_env(1), tmp_path) as w:
        reply = w.reply(timeout_s=1.5)
        assert reply.status == "timeout" and "no reply after 1.5 s" in reply.result["message"]
        assert w.request({"op": "round", "calls": 1}, 1.0) is reply  # dead: every later request answers the same
    assert w.proc.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_interleaved_records_and_a_crash(tmp_path: Path) -> None:
    cases = plan(["lenet5"], ["numpy", "torch", "numpy:memory_plan=false"], [2], ["float32"], ["small"], threads=1)
    crash = cases[2]
    out = tmp_path / "r.jsonl"
    sweep = Sweep(cases, out, TINY, timeout_s=120, gemm_n=0)
    rounds = Rounds(rounds=3, calls=3, gap_s=0.01, factories={crash.id: f"{HERE}:numpy_then_crash"})
    events: list[str] = []
    counts = run_interleaved(sweep, rounds, lambda kind, case, data: events.append(kind))
    assert counts == {"ok": 2, "error": 1}
    assert events.count("round") == 3 and events.count("done") == 3
    records = {r.case.backend: r for r in load_records(out)}  # the loader report and compare use
    numpy, torch, bad = records["numpy"], records["torch"], records[crash.backend]

    for r in (numpy, torch):
        assert r.status == "ok" and r.correct is True and r.compile.compile_s > 0
        assert r.memory.static_param_bytes > 0 and r.memory.rss_baseline_bytes > 0  # as a sweep's record
        il = r.interleave
        assert il is not None and il.rounds == 3 and len(il.round_medians) == 3 and len(il.round_loadavg) == 3
        assert len(il.round_other_cores) == 3 and all(o is not None and o >= 0 for o in il.round_other_cores)
        assert 1 <= il.calls_per_round <= 3 and r.timing["n"] == 3 * il.calls_per_round
        assert r.timing["stop_reason"] == f"interleaved: 3 rounds × {il.calls_per_round} calls"
        # the per-round medians are the medians of that round's calls, in order; the record keeps the samples at
        # six significant digits (`stats.Stats.to_dict`) and the medians at full precision, hence the tolerance
        k = il.calls_per_round
        assert il.round_medians == pytest.approx([float(np.median(r.samples[i * k:(i + 1) * k])) for i in range(3)],
                                                 rel=1e-5)  # half a unit of the sixth digit: ≤ 5e-6
        assert il.group == group_key(r.case) and il.gap_s == 0.01
        assert [il.order[i][p] for i, p in enumerate(il.positions)] == [r.case.backend] * 3
    # rotation: round r starts at case r; the crashed one (in round 2) is gone from round 3 on
    assert numpy.interleave.order == torch.interleave.order == bad.interleave.order == [
        ["numpy", "torch", crash.backend], ["torch", crash.backend, "numpy"], ["numpy", "torch"]]
    assert numpy.interleave.positions == [0, 2, 0] and torch.interleave.positions == [1, 0, 1]

    assert bad.status == "error" and "in round 2" in bad.message and "SIGSEGV" in bad.message
    assert bad.interleave.rounds == 1 and bad.timing is None
    assert ratios_ok(numpy, torch)
    # benchmarks/cpu_peers.py's table of these records: one group, numpy as the peer, the crashed case listed
    import importlib.util

    spec = importlib.util.spec_from_file_location("cpu_peers", Path(__file__).parents[1] / "benchmarks/cpu_peers.py")
    cpu_peers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cpu_peers)
    text = cpu_peers.table(list(records.values()), {"numpy"})
    assert text.count("### ") == 1 and "other cores (max)" in text and f"| {crash.backend} | error |" in text, text


def ratios_ok(a, b) -> bool:
    ratios = round_ratios(a.interleave, b.interleave)
    return len(ratios) == 3 and all(x > 0 for x in ratios)


@pytest.mark.slow  # two workers and a reference child: 3–6 s
def test_cli_interleave_writes_records(tmp_path: Path) -> None:
    from convbench.cli import main

    out = tmp_path / "cli.jsonl"
    rc = main(["run", "-m", "lenet5", "-b", "numpy", "--batch", "1", "--image-size", "small", "--threads", "1",
               "--interleave", "--rounds", "2", "--round-calls", "2", "--round-gap", "0", "--max-time", "0.05",
               "--warmup", "0", "--gemm-size", "0", "-q", "-o", str(out)])
    assert rc == 0
    (r,) = load_records(out)
    assert r.status == "ok" and r.interleave.rounds == 2 and r.interleave.order == [["numpy"], ["numpy"]]
    from convbench.bench.report import load

    df, _ = load([out])  # report's reader: the loaded flag reaches its table ("Loaded run" section)
    assert df.loaded.tolist() == [r.interleave.loaded] and r.interleave.loaded == any(
        loaded(v, os.cpu_count(), o) for v, o in zip(r.interleave.round_loadavg, r.interleave.round_other_cores,
                                                     strict=True))


def test_a_round_is_loaded_by_the_load_average_or_by_other_cores() -> None:
    assert not loaded(2.4, 2) and loaded(2.6, 2) and not loaded(None, None, None)
    assert loaded(0.1, 2, OTHER_CORES_LIMIT + 0.01) and not loaded(0.1, 2, OTHER_CORES_LIMIT)
    # (machine busy s, own s): 3 s of the machine's, 1 s of them the timed worker's, over 2 s of wall: one core
    assert other_cores((10.0, 4.0), (13.0, 5.0), 2.0) == pytest.approx(1.0)
    assert other_cores((10.0, 4.0), (10.5, 4.6), 1.0) == 0.0  # counters tick at different times: never negative
    assert other_cores(None, (1.0, 1.0), 1.0) is None and other_cores((1.0, 1.0), (2.0, 1.0), 0.0) is None


def test_other_cores_sees_a_busy_process_beside_an_idle_one() -> None:
    import subprocess
    import sys
    import time

    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 30: pass"])
    try:
        time.sleep(0.3)  # both started
        before, t0 = cpu_seconds(idle.pid), time.perf_counter()
        time.sleep(0.8)
        after = cpu_seconds(idle.pid)
        other = other_cores(before, after, time.perf_counter() - t0)
        assert before is not None and after is not None and after[1] - before[1] < 0.05  # the idle one: no CPU
        # the busy one had a core while the idle one was "timed" (≥ 0.3: xdist's other worker may share the cores)
        assert other is not None and other >= 0.3
        assert cpu_seconds(2**22 + 12345) is None  # no such process
    finally:
        idle.kill()
        busy.kill()
