"""Owning a sweep's output file: checked before anything is written, locked for the whole sweep, replaced
atomically.

- Before anything runs, ``-o`` must name a regular file (or nothing yet) in a writable directory. A file that is
  there is read (`schema.scan`) and must be a results file: ``--resume`` and ``--overwrite`` refuse anything else
  (a config, a binary, /dev/null) without changing a byte of it.
- ``--resume`` then repairs only what a crash leaves: a torn last line is trimmed, a whole last record that lacks
  its newline gets one (it is kept, not measured again).
- ``--overwrite`` replaces the file atomically (a new empty file renamed over it) when the first case is about to
  be written, never by unlinking whatever the path names.
- An exclusive lock (``flock`` on a sibling ``.NAME.lock`` holding the owner's pid) is held from the checks to the
  last line: a second sweep on the same output fails at once and names the first one's pid. The lock file is
  removed by its holder; a lock taken on a file its previous holder just removed is retried.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from .errors import BenchError
from .schema import SchemaError, repair, scan


def lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the output's lock; `BenchError` at once (no waiting) when another process holds it."""
    lock = lock_path(path)
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise BenchError(f"cannot lock {path}: cannot create {lock} ({e.strerror or e})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _holder(fd)
            os.close(fd)
            raise BenchError(f"output {path} is in use by another convbench sweep (pid {holder}, lock {lock}); "
                             f"wait for it to finish or write to another file") from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # its previous holder removed it between our open and our lock: take the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)  # while still holding it, so no one else can hold the file being removed
        os.close(fd)


def _holder(fd: int) -> str:
    for _ in range(20):  # the holder writes its pid right after taking the lock
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if text:
            return text
        time.sleep(0.01)
    return "unknown"


def check_target(path: Path) -> None:
    """The output's directory exists (or can be made) and is writable; the path is not a directory."""
    if path.is_dir():
        raise BenchError(f"output {path} is a directory; give a file name such as {path / 'results.jsonl'}")
    existing = next(p for p in (path.parent, *path.parent.parents) if p.exists())
    if not existing.is_dir():
        raise BenchError(f"cannot write to {path}: {existing} is not a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as e:
        raise BenchError(f"cannot write to {path.parent}: {e.strerror or e}") from None


def prepare_output(path: Path, resume: bool, overwrite: bool) -> set[str]:
    """Check (and, for ``resume``, repair) the output before anything runs; the ids of the cases already done.
    Nothing is changed unless the file is a results file and ``resume`` was asked."""
    check_target(path)
    if not os.path.lexists(path):
        return set()
    if not resume and not overwrite:
        raise BenchError(f"output {path} already exists; pass --resume to complete it or --overwrite to replace it")
    flag = "--resume" if resume else "--overwrite"
    try:
        found = scan(path)  # reads only; a FIFO or device is refused before it is opened
    except SchemaError as e:
        raise BenchError(f"{flag} refused: {path} is not a convbench results file, so it is left as it is ({e})") \
            from None
    if not os.access(path, os.W_OK):
        raise BenchError(f"output {path} is not writable")
    if overwrite:
        return set()
    repair(path)  # only a torn last line or a missing last newline, in a file just checked to hold results
    return {r["case_id"] for r in found.records}


def replace_with_empty(path: Path) -> None:
    """``--overwrite``: an empty file renamed over the old one (atomic: readers see the old file or the new)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_atomic(path: Path, data: str | bytes) -> None:
    """A whole file written under a temporary name in its directory, made durable, then renamed over ``path``."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
