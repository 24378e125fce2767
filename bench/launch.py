"""The one way bench/ starts an isolated child process, and the child's half of the protocol.

Parent (`run_child`): write ``job.json`` (with the parent's pid), start ``python -m MODULE JOB RESULT`` in a new
process session with stdout and stderr to a log, wait up to the timeout, then kill the whole process group
(torch.compile's and TVM's worker processes included). However the child ended becomes a status:

- a ``result.json`` it wrote: its own ``status`` (ok, unsupported, error, oom …);
- the timeout: ``timeout``;
- SIGKILL that the harness did not send: ``oom`` (the kernel's out-of-memory killer is what does that);
- any other signal or an exit without a result: ``error``, with the last line of its output.

Child (`child_main`): die with the parent (Linux PR_SET_PDEATHSIG, so a SIGKILLed sweep leaves no orphan that
runs on), run the job, turn an exception into a status, write the result atomically.

A long-lived child (`Worker`, `serve_requests`: ``convbench run --interleave``) is started the same way and
ends the same way, but sets up once and then answers requests, one JSON line each way, until told to stop.

Sweep cases, calibrations and references (runner.py, worker.py), paired ablations (ablation_paired.py) and the
interleaved workers (interleave.py) all start their children here.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import plugins

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TVM_NUM_THREADS")


@dataclass
class ChildResult:
    """How a child ended: its status, the JSON it wrote (or the harness's account of why there is none)."""

    status: str
    result: dict[str, Any]
    wall_s: float


def child_env(threads: int, backend_modules: Sequence[str] = ()) -> dict[str, str]:
    """The child's environment: thread pools sized before its interpreter starts, plugins passed on."""
    env = dict(os.environ)
    env.update({v: str(threads) for v in THREAD_VARS})
    if backend_modules:
        env[plugins.ENV_VAR] = plugins.to_env(list(backend_modules))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def run_child(module: str, job: Mapping[str, Any], env: Mapping[str, str], timeout_s: float,
              workdir: Path) -> ChildResult:
    """Run ``job`` in ``python -m module`` in a fresh interpreter; map every way it can end to a status."""
    tag = uuid.uuid4().hex[:8]
    job_path, result_path, log_path = (workdir / f"{tag}.{s}" for s in ("job.json", "result.json", "log"))
    job_path.write_text(json.dumps({**job, "parent_pid": os.getpid()}))
    start = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", module, str(job_path), str(result_path)], env=dict(env),
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)

        def kill_group() -> None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()

        try:
            proc.wait(timeout=timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            kill_group()
            timed_out = True
        except BaseException:  # Ctrl-C or SIGTERM of the parent: take the child down with us
            kill_group()
            raise
    wall = time.perf_counter() - start
    if timed_out:
        return ChildResult("timeout", {"message": f"no result after {timeout_s:g} s; the process group was killed",
                                       "detail": _tail(log_path)}, wall)
    return _ended(proc.returncode, result_path, log_path, wall)


def _ended(code: int, result_path: Path, log_path: Path, wall: float) -> ChildResult:
    """How a child that is gone ended: its own result file, else the account its exit status gives."""
    tail = _tail(log_path)
    if result_path.exists():
        result = json.loads(result_path.read_text())
        return ChildResult(result.get("status", "error"), result, wall)
    if code < 0:
        sig = signal.Signals(-code).name
        if -code == signal.SIGKILL:
            message = ("killed by SIGKILL, not by the harness: most likely the kernel's out-of-memory killer"
                       + (f"; last output: {_last_line(tail)}" if tail else ""))
            return ChildResult("oom", {"message": message, "detail": tail}, wall)
        message = f"crashed with {sig}" + (f"; last output: {_last_line(tail)}" if tail else "")
    else:
        message = f"exited with status {code} without a result" + (f": {_last_line(tail)}" if tail else "")
    return ChildResult("error", {"message": message, "detail": tail}, wall)


class Worker:
    """A long-lived child (``convbench run --interleave``): ``python -m MODULE JOB RESULT`` started as `run_child`
    starts one (new session, log file, PDEATHSIG), that sets up once and then answers requests: one JSON line on
    its stdin, one JSON line back on a pipe of its own (stdout stays the log, where backends may print).

    `reply` (the first: the child's answer after setup) and `request` wait at most ``timeout_s``; a reply is
    ``ChildResult(status, reply)``. A timeout kills the process group (``timeout``); a child that is gone is
    mapped as `run_child` maps it (its result file, ``oom`` for a SIGKILL the harness did not send, ``error``).
    After either, the worker is `dead` and every later request answers the same.
    """

    POLL_S = 0.2  # how often a wait checks that the child still lives (a grandchild may hold the pipe open)

    def __init__(self, module: str, job: Mapping[str, Any], env: Mapping[str, str], workdir: Path):
        tag = uuid.uuid4().hex[:8]
        job_path, self.result_path, self.log_path = (workdir / f"{tag}.{s}" for s in ("job.json", "result.json",
                                                                                     "log"))
        read_fd, write_fd = os.pipe()
        job_path.write_text(json.dumps({**job, "parent_pid": os.getpid(), "reply_fd": write_fd}))
        self.started = time.perf_counter()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", module, str(job_path), str(self.result_path)],
                                         env=dict(env), stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True, pass_fds=(write_fd,))
        os.close(write_fd)  # the child's copy is the only writer: its death is an end of file here
        self.replies = os.fdopen(read_fd, "rb", buffering=0)
        self.buffer = b""
        self.dead: ChildResult | None = None

    def request(self, message: Mapping[str, Any], timeout_s: float) -> ChildResult:
        if self.dead is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write((json.dumps(dict(message)) + "\n").encode())
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                pass  # it is gone: the wait below says how it ended
        return self.reply(timeout_s)

    def reply(self, timeout_s: float) -> ChildResult:
        if self.dead is not None:
            return self.dead
        start = time.perf_counter()
        deadline = start + timeout_s
        try:
            while b"\n" not in self.buffer:
                now = time.perf_counter()
                if now >= deadline:
                    self.kill()
                    self.dead = ChildResult("timeout", {
                        "message": f"no reply after {timeout_s:g} s; the process group was killed",
                        "detail": _tail(self.log_path)}, now - start)
                    return self.dead
                ready, _, _ = select.select([self.replies], [], [], min(self.POLL_S, deadline - now))
                if not ready and self.proc.poll() is not None:  # gone: but a last reply may just have come
                    ready, _, _ = select.select([self.replies], [], [], 0)
                chunk = os.read(self.replies.fileno(), 1 << 16) if ready else None
                if chunk == b"" or (chunk is None and self.proc.poll() is not None):
                    self.proc.wait()
                    self.kill()  # what it left behind in its group
                    self.dead = _ended(self.proc.returncode, self.result_path, self.log_path,
                                       time.perf_counter() - start)
                    return self.dead
                self.buffer += chunk or b""
        except BaseException:  # Ctrl-C or SIGTERM of the parent: take the child down with us
            self.kill()
            raise
        line, self.buffer = self.buffer.split(b"\n", 1)
        result = json.loads(line)
        return ChildResult(result.get("status", "error"), result, time.perf_counter() - start)

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def close(self, grace_s: float = 5.0) -> None:
        """Ask the child to stop, give it ``grace_s``, then kill its group; release the pipes."""
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()  # end of its requests: serve_requests returns
            except OSError:
                pass
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        self.replies.close()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1][:300] if text.strip() else ""


