"""ONNX's own node conformance cases run through `convbench.ir.from_onnx` and the NumPy reference backend.

ONNX ships one small model per operator behaviour with inputs and expected outputs
(``onnx.backend.test.case.node.collect_testcases()``). The selection here is the cases a CNN importer should
answer: every node is an ONNX op the importer has a handler for, the first input and the first output are float32,
and convolutions and pools are 2-D (an NCHW input). An input that no node reads as an activation (a weight, a bias,
pads, a shape, Clip's bounds, Dropout's ratio) becomes an initializer holding the case's value, as an exported
network stores it; activations stay graph inputs.

Each case ends in one of: ``pass`` (imported, and the float64 reference agrees with ONNX's expected outputs within
the case's own rtol/atol), ``refused`` (a convbench error — `IRError` or `BackendError` — with its message),
``wrong`` (ran, disagrees) or ``crash`` (any other exception: a bug in the importer). Needs onnx.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Status = Literal["pass", "refused", "wrong", "crash"]

# ONNX ops whose every input is an activation; every other op reads activations at input 0 only
ALL_ACTIVATIONS = frozenset({"Add", "Sum", "Concat", "Mul"})
# ONNX ops with spatial semantics: only their 2-D (rank-4 input) cases are selected
SPATIAL = frozenset({"Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "LRN"})


@dataclass(frozen=True)
class NodeCaseResult:
    name: str
    status: Status
    message: str = ""


def imported_op_types() -> frozenset[str]:
    """The ONNX op types the importer has a handler for (its table, `onnx_import.HANDLERS`)."""
    from ..ir.onnx_import import HANDLERS

    return frozenset(HANDLERS)


def _elem(vi: Any) -> int:
    return vi.type.tensor_type.elem_type


def selected(case: Any, op_types: frozenset[str]) -> bool:
    """Is ``case`` a 2-D float case of ops the importer handles?"""
    from onnx import TensorProto

    g = case.model.graph if case.model is not None else None
    if g is None or not g.input or not g.output or not {n.op_type for n in g.node} <= op_types:
        return False
    if _elem(g.input[0]) != TensorProto.FLOAT or _elem(g.output[0]) != TensorProto.FLOAT:
        return False
    rank = len(g.input[0].type.tensor_type.shape.dim)
    return rank == 4 or not any(n.op_type in SPATIAL for n in g.node)


def node_cases(op_types: frozenset[str] | None = None) -> list[Any]:
    """ONNX's node test cases in the selection (`selected`), in ONNX's order."""
    from onnx.backend.test.case.node import collect_testcases

    wanted = imported_op_types() if op_types is None else op_types
    with warnings.catch_warnings():  # building some cases (casts to exotic types) warns about overflow
        warnings.simplefilter("ignore")
        cases = collect_testcases()
    return [c for c in cases if c.kind == "node" and selected(c, wanted)]


def activation_inputs(model: Any) -> set[str]:
    """Graph inputs some node reads as an activation (position 0, or any position of `ALL_ACTIVATIONS`)."""
    out = set()
    for node in model.graph.node:
        positions = range(len(node.input)) if node.op_type in ALL_ACTIVATIONS else range(1)
        out.update(node.input[k] for k in positions if k < len(node.input))
    return out


def with_initializers(case: Any) -> tuple[Any, dict[str, np.ndarray], list[np.ndarray]]:
    """(model, feeds, expected outputs) of the case's first data set, its weight-like inputs as initializers."""
    from onnx import numpy_helper

    model = type(case.model)()
    model.CopyFrom(case.model)
    inputs, outputs = case.data_sets[0]
    values = dict(zip((vi.name for vi in case.model.graph.input), inputs, strict=False))
    acts = activation_inputs(model)
    feeds = {}
    kept = []
    for vi in model.graph.input:
        if vi.name in acts:
            kept.append(vi)
            feeds[vi.name] = np.asarray(values[vi.name])
        else:
            model.graph.initializer.append(numpy_helper.from_array(np.asarray(values[vi.name]), vi.name))
    del model.graph.input[:]
    model.graph.input.extend(kept)
    return model, feeds, [np.asarray(o) for o in outputs]


def run_node_case(case: Any) -> NodeCaseResult:
    """Import ``case`` (weights as initializers), run it on the NumPy backend in float64, judge it."""
    from ..backends.base import BackendError
    from ..backends.numpy_ref import BACKEND as NUMPY
    from ..ir.errors import IRError
    from ..ir.onnx_import import from_onnx

    model, feeds, expected = with_initializers(case)
    try:
        graph, params = from_onnx(model, name=case.name)
        exe = NUMPY.compile(graph, params, dtype="float64")
        got = exe(*(feeds[name].astype(np.float64) for name in graph.inputs))
    except (IRError, BackendError) as e:
        return NodeCaseResult(case.name, "refused", f"{type(e).__name__}: {e}")
    except Exception as e:
        return NodeCaseResult(case.name, "crash", f"{type(e).__name__}: {e}")
    got = list(got) if isinstance(got, tuple) else [got]
    for k, (g, want) in enumerate(zip(got, expected, strict=False)):
        if g.shape != want.shape:
            return NodeCaseResult(case.name, "wrong", f"output {k}: shape {g.shape}, ONNX expects {want.shape}")
        if not np.allclose(g, want.astype(np.float64), rtol=case.rtol, atol=case.atol, equal_nan=True):
            worst = float(np.max(np.abs(g - want)))
            return NodeCaseResult(case.name, "wrong", f"output {k}: max abs error {worst:.3g} "
                                                      f"(rtol {case.rtol}, atol {case.atol})")
    if len(got) != len(expected):
        return NodeCaseResult(case.name, "wrong", f"{len(got)} outputs, ONNX expects {len(expected)}")
    return NodeCaseResult(case.name, "pass")


def run_all(op_types: frozenset[str] | None = None) -> Iterator[NodeCaseResult]:
    for case in node_cases(op_types):
        yield run_node_case(case)
