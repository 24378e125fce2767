"""The backend contract (DESIGN.md, "Backends").

A backend is an object with:

- ``name``: what ``-b`` and ``convbench.backends.get`` call it;
- ``available() -> (ok, reason)``: a missing dependency or device is a reason, never an exception;
- ``supports(node) -> bool``: can it run this node;
- ``compile(graph, params, **options) -> Executable``: prepare once; the executable is then called with NumPy
  arrays and returns NumPy arrays. ``dtype=`` is the option every backend takes; an unknown option is an error.

Optional, used by ``convbench backends``/``check`` and the conformance suite when present:
``dtypes`` (the dtypes ``compile`` accepts; others are reported as skipped, not failed), ``version() -> str``
and ``device() -> str``.

No silent fallback: compiling a graph with an unsupported node raises `UnsupportedNodeError` naming the node and
op, unless the caller passes ``fallback="numpy"`` — then those nodes run on the reference and the executable's
``fallback_nodes`` lists them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..ir.errors import IRError
from ..ir.graph import Graph, Node


class BackendError(RuntimeError):
    """A backend failed to compile or run a graph."""


class UnsupportedNodeError(BackendError, IRError):
    """Nodes the backend cannot run; lists every one of them (node name and op)."""

    def __init__(self, backend: str, nodes: list[Node]):
        self.backend = backend
        self.nodes = nodes
        listed = ", ".join(f"{n.name!r} ({n.op})" for n in nodes[:8]) + (" …" if len(nodes) > 8 else "")
        super().__init__(f"backend {backend!r} does not support {len(nodes)} node(s): {listed}; "
                         f"pass fallback='numpy' to run them on the reference")


class BackendUnavailableError(BackendError):
    """The backend cannot run on this machine; the message is its reason."""


@runtime_checkable
class Backend(Protocol):
    name: str

    def available(self) -> tuple[bool, str]: ...

    def supports(self, node: Node) -> bool: ...

    def compile(self, graph: Graph, params: Mapping[str, np.ndarray], **options: Any) -> Executable: ...


@dataclass
class Executable:
    """A compiled graph: call it with one array per graph input, get the graph's output (or a tuple).

    ``info`` records how it was built (dtype, threads, compile time, pass pipeline …) for result files;
    ``fallback_nodes`` names the nodes an explicit fallback routed to the reference.
    """

    graph: Graph
    backend: str
    run: Any  # Callable[[list[np.ndarray]], list[np.ndarray]]
    info: dict[str, Any] = field(default_factory=dict)
    fallback_nodes: tuple[str, ...] = ()

    def __call__(self, *inputs: np.ndarray) -> np.ndarray | tuple[np.ndarray, ...]:
        names = list(self.graph.inputs)
        if len(inputs) != len(names):
            raise BackendError(f"{self.graph.name} on {self.backend}: expected {len(names)} input(s) "
                               f"({', '.join(names)}), got {len(inputs)}")
        for name, x in zip(names, inputs, strict=True):
            want = self.graph.inputs[name].shape
            if tuple(np.shape(x)) != want:
                raise BackendError(f"{self.graph.name} on {self.backend}: input {name!r} must have shape "
                                   f"{want}, got {tuple(np.shape(x))}")
        outs = self.run(list(inputs))
        return outs[0] if len(outs) == 1 else tuple(outs)


def check_supported(backend: Backend, graph: Graph, fallback: str | None) -> tuple[str, ...]:
    """Nodes that must fall back; raises `UnsupportedNodeError` if there are some and no fallback was asked."""
    bad = [n for n in graph.nodes if not backend.supports(n)]
    if bad and fallback is None:
        raise UnsupportedNodeError(backend.name, bad)
    if bad and fallback != "numpy":
        raise BackendError(f"unknown fallback {fallback!r}; the only fallback is 'numpy'")
    return tuple(n.name for n in bad)
