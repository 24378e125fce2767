"""Backend registry: built-ins by explicit list (imported lazily, so a missing torch breaks nothing else),
third-party backends through the ``convbench.backends`` entry-point group."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from ..ir.errors import IRError
from .base import Backend

# name -> module that defines BACKEND; imported on first use.
BUILTIN: dict[str, str] = {
    "numpy": "convbench.backends.numpy_ref",
    "torch": "convbench.backends.torch",
    "triton": "convbench.backends.triton",
    "tvm": "convbench.backends.tvm",
    "onnxruntime": "convbench.backends.onnxruntime",
    "openvino": "convbench.backends.openvino",
    "onednn": "convbench.backends.onednn",
}

_loaded: dict[str, Backend] = {}
_registered: dict[str, Backend] = {}


class UnknownBackendError(IRError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def register(backend: Backend) -> Backend:
    """Register a backend object (what an entry point does); refuses a name already taken."""
    if backend.name in BUILTIN or backend.name in _registered:
        raise IRError(f"backend {backend.name!r} is already registered")
    _registered[backend.name] = backend
    return backend


def _entry_points() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group="convbench.backends")}


def names() -> list[str]:
    return [*BUILTIN, *sorted(set(_registered) | set(_entry_points()))]


def get(name: str) -> Backend:
    if name in _loaded:
        return _loaded[name]
    if name in BUILTIN:
        backend = importlib.import_module(BUILTIN[name]).BACKEND
    elif name in _registered:
        backend = _registered[name]
    elif name in (eps := _entry_points()):
        obj = eps[name].load()  # type: ignore[attr-defined]
        backend = obj() if isinstance(obj, type) else obj
    else:
        raise UnknownBackendError(f"unknown backend {name!r}; known backends: {', '.join(names())}")
    _loaded[name] = backend
    return backend
