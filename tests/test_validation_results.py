"""Results files and the sweep's output (issue 13): every line typed before anything is touched, a torn last line
recognised only in an otherwise valid results file, ``--resume``/``--overwrite`` refuse anything that is not a
regular file of results, and one sweep at a time owns an output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _bench_records import record

from convbench.bench.errors import BenchError
from convbench.bench.output import lock_path, locked, write_atomic
from convbench.bench.record import load_records
from convbench.bench.schema import SchemaError, read_records, repair, scan
from convbench.cli import main

BACKENDS = str(Path(__file__).with_name("_bench_backends.py"))
# lenet5 on numpy at 2 threads: the case of _bench_records.record(), so a resumed sweep finds it done
RUN = ["run", "-m", "lenet5", "-b", "numpy", "--threads", "2", "--gemm-size", "0", "-q"]


def line(**changes) -> bytes:
    return (json.dumps({**record(), **changes}) + "\n").encode()


def results(path: Path, *lines: bytes) -> bytes:
    data = b"".join(lines) if lines else line()
    path.write_bytes(data)
    return data


# -- reading: every field typed, each failure one error naming file, line and field ------------------------------
@pytest.mark.parametrize(("changes", "message"), [
    ({"schema": "1"}, "'schema' must be an integer ≥ 1, got '1'"),  # was TypeError: '>' between str and int
    ({"schema": True}, "'schema' must be an integer"),
    ({"timing": None}, "status ok needs 'timing.median'"),  # was: a case with no median compared as "same"
    ({"timing": {**record()["timing"], "median": None}}, "status ok needs 'timing.median'"),
    ({"timing": {**record()["timing"], "median": -1.0}}, "a positive number of seconds, got -1.0"),
    ({"timing": {**record()["timing"], "samples": "fast"}}, "field 'timing.samples' must be a list of finite"),
    ({"timing": {**record()["timing"], "samples": [1e-3, None]}}, "field 'timing.samples'"),
    ({"case": {**record()["case"], "batch": "1"}}, "field 'case.batch' must be an integer, got \"1\""),
    ({"case": {**record()["case"], "batch": 0}}, "field 'case.batch' must be ≥ 1"),
    ({"case": {"model": "lenet5"}}, "field 'case' lacks 'image_size'"),
    ({"case": "lenet5"}, "field 'case' must be an object"),
    ({"message": 3}, "field 'message' must be a string"),
    ({"compile": []}, "field 'compile' must be an object or null"),
    ({"compile": {"compile_s": "slow"}}, "field 'compile.compile_s' must be a finite number"),
    ({"correctness": {"ok": "yes"}}, "field 'correctness.ok' must be true or false | null"),
    ({"correctness": {"ok": True, "max_rel": "0"}}, "field 'correctness.max_rel'"),
    ({"machine": {"machine_id": 7}}, "field 'machine.machine_id' must be a string"),
    ({"model_info": {"flops": 1.5}}, "field 'model_info.flops' must be an integer | null"),
    ({"worker": {"pid": "12"}}, "field 'worker.pid'"),
])
def test_each_field_is_typed_and_named(tmp_path, changes, message):
    path = tmp_path / "r.jsonl"
    data = results(path, line(), line(**changes))
    with pytest.raises(SchemaError, match=rf"r\.jsonl:2: .*{_re(message)}"):
        read_records(path)
    assert path.read_bytes() == data


def _re(text: str) -> str:
    import re

    return re.escape(text)


def test_strict_json_per_line(tmp_path):
    path = tmp_path / "r.jsonl"
    results(path, line(), line().replace(b'"median": ', b'"median": NaN, "x": '))
    with pytest.raises(SchemaError, match=r"r\.jsonl:2: NaN is not JSON"):  # was: a NaN median, verdict "same"
        read_records(path)
    results(path, line().replace(b'{"schema": 2,', b'{"schema": 2, "schema": 2,'))
    with pytest.raises(SchemaError, match="appears twice"):
        read_records(path)
    results(path, b"\xff\xfe" + line())
    with pytest.raises(SchemaError, match=r"r\.jsonl:1: not UTF-8"):
        read_records(path)


def test_a_torn_line_is_only_the_start_of_a_record_at_the_end(tmp_path):
    path = tmp_path / "r.jsonl"
    whole = line()
    results(path, whole, whole[:40])  # a write cut short: recognised, skipped with a warning
    with pytest.warns(UserWarning, match="torn last line"):
        assert len(read_records(path)) == 1
    assert scan(path).tail == "torn"
    results(path, whole, b'{"a": 1}')  # a whole JSON object that is not a record: not a torn write
    with pytest.raises(SchemaError, match=r"r\.jsonl:2: not a convbench result"):
        read_records(path)
    results(path, whole, b"hello")  # not the start of a record either
    with pytest.raises(SchemaError, match=r"r\.jsonl:2: not JSON"):
        read_records(path)
    results(path, whole[:40], whole)  # only the last line may be torn
    with pytest.raises(SchemaError, match=r"r\.jsonl:1: not JSON"):
        read_records(path)
    results(path, whole, whole[:-1])  # a whole record without its newline: kept
    assert len(read_records(path)) == 2 and scan(path).tail == "unterminated"


def test_repair_changes_only_a_results_file_and_keeps_a_whole_last_record(tmp_path):
    path = tmp_path / "r.jsonl"
    whole = line()
    results(path, whole, whole[:-1])
    assert repair(path) == 0 and path.read_bytes() == whole + whole  # the newline added, the record kept
    config = tmp_path / "config.json"
    config.write_bytes(b'{"lr": 0.1, "epochs": 90}')  # one line, no newline: was cut to 0 bytes
    with pytest.raises(SchemaError):
        repair(config)
    assert config.read_bytes() == b'{"lr": 0.1, "epochs": 90}'


# -- the sweep's output --------------------------------------------------------------------------------------------
def run_cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


@pytest.mark.parametrize("content", [
    b'{"lr": 0.1, "epochs": 90}',  # a one-line json.dump config: was truncated to 0 bytes, then filled
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10",  # a binary: lost its tail, then was refused
    b"just some notes\nabout the run",
])
@pytest.mark.parametrize("flag", ["--resume", "--overwrite"])
def test_resume_and_overwrite_refuse_a_file_that_is_not_results_untouched(tmp_path, capsys, content, flag):
    out = tmp_path / "out.jsonl"
    out.write_bytes(content)
    code, err = run_cli(capsys, *RUN, "-o", str(out), flag)
    assert code == 2 and f"{flag} refused" in err and "not a convbench results file" in err
    assert err.count("\n") == 1 and out.read_bytes() == content
    assert not lock_path(out).exists()


def test_resume_keeps_a_last_record_that_lacks_its_newline(tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    data = results(out, line()[:-1])
    code, err = run_cli(capsys, *RUN, "-o", str(out), "--resume")
    assert code == 0, err
    assert out.read_bytes() == data + b"\n"  # was: the record cut off and the case measured again


def test_overwrite_refuses_what_is_not_a_regular_file(tmp_path, capsys):
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    link = tmp_path / "null.jsonl"
    link.symlink_to(os.devnull)  # `-o /dev/null --overwrite` deleted /dev/null (as root)
    for out in (fifo, link):
        code, err = run_cli(capsys, *RUN, "-o", str(out), "--overwrite")
        assert code == 2 and "not a regular file" in err, err
        assert os.path.lexists(out)
    assert link.is_symlink() and Path(os.devnull).exists()
    code, err = run_cli(capsys, *RUN, "-o", str(fifo), "--resume")  # and reading a FIFO would block forever
    assert code == 2 and "a FIFO" in err


def test_overwrite_replaces_a_results_file_atomically(tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    old = results(out, line(), line())
    before = out.stat().st_ino
    # bfloat16 is not a numpy dtype: the case is recorded as unsupported without a child process
    code, err = run_cli(capsys, *RUN, "--dtype", "bfloat16", "-o", str(out), "--overwrite")
    assert code == 0, err
    (r,) = load_records(out)
    assert r.status == "unsupported" and out.read_bytes() != old
    assert out.stat().st_ino != before  # a new file renamed over the old, not the old one truncated or unlinked
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]  # no temporary file, no lock file left


def test_a_second_sweep_on_the_same_output_fails_at_once_naming_the_first(tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    first = subprocess.Popen([sys.executable, "-m", "convbench", "run", "-m", "lenet5", "-b", "bench_hang",
                              "--backend-module", BACKENDS, "--timeout", "120", "--gemm-size", "0", "--threads", "1",
                              "-q", "-o", str(out)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (lock_path(out).exists() and lock_path(out).read_text().strip() == str(first.pid)):
            assert time.monotonic() < deadline and first.poll() is None, "the first sweep never took its lock"
            time.sleep(0.1)
        before = out.read_bytes() if out.exists() else None
        start = time.monotonic()
        code, err = run_cli(capsys, *RUN, "-o", str(out), "--resume")  # was: both ran, every case twice
        assert code == 2 and f"in use by another convbench sweep (pid {first.pid}" in err, err
        assert time.monotonic() - start < 10 and err.count("\n") == 1
        assert (out.read_bytes() if out.exists() else None) == before
    finally:
        first.send_signal(2)  # SIGINT: the first sweep records what it finished and releases its lock
        first.wait(timeout=60)
    assert not lock_path(out).exists()


def test_a_lock_left_by_a_killed_sweep_does_not_block_the_next(tmp_path):
    out = tmp_path / "out.jsonl"
    code = ("import os, sys; from pathlib import Path; from convbench.bench.output import locked\n"
            "with locked(Path(sys.argv[1])):\n    os.kill(os.getpid(), 9)\n")
    assert subprocess.run([sys.executable, "-c", code, str(out)], timeout=60).returncode == -9
    assert lock_path(out).read_text().strip()  # the lock file stays, with the dead pid, but nobody holds it
    with locked(out):
        assert lock_path(out).read_text().strip() == str(os.getpid())
        with pytest.raises(BenchError, match=f"pid {os.getpid()}"):
            with locked(out):
                pass
    assert not lock_path(out).exists()


def test_write_atomic_leaves_the_old_file_whole_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "paired.jsonl"
    path.write_text("old\n")

    def fail(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="No space"):
        write_atomic(path, "new\n" * 1000)
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["paired.jsonl"]


# -- every command that reads results: one line on stderr, exit 2, the file byte-identical ---------------------------
MALFORMED = {
    "schema-as-string": line(schema="1"),
    "timing-null": line(timing=None),
    "not-json": b"{oops\n",
    "nan-literal": line().replace(b'"median": ', b'"median": NaN, "y": '),
    "binary": b"\x00\x01\x02\xff\n",
    "deep": b"[" * 100_000 + b"\n",
}


@pytest.mark.parametrize("name", list(MALFORMED))
@pytest.mark.parametrize("command", ["report", "compare-base", "compare-new", "resume"])
def test_commands_given_a_malformed_results_file(tmp_path, capsys, name, command):
    bad, good = tmp_path / "bad.jsonl", tmp_path / "good.jsonl"
    data = results(bad, line(), MALFORMED[name])
    results(good)
    argv = {"report": ["report", str(bad), "-o", str(tmp_path / "rep")],
            "compare-base": ["compare", str(bad), str(good)], "compare-new": ["compare", str(good), str(bad)],
            "resume": [*RUN, "-o", str(bad), "--resume"]}[command]
    code, err = run_cli(capsys, *argv)
    assert code == 2, err
    assert err.count("\n") == 1 and "bad.jsonl:2" in err and "Traceback" not in err
    assert bad.read_bytes() == data
    assert not (tmp_path / "rep").exists()


def test_passes_resume_reads_paired_rows_strictly(tmp_path, capsys):
    out = tmp_path / "study"
    out.mkdir()
    paired = out / "paired.jsonl"
    row = {"model": "lenet5", "image_size": 32, "batch": 1, "backend": "numpy", "pipeline": "none",
           "status": "ok", "message": "", "median_s": 1e-3, "threads": 1}
    for bad_row in ({**row, "image_size": "32"}, {**row, "status": "fine"}, {"model": "lenet5"}):
        data = (json.dumps(row) + "\n" + json.dumps(bad_row) + "\n").encode()
        paired.write_bytes(data)
        code, err = run_cli(capsys, "passes", "-m", "lenet5", "-o", str(out), "--resume", "--threads", "1",
                            "--timing", "paired")
        assert code == 2 and "paired.jsonl:2" in err and err.count("\n") == 1, err  # was KeyError / TypeError
        assert paired.read_bytes() == data


def test_passes_resume_checks_the_sweep_rounds_before_any_work(tmp_path, capsys):
    out = tmp_path / "study"
    out.mkdir()
    data = results(out / "ablation-round2.jsonl", line(), line(schema="1"))
    code, err = run_cli(capsys, "passes", "-m", "lenet5", "-o", str(out), "--resume", "--timing", "sweep",
                        "--rounds", "2", "--threads", "1")
    assert code == 2 and "ablation-round2.jsonl:2" in err and err.count("\n") == 1, err  # before "static figures"
    assert (out / "ablation-round2.jsonl").read_bytes() == data and sorted(p.name for p in out.iterdir()) == [
        "ablation-round2.jsonl"]
