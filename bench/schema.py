"""The results file: one JSON object per line (JSONL), one line per case, appended as each case finishes.

A line is written with a single ``write`` of the whole encoded line and then fsync'ed, so a sweep killed at
any moment (SIGINT, SIGKILL) leaves only whole lines. Non-finite floats are written as null, so every line is
strict JSON. ``SCHEMA_VERSION`` changes whenever a field changes meaning or moves.

Reading (`scan`) checks every line before any is used: strict JSON (no NaN literal, no duplicate key), the schema
version, and each field's type (`record.Record`). Only the last line may be other than a whole record, and only
in two ways a crash leaves: torn (the start of a record cut short, say by a full disk: skipped, and `repair`
trims it before a resumed sweep appends) or a whole record without its newline (kept; `repair` adds the newline).
A file that is anything else is refused whole, and `repair` never touches it.

What a line holds is the typed `record.Record` (its fields and the nested parts, with what each means):
schema, run_id, case_id, case (`Case` below), status (ok | unsupported | error | timeout | oom), message,
started, duration_s, device, skipped, detail, model_info, compile, timing, throughput_ips, gflops,
peak_fraction, memory, correctness, accuracy, train (a train-mode case: `record.TrainInfo`), calibration, machine,
worker. A case's ``mode`` (inference | train) and ``input`` are written only when not the default, so every
inference record reads and is keyed as before they existed. Schema 2 stores the typed compile report
(``compile.report``) where schema 1 stored the backend's untyped ``compile.info``; both are read.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import BenchError
from .specs import parse_backend_spec

SCHEMA_VERSION = 2
STATUSES = ("ok", "unsupported", "error", "timeout", "oom")
INPUTS = ("random", "real")  # what a case runs on (`Case.input`); the id carries it unless random
MODES = ("inference", "train")  # what a case times (`Case.mode`); the id carries it only for train


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
    input: str = "random"  # one of INPUTS: seeded random weights and input, or pretrained weights on photographs
    mode: str = "inference"  # one of MODES: a forward call, or a whole train step (bench/train_case.py)
    # dtype int8: how the graph is quantized, "observer=minmax,views=8,weight_bits=7" (models.calibration.int8_spec;
    # "" takes the defaults: the percentile observer, 4 views a photograph, the host's weight width)
    int8: str = ""

    def __post_init__(self) -> None:
        if self.input not in INPUTS:
            raise BenchError(f"input must be one of {', '.join(INPUTS)}, got {self.input!r}")
        if self.mode not in MODES:
            raise BenchError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not self.backend_name:
            name, options = parse_backend_spec(self.backend)
            object.__setattr__(self, "backend_name", name)
            object.__setattr__(self, "options", options)

    @property
    def id(self) -> str:
        return case_id(asdict(self))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["input"] == "random":  # random-input records stay as every earlier convbench wrote them
            del d["input"]
        if d["mode"] == "inference":  # and so do inference records
            del d["mode"]
        if not d["int8"]:  # and every case quantized with the defaults
            del d["int8"]
        return d


def case_id(case: dict[str, Any]) -> str:
    """The key a case is matched by (resume, compare): every field that changes what is measured."""
    return (f"{case['model']}@{case['image_size']}/{case['backend']}/b{case['batch']}/{case['dtype']}"
            f"/t{case['threads']}" + ("" if case.get("input", "random") == "random" else f"/{case['input']}")
            + ("" if case.get("mode", "inference") == "inference" else f"/{case['mode']}")
            + int8_tag(case.get("int8", "")))


def int8_tag(spec: str) -> str:
    """An int8 case's quantization settings as its id carries them (`models.calibration.int8_spec`; "" the
    defaults: nothing), one spelling for run's, check's and the interleaved groups' ids."""
    return f"/int8[{spec}]" if spec else ""


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


@dataclass(frozen=True)
class Scan:
    """A results file read and checked line by line, without changing it.

    ``tail`` says how the file ends: ``"newline"`` (as the writer leaves it), ``"unterminated"`` (a whole record
    without its newline: kept, and `repair` adds the newline) or ``"torn"`` (the start of a record cut short by a
    crash or a full disk: skipped, and `repair` trims it). Only the last line can be either.
    """

    records: list[dict[str, Any]]  # as the file holds them
    typed: list[Any]  # the same, as `record.Record`
    tail: str = "newline"
    tail_bytes: int = 0

    def warn_torn(self, path: str | os.PathLike) -> None:
        if self.tail == "torn":
            warnings.warn(f"{path}: ignoring a torn last line ({self.tail_bytes} bytes)", stacklevel=3)


