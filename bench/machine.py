"""The machine fingerprint every result line carries (what asv keeps in machine.json, plus the software).

``machine_id`` hashes what identifies the hardware and OS (host, CPU, cores, memory, GPU), not the software,
so results from two commits on one machine group together while their versions still differ visibly.
Versions are read from package metadata, never by importing (importing torch costs seconds and memory), and
convbench's own the same way (bench/ imports nothing from the package's face).
"""

from __future__ import annotations

import functools
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


@functools.cache
def _cpuinfo() -> tuple[str, frozenset[str]]:
    """The CPU's model name and every feature flag /proc/cpuinfo lists (empty where there is none)."""
    model, flags = platform.processor() or platform.machine(), frozenset()
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
            flags = frozenset(value.split())
    return model, flags


def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags, as /proc/cpuinfo spells them (avx2, avx512_vnni, amx_int8 …)."""
    return _cpuinfo()[1]


# x86's int8 dot products that sum u8×s8 products exactly in int32. Without them (AVX2, AVX-512 before Cascade
# Lake) every CPU engine multiplies with VPMADDUBSW, which adds two adjacent u8×s8 products into a *saturating*
# int16: 255·127·2 = 64770 overflows 32767, so a full-range int8 weight is not the QDQ graph's arithmetic there.
X86_INT8_DOT = ("avx512_vnni", "avx_vnni", "amx_int8")


def int8_pairs_saturate() -> bool:
    """Whether this is an x86 CPU whose int8 kernels saturate pairs of u8×s8 products (no VNNI/AMX): ONNX
    Runtime's quantization guide's reason for ``reduce_range`` (7-bit weights), measured here on a Zen 3 with
    oneDNN, ONNX Runtime, OpenVINO and torch alike."""
    flags = cpu_flags()
    return "sse2" in flags and not any(f in flags for f in X86_INT8_DOT)


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

    cpu, all_flags = _cpuinfo()
    flags = [f for f in FLAGS_OF_INTEREST if f in all_flags]
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
