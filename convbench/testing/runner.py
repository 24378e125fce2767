"""`run_case`: compile one case on one backend, run it, judge it against the float64 reference."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

import numpy as np

from ..backends import registry
from ..backends.base import (
    Backend,
    BackendUnavailableError,
    UnsupportedDtypeError,
    UnsupportedNodeError,
    unavailable_reason,
)
from ..backends.correctness import Accuracy, Agreement, accuracy, compare, tolerance
from ..ir.graph import Graph

Status = Literal["pass", "fail", "skip", "error"]


class Case(Protocol):
    """What `run_case` needs from a case; `OpCase` and `ModelCase` both provide it."""

    id: str

    @property
    def graph(self) -> Graph: ...

    @property
    def params(self) -> dict[str, np.ndarray]: ...

    @property
    def reference(self) -> list[np.ndarray]: ...

    def input_list(self) -> list[np.ndarray]: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class CaseResult:
    """The verdict on one case: ``pass`` (within tolerance), ``fail`` (ran, wrong numbers), ``skip`` (backend
    unavailable, dtype or op not supported: ``message`` says which), ``error`` (compile or run raised)."""

    case_id: str
    backend: str
    dtype: str
    status: Status
    agreement: Agreement | None = None
    message: str = ""
    seconds: float = 0.0
    fallback_nodes: tuple[str, ...] = ()
    accuracy: Accuracy | None = None  # a case with labels (real photographs): classification metrics

    @property
    def ok(self) -> bool:
        return self.status == "pass"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["agreement"] = self.agreement.to_dict() if self.agreement else None
        return d


def resolve(backend: str | Backend) -> Backend:
    return registry.get(backend) if isinstance(backend, str) else backend


def skip_reason(backend: Backend, graph: Graph, dtype: str, fallback: str | None = None) -> str | None:
    """Why ``backend`` cannot be asked to run ``graph`` in ``dtype`` here, or None if it can."""
    why = unavailable_reason(backend, dtype)
    if why is None and fallback is None:
        bad = [n for n in graph.nodes if not backend.supports(n)]
        if bad:
            return str(UnsupportedNodeError(backend.name, bad))
    return why


def judge(outputs: list[np.ndarray], reference: list[np.ndarray], dtype: str) -> Agreement:
    """The worst agreement over the outputs (by error relative to its bound)."""
    if len(outputs) != len(reference):
        return Agreement(False, float("inf"), float("inf"), 0.0, dtype,
                         reason=f"returned {len(outputs)} output(s), the graph has {len(reference)}")
    results = [compare(y, r, dtype) for y, r in zip(outputs, reference, strict=True)]
    return max(results, key=lambda a: (not a.ok, a.max_abs / a.bound if a.bound > 0 else a.max_abs))


def run_case(backend: str | Backend, case: Case, dtype: str = "float32", **compile_options: Any) -> CaseResult:
    """Compile ``case.graph`` on ``backend`` with ``dtype`` and the options, run it on the case's inputs and
    compare every output with the NumPy float64 reference under ``dtype``'s tolerance (backends/correctness.py).
    Never raises for a backend's failure: that is the result's ``error`` status with the exception in the
    message. An unknown backend name does raise (`UnknownBackendError`, listing the known ones)."""
    b = resolve(backend)
    tolerance(dtype)  # an unknown dtype is the caller's mistake: KeyError naming the known ones
    start = time.perf_counter()
    head = f"{case.id} on {b.name} ({dtype})"

    def result(status: Status, message: str = "", agreement: Agreement | None = None,
               fallback: tuple[str, ...] = (), acc: Accuracy | None = None) -> CaseResult:
        return CaseResult(case.id, b.name, dtype, status, agreement, message, time.perf_counter() - start, fallback,
                          acc)

    if dtype == "int8" and unavailable_reason(b, dtype) is None:
        # one quantized graph for every int8 backend, judged against its own float64 reference (testing/quantized)
        from .quantized import is_quantized, quantized_case

        try:
            case = quantized_case(case)
        except Exception as e:
            return result("error", f"{head}: quantization failed: {type(e).__name__}: {e}")
        if not is_quantized(case.graph):
            return result("skip", f"{head}: nothing to quantize (no conv, linear or add)")
    why = skip_reason(b, case.graph, dtype, compile_options.get("fallback"))
    if why:
        return result("skip", why)
    try:
        exe = b.compile(case.graph, case.params, dtype=dtype, **compile_options)
    except (UnsupportedDtypeError, BackendUnavailableError) as e:  # `convbench run` records these as unsupported
        return result("skip", str(e))
    except Exception as e:
        return result("error", f"{head}: compile failed: {type(e).__name__}: {e}\n  case: {case.describe()}")
    try:
        out = exe(*case.input_list())
    except Exception as e:
        return result("error", f"{head}: run failed: {type(e).__name__}: {e}\n  case: {case.describe()}",
                      fallback=tuple(exe.fallback_nodes))
    outputs = list(out) if isinstance(out, tuple | list) else [out]
    # judged with the dtype the backend says its arithmetic has (Triton's float32 on tensor cores is tf32)
    report = getattr(exe, "report", None)
    judged = report.accuracy_dtype if report is not None else dtype
    agreement = judge([np.asarray(y) for y in outputs], case.reference, judged)
    fallback = tuple(exe.fallback_nodes)
    labels = getattr(case, "labels", None)
    acc = None
    if labels is not None and len(outputs) == 1 and np.isfinite(agreement.max_abs):
        # accuracy against the float64 model (an int8 case's `reference` is its quantized graph's, for the max error)
        acc = accuracy(np.asarray(outputs[0]), getattr(case, "float_reference", case.reference)[0], labels)
    if agreement.ok:
        return result("pass", "", agreement, fallback, acc)
    tol = tolerance(judged)
    rel = f"; max rel error {agreement.max_rel:.3g}" if np.isfinite(agreement.max_rel) else ""
    return result("fail", f"{head}: {agreement.reason}{rel} (tolerance rtol {tol.rtol:g}, atol {tol.atol:g})"
                          f"\n  case: {case.describe()}", agreement, fallback, acc)
