"""The backend contract (docs/design.md, "Backends").

A backend is an object with:

- ``name``: what ``-b`` and ``convbench.backends.get`` call it;
- ``available() -> (ok, reason)``: a missing dependency or device is a reason, never an exception;
- ``supports(node) -> bool``: can it run this node (built-ins answer from their lowering table, the one list);
- ``compile(graph, params, **options) -> Executable``: prepare once; the executable is then called with NumPy
  arrays and returns NumPy arrays. An unknown option is an error.

Optional, used by ``convbench backends``/``check``/``run`` and the conformance suite when present:
``dtypes`` (the dtypes ``compile`` accepts; others are reported as skipped, not failed), ``Options`` (a frozen
dataclass of its options: the one list of names, types, defaults and docs), ``version() -> str`` and
``device() -> str``; for train steps, ``updater(optimizer, params, exe) -> ir.optim.Updater`` (the optimizer
update between steps in the backend's own arithmetic; without it the harness applies `ir.optim.NumpyUpdater`).

The built-in backends compile through one template (`convbench.backends.template`): options parsed against the
backend's `Options`, verify, pass pipeline, support check, parameter cast, then the backend's own ``build``;
the result carries a typed `CompileReport` and the engine's ``artifact``.

No silent fallback: compiling a graph with an unsupported node raises `UnsupportedNodeError` naming the node and
op, unless the caller passes ``fallback="numpy"`` — then those nodes run on the reference and the executable's
``fallback_nodes`` lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, is_dataclass
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


class UnsupportedDtypeError(BackendError):
    """The backend has no kernels for the asked dtype; ``check`` and ``run`` both report it as unsupported."""


class BackendUnavailableError(BackendError):
    """The backend cannot run on this machine; the message is its reason."""


def option(default: Any, doc: str) -> Any:
    """A field of an `Options` dataclass: its default and the one-line doc ``convbench backends --options`` prints."""
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class Options:
    """The options every built-in backend takes; each backend subclasses it with its own (all with defaults)."""

    dtype: str = option("float32", "element type the backend computes in (one of its dtypes)")
    threads: int | None = option(None, "intra-op threads while compiling and running (None: the engine's default)")
    passes: str | tuple[str, ...] | None = option(
        None, "a pass pipeline (none, default, all) or pass names joined by '+', run before lowering")
    fallback: str | None = option(None, "'numpy': unsupported nodes run on the reference instead of failing")


@dataclass(frozen=True)
class CompileReport:
    """How an executable was built: what result files record and tests read.

    ``accuracy_dtype`` is the dtype whose tolerance correctness is judged with (``tf32`` when Triton runs float32
    matmuls on tensor cores); ``compile_s`` is the wall time of the whole ``compile`` call, measured by the
    template the same way for every backend; ``details`` is the backend's own dataclass (tuning, plan, fusion
    counts …).
    """

    backend: str
    dtype: str
    accuracy_dtype: str
    device: str
    threads: int | None
    pipeline: dict[str, Any]
    compile_s: float
    options: Options | None = None
    fallback_nodes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    details: Any = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written into result records (``compile.report``)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("options", "details")}
        d["fallback_nodes"] = list(self.fallback_nodes)
        d["warnings"] = list(self.warnings)
        d["options"] = asdict(self.options) if self.options is not None else {}
        d["details"] = asdict(self.details) if is_dataclass(self.details) else self.details
        return d


@runtime_checkable
class Backend(Protocol):
    name: str

    def available(self) -> tuple[bool, str]: ...

    def supports(self, node: Node) -> bool: ...

    def compile(self, graph: Graph, params: Mapping[str, np.ndarray], **options: Any) -> Executable: ...


@dataclass
class Executable:
    """A compiled graph: call it with one array per graph input, get the graph's output (or a tuple).

    ``report`` records how it was built (a `CompileReport`; None only for a third-party backend that makes
    none); ``artifact`` is the engine's own product (fx GraphModule, Triton plan, Relax VM, ORT sessions).
    """

    graph: Graph
    backend: str
    run: Callable[[list[np.ndarray]], list[np.ndarray]]
    report: CompileReport | None = None
    artifact: Any = None
    fallback_nodes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.report is not None and not self.fallback_nodes:
            self.fallback_nodes = self.report.fallback_nodes

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


def physical_cores() -> int:
    """The default thread count of every backend and of a sweep's cases: the physical cores (hyper-threads share
    a core's FMA units, so a second thread per core adds contention, not FLOPs)."""
    import os

    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def unavailable_reason(backend: Backend, dtype: str) -> str | None:
    """Why ``backend`` cannot run ``dtype`` here (not available, or a dtype it does not declare), else None: the
    words `convbench check` (skip), `convbench run` (unsupported) and the conformance suite all give."""
    ok, why = backend.available()
    if not ok:
        return f"backend {backend.name!r} is not available: {why}"
    dtypes = getattr(backend, "dtypes", None)
    if dtypes is not None and dtype not in dtypes:
        return f"backend {backend.name!r} does not support dtype {dtype} (supports {', '.join(dtypes)})"
    return None


def check_supported(backend: Backend, graph: Graph, fallback: str | None) -> tuple[str, ...]:
    """Nodes that must fall back; raises `UnsupportedNodeError` if there are some and no fallback was asked."""
    bad = [n for n in graph.nodes if not backend.supports(n)]
    if bad and fallback is None:
        raise UnsupportedNodeError(backend.name, bad)
    if bad and fallback != "numpy":
        raise BackendError(f"unknown fallback {fallback!r}; the only fallback is 'numpy'")
    return tuple(n.name for n in bad)


def updater_for(backend: Backend | None, optimizer: Any, params: Mapping[str, np.ndarray], exe: Any) -> Any:
    """``backend``'s own optimizer update for ``exe``'s train step (the optional ``updater`` hook above), else the
    NumPy one (`ir.optim.NumpyUpdater`); either owns ``params`` (the trained ones) and the optimizer's state from
    here on. The harness's timed steps and ``check --mode train`` both take their update from here."""
    from ..ir.optim import NumpyUpdater

    own = getattr(backend, "updater", None)
    made = own(optimizer, params, exe) if own is not None else None
    return made if made is not None else NumpyUpdater(optimizer, params)