_RECORD_START = re.compile(rb'\{\s*"schema"\s*:')
_START = b'{"schema":'


def _torn(tail: bytes) -> bool:
    """Is ``tail`` (a last line that is not JSON) the start of a record? The writer puts ``schema`` first."""
    return bool(_RECORD_START.match(tail)) or _START.startswith(tail.strip())


def scan(path: str | os.PathLike) -> Scan:
    """Every line of a results file checked (strict JSON, schema version, field types: `record.Record`) before
    anything uses it; `SchemaError` names the file and line of the first bad one. A FIFO, device or directory is
    refused before it is opened."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise SchemaError(f"{path}: not a regular file (a {_kind(mode)}), so not a results file")
        data = path.read_bytes()
    except OSError as e:
        raise SchemaError(f"{path}: cannot read ({e.strerror or e})") from None
    lines = data.split(b"\n")
    last = lines.pop()  # b"" when the file ends with a newline, as the writer leaves it
    checked = [r for number, raw in enumerate(lines, start=1) if (r := _line(raw, f"{path}:{number}"))]
    tail, tail_bytes = "newline", 0
    if last.strip():
        try:
            checked.append(_line(last, f"{path}:{len(lines) + 1}"))  # type: ignore[arg-type]
            tail, tail_bytes = "unterminated", len(last)
        except SchemaError:
            if _parses(last) or not _torn(last):
                raise  # a whole line that is not a record, or not the start of one: not a torn write
            tail, tail_bytes = "torn", len(last)
    return Scan([d for d, _ in checked], [r for _, r in checked], tail, tail_bytes)


def _parses(raw: bytes) -> bool:
    try:
        json.loads(raw)
        return True
    except ValueError:
        return False


def _line(raw: bytes, where: str) -> tuple[dict[str, Any], Any] | None:
    """One line: None if blank, else (the dict, the typed record); `SchemaError` naming ``where`` (file:line)."""
    from ..ir.serialize import json_object
    from .record import check_record  # record.py builds on this module; the typed check lives there

    if not raw.strip():
        return None
    try:
        text = raw.decode()
    except UnicodeDecodeError as e:
        raise SchemaError(f"{where}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    record = json_object(text, where, SchemaError)
    _check(record, where)
    return record, check_record(record, where)


def _kind(mode: int) -> str:
    kinds = {stat.S_ISDIR: "directory", stat.S_ISCHR: "character device", stat.S_ISBLK: "block device",
             stat.S_ISFIFO: "FIFO", stat.S_ISSOCK: "socket"}
    return next((name for test, name in kinds.items() if test(mode)), "special file")


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every record of a results file, each line checked (`scan`). A torn last line is skipped with a warning;
    any other bad line fails."""
    result = scan(path)
    result.warn_torn(path)
    return result.records


def _check(record: Any, where: str) -> None:
    if type(record) is not dict or "schema" not in record or "case" not in record:
        raise SchemaError(f"{where}: not a convbench result (no 'schema'/'case' fields)")
    schema = record["schema"]
    if type(schema) is not int or schema < 1:
        raise SchemaError(f"{where}: 'schema' must be an integer ≥ 1, got {schema!r}")
    if schema > SCHEMA_VERSION:
        raise SchemaError(f"{where}: schema {schema} is newer than this convbench's "
                          f"{SCHEMA_VERSION}; upgrade convbench to read it")
    if record.get("status") not in STATUSES:
        raise SchemaError(f"{where}: unknown status {record.get('status')!r}")


def repair(path: str | os.PathLike) -> int:
    """Make a results file end as the writer leaves it, after checking every line (`scan`: a file that is not a
    results file is refused untouched): a torn last line is trimmed, a whole last record missing its newline gets
    one. Returns how many bytes were removed (0 when a newline was added or nothing was needed)."""
    path = Path(path)
    if not path.exists():
        return 0
    result = scan(path)
    size = path.stat().st_size
    if result.tail == "torn":
        with open(path, "r+b") as f:
            f.truncate(size - result.tail_bytes)
            os.fsync(f.fileno())
        return result.tail_bytes
    if result.tail == "unterminated":
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
    return 0
