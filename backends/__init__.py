"""Backends: the built-ins listed explicitly, third-party ones through the ``convbench.backends`` entry points."""

from __future__ import annotations

from .base import Backend, BackendError, BackendUnavailableError, Executable, UnsupportedNodeError
from .registry import UnknownBackendError, get, names, register

__all__ = ["Backend", "BackendError", "BackendUnavailableError", "Executable", "UnknownBackendError",
           "UnsupportedNodeError", "get", "names", "register"]
