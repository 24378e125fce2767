"""The results file: one JSON object per line (JSONL), one line per case, appended as each case finishes.

A line is written with a single ``write`` of the whole encoded line and then fsync'ed, so a sweep killed at
any moment (SIGINT, SIGKILL) leaves only whole lines; a reader still tolerates a torn last line (say, a full
disk) and ``repair`` trims it before a resumed sweep appends. Non-finite floats are written as null, so every
line is strict JSON. ``SCHEMA_VERSION`` changes whenever a field changes meaning or moves.

What a line holds is the typed `record.Record` (its fields and the nested parts, with what each means):
schema, run_id, case_id, case (`Case` below), status (ok | unsupported | error | timeout | oom), message,
started, duration_s, device, skipped, detail, model_info, compile, timing, throughput_ips, gflops,
peak_fraction, memory, correctness, calibration, machine, worker. Schema 2 stores the typed compile report
(``compile.report``) where schema 1 stored the backend's untyped ``compile.info``; both are read.
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
from .specs import parse_backend_spec

SCHEMA_VERSION = 2
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
