"""The machine fingerprint every result line carries (what asv keeps in machine.json, plus the software).

``machine_id`` hashes what identifies the hardware and OS (host, CPU, cores, memory, GPU), not the software,
so results from two commits on one machine group together while their versions still differ visibly.
Versions are read from package metadata, never by importing (importing torch costs seconds and memory), and
convbench's own the same way (bench/ imports nothing from the package's face).
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from .launch import THREAD_VARS

# CPU features that decide which kernels BLAS libraries and compilers pick.
FLAGS_OF_INTEREST = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                     "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve")
PACKAGES = ("numpy", "scipy", "torch", "triton", "apache-tvm", "onnxruntime", "onnx")
REPO = Path(__file__).resolve().parents[1]


def _cpuinfo() -> tuple[str, list[str]]:
    model, flags = platform.processor() or platform.machine(), []
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model") and value.strip():
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            have = set(value.split())
            flags = [f for f in FLAGS_OF_INTEREST if f in have]
    return model, flags


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _versions() -> dict[str, str | None]:
    return {name: _version(name) for name in PACKAGES}


def _git(*args: str) -> str | None:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        return None
    try:
        done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _gpus() -> list[str]:
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()] if done.returncode == 0 else []


def fingerprint(name: str | None = None) -> dict[str, Any]:
    """Hardware, OS and software of this machine. ``name`` overrides the host name (to label a machine)."""
    import psutil

    cpu, flags = _cpuinfo()
    commit = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    hw = {
        "name": name or platform.node(),
        "cpu": cpu,
        "arch": platform.machine(),
        "cores_logical": os.cpu_count(),
        "cores_physical": psutil.cpu_count(logical=False),
        "ram_bytes": int(psutil.virtual_memory().total),
        "os": platform.platform(),
        "gpus": _gpus(),
    }
    ident = hashlib.sha256(repr(sorted(hw.items())).encode()).hexdigest()[:12]
    return {
        "machine_id": ident,
        **hw,
        "cpu_flags": flags,
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "convbench": _version("convbench"),
        "versions": _versions(),
        "git_commit": commit,
        "git_dirty": None if dirty is None else bool(dirty),
        "thread_env": {v: os.environ.get(v) for v in THREAD_VARS},
    }


def label(fp: dict[str, Any]) -> str:
    """A short human name for a machine: host, CPU, cores."""
    return f"{fp.get('name')} ({fp.get('cpu')}, {fp.get('cores_logical')} cores)"
