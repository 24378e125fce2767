"""Measured memory of the current (isolated, one-case) process.

Host: the peak resident set size of a phase, minus the resident size when the phase began. On Linux the
kernel keeps the high-water mark (``VmHWM`` in /proc/self/status) and writing "5" to /proc/self/clear_refs
resets it to the current RSS, so each phase (compile, run) gets its own peak. Where that reset is not allowed
the peak is the process-lifetime one (``getrusage``), which can only over-state a later phase; the record says
which method was used.

Device: the CUDA caching allocator's peak (``torch.cuda.max_memory_allocated``) where the backend runs on a
CUDA device and torch is already imported; None otherwise.
"""

from __future__ import annotations

import resource
import sys
from dataclasses import dataclass
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_bytes() -> int:
    kib = _status_kib("VmRSS")
    if kib is not None:
        return kib * 1024
    import psutil

    return int(psutil.Process().memory_info().rss)


def _reset_hwm() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def _hwm_bytes() -> int:
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib * 1024
    # ru_maxrss is KiB on Linux, bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


@dataclass
class PhasePeak:
    """Peak RSS of a phase above the RSS at its start: ``with PhasePeak() as p: …; p.delta_bytes``."""

    start_bytes: int = 0
    peak_bytes: int = 0
    method: str = ""

    def __enter__(self) -> PhasePeak:
        self.method = "VmHWM after clear_refs" if _reset_hwm() else "lifetime max RSS (getrusage)"
        self.start_bytes = rss_bytes()
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak_bytes = max(_hwm_bytes(), rss_bytes())

    @property
    def delta_bytes(self) -> int:
        return max(0, self.peak_bytes - self.start_bytes)


class DevicePeak:
    """The CUDA allocator's peak over a phase, for backends whose ``device()`` is a CUDA device."""

    def __init__(self, device: str):
        self.torch = sys.modules.get("torch") if device.startswith("cuda") else None
        self.peak_bytes: int | None = None

    def __enter__(self) -> DevicePeak:
        if self.torch is not None and self.torch.cuda.is_available():
            self.torch.cuda.synchronize()
            self.torch.cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.torch is not None and self.torch.cuda.is_available():
            self.torch.cuda.synchronize()
            self.peak_bytes = int(self.torch.cuda.max_memory_allocated())