# -- the child's side -----------------------------------------------------------------------------------------

def die_with_parent(parent_pid: int) -> None:
    """If the parent is SIGKILLed, this child must not run on (Linux: PR_SET_PDEATHSIG)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(3)


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def failure(e: BaseException) -> dict[str, Any]:
    """An exception inside the child as a result: ``oom`` for an allocation failure, else ``error``."""
    # torch.OutOfMemoryError (CUDA) is a RuntimeError, not a MemoryError.
    oom = isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError"
    return {"status": "oom" if oom else "error", "message": one_line(e),
            "detail": "".join(traceback.format_exception(e)[-12:])}


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def child_main(argv: Sequence[str], handler: Callable[[dict[str, Any]], dict[str, Any]]) -> int:
    """``python -m MODULE JOB RESULT``: run ``handler(job)`` and write what it returns (a dict with a status)."""
    job_path, result_path = Path(argv[0]), Path(argv[1])
    job = json.loads(job_path.read_text())
    die_with_parent(job["parent_pid"])
    try:
        result = handler(job)
    except Exception as e:  # the job failed inside Python: a status, not a missing result
        result = failure(e)
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(jsonable(result), default=str))
    os.replace(tmp, result_path)
    return 0


def serve_requests(job: Mapping[str, Any], ready: Mapping[str, Any],
                   handle: Callable[[dict[str, Any]], dict[str, Any]]) -> int:
    """The child's half of `Worker`: send ``ready`` (the setup's answer), then answer each request line on stdin
    with ``handle(request)`` (an exception becomes a status, the child serves on) until stdin ends or a request
    says ``{"op": "stop"}``. Returns how many requests it answered."""
    fd = int(job["reply_fd"])
    os.set_inheritable(fd, False)  # a process this one starts must not keep the parent's end-of-file away

    def send(d: Mapping[str, Any]) -> None:
        data = (json.dumps(jsonable(dict(d)), default=str) + "\n").encode()
        while data:
            data = data[os.write(fd, data):]

    send(ready)
    answered = 0
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        if request.get("op") == "stop":
            break
        try:
            answer = handle(request)
        except Exception as e:
            answer = failure(e)
        send(answer)
        answered += 1
    return answered
