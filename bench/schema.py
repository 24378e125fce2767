"""The results schema: one JSON object per line (JSONL), one line per case, appended as each case finishes.

A line is written with a single ``write`` of the whole encoded line and then fsync'ed, so a sweep killed at
any moment (SIGINT, SIGKILL) leaves only whole lines; a reader still tolerates a torn last line (say, a full
disk) and ``repair`` trims it before a resumed sweep appends. Non-finite floats are written as null, so every
line is strict JSON. ``SCHEMA_VERSION`` changes whenever a field changes meaning or moves.

A record (see runner.py for how it is filled)::

    schema, run_id, case_id, case{model, image_size, backend, backend_name, options, batch, dtype, threads},
    status (ok | unsupported | error | timeout | oom), message, started, duration_s, device ("cpu", "cuda:0" …),
    skipped (only on a timeout not run because a cheaper workload already timed out), detail (traceback tail),
    model_info{params, param_bytes, buffer_bytes, macs, flops, nodes, conv_layers, linear_layers,
               activation_peak_bytes, activation_sum_bytes},
    compile{compile_s, info, fallback_nodes},
    timing{n, min, median, mean, stdev, iqr, iqr_rel, p90, p99, max, samples[], warmup_calls, warmup_s, total_s,
           converged, stop_reason},               # seconds per call of the whole batch
    throughput_ips, gflops, peak_fraction,
    memory{rss_baseline_bytes, compile_rss_peak_delta_bytes, run_rss_peak_delta_bytes, method,
           device_peak_bytes, static_activation_peak_bytes, static_param_bytes},
    correctness{ok (null: no reference to compare with), max_abs, max_rel, bound, dtype, top1, top5, reason},
    calibration{gemm_gflops, gemm_source, gemm_n, gemm_dtype, gemm_all{}, bandwidth_gbs, cuda{gemm_gflops, …}},
    machine{machine_id, name, cpu, cores_…, versions{…}, git_commit, git_dirty, thread_env{…}},
    worker{pid, wall_s, thread_env{…} (the child's), torch_threads, loadavg_1min (at the case's start)}
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import BenchError

SCHEMA_VERSION = 1
STATUSES = ("ok", "unsupported", "error", "timeout", "oom")


class SchemaError(BenchError):
    """A results file that cannot be read: names the file and line."""


@dataclass(frozen=True)
class Case:
    """One measurement: a model at an input size, on a backend (with options), at a batch, dtype and threads."""

    model: str
    image_size: int
    backend: str  # the spec as given: "torch" or "torch:compile=true"
    batch: int
    dtype: str
    threads: int
    backend_name: str = field(default="", compare=False)
    options: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.backend_name:
            name, options = parse_backend_spec(self.backend)
            object.__setattr__(self, "backend_name", name)
            object.__setattr__(self, "options", options)

    @property
    def id(self) -> str:
        return case_id(asdict(self))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def case_id(case: dict[str, Any]) -> str:
    """The key a case is matched by (resume, compare): every field that changes what is measured."""
    return (f"{case['model']}@{case['image_size']}/{case['backend']}/b{case['batch']}/{case['dtype']}"
            f"/t{case['threads']}")


def parse_backend_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """"torch:compile=true:channels_last=1" → ("torch", {"compile": True, "channels_last": 1})."""
    name, *pairs = spec.split(":")
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise BenchError(f"backend option {pair!r} in {spec!r} is not KEY=VALUE")
        options[key] = _parse_value(raw)
    return name, options


def _parse_value(raw: str) -> Any:
    low = raw.lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


def _finite(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_finite(v) for v in o]
    if hasattr(o, "item") and not isinstance(o, str):  # numpy scalars
        return _finite(o.item())
    return o


def encode(record: dict[str, Any]) -> bytes:
    return (json.dumps(_finite(record), separators=(",", ":"), allow_nan=False) + "\n").encode()


def append_record(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one line atomically (one write of the whole line) and make it durable."""
    data = encode(record)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, data)
        if written != len(data):
            raise OSError(f"{path}: short write ({written} of {len(data)} bytes)")
        os.fsync(fd)
    finally:
        os.close(fd)


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every record of a results file. A torn last line is skipped with a warning; any other bad line fails."""
    path = Path(path)
    try:
        text = path.read_bytes().decode()
    except OSError as e:
        raise SchemaError(f"{path}: cannot read ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise SchemaError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    lines = text.split("\n")
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if number == len(lines):  # no newline after it: a torn write
                warnings.warn(f"{path}: ignoring a torn last line ({len(line)} bytes)", stacklevel=2)
                break
            raise SchemaError(f"{path}:{number}: not JSON ({e.msg})") from None
        _check(record, path, number)
        records.append(record)
    return records


def _check(record: Any, path: Path, number: int) -> None:
    if not isinstance(record, dict) or "schema" not in record or "case" not in record:
        raise SchemaError(f"{path}:{number}: not a convbench result (no 'schema'/'case' fields)")
    if record["schema"] > SCHEMA_VERSION:
        raise SchemaError(f"{path}:{number}: schema {record['schema']} is newer than this convbench's "
                          f"{SCHEMA_VERSION}; upgrade convbench to read it")
    if record.get("status") not in STATUSES:
        raise SchemaError(f"{path}:{number}: unknown status {record.get('status')!r}")


def repair(path: str | os.PathLike) -> int:
    """Trim a torn last line (bytes after the last newline); returns how many bytes were removed."""
    path = Path(path)
    if not path.exists():
        return 0
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep == len(data):
        return 0
    with open(path, "r+b") as f:
        f.truncate(keep)
    return len(data) - keep
