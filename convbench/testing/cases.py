"""`OpCase` and the deterministic data every case is built from (the corpus itself is in `corpus.py`).

A case is a small graph (usually one node), its parameters and its inputs, all float32 and all derived from the
case id, so two processes (pytest-xdist workers, two backends) see bit-identical arrays. Its reference output is
the NumPy backend evaluated in float64 on exactly those float32 values.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from functools import cached_property
from typing import Any

import numpy as np

from ..ir import ops as ir_ops
from ..ir.graph import Graph, Node, TensorType
from ..ir.verify import verify


def rng(*key: object) -> np.random.Generator:
    """A generator seeded by ``key`` (strings and ints): the same key gives the same numbers everywhere."""
    return np.random.default_rng([zlib.crc32(str(k).encode()) for k in key])


@dataclass(frozen=True, eq=False)
class OpCase:
    """One conformance case: ``graph`` run on ``inputs`` with ``params``; ``op`` is the op under test
    (for a multi-node pattern, its ops joined by "+")."""

    id: str
    op: str
    graph: Graph
    params: dict[str, np.ndarray]
    inputs: dict[str, np.ndarray]
    tags: frozenset[str] = field(default_factory=frozenset)

    @property
    def ops(self) -> frozenset[str]:
        """Every op the case's graph uses."""
        return frozenset(n.op for n in self.graph.nodes)

    def input_list(self) -> list[np.ndarray]:
        return [self.inputs[name] for name in self.graph.inputs]

    @cached_property
    def reference(self) -> list[np.ndarray]:
        """The graph's outputs from the NumPy backend in float64 (computed once per case object)."""
        return reference_outputs(self.graph, self.params, self.inputs)

    def describe(self) -> str:
        """Op, shapes and attributes, e.g. ``conv2d x(2,3,7,5) weight(4,3,3,3) → (2,4,5,3) stride=(2, 2)``."""
        return "; ".join(describe_node(self.graph, n) for n in self.graph.nodes)

    def __repr__(self) -> str:  # what hypothesis prints for a falsifying example
        return f"OpCase({self.id!r}: {self.describe()})"


def describe_node(graph: Graph, node: Node) -> str:
    types = graph.types
    args = " ".join(f"{_role(node, k)}{_shape(types[i].shape)}" for k, i in enumerate(node.inputs))
    return f"{node.op} {args} → {_shape(types[node.name].shape)}" + "".join(f" {a}" for a in changed_attrs(node.attrs))


def _role(node: Node, k: int) -> str:
    return ir_ops.get(node.op).role(k) if k else "x"


def _shape(shape: Sequence[int]) -> str:
    return "(" + ",".join(map(str, shape)) + ")"


def changed_attrs(attrs: Any) -> list[str]:
    """``name=value`` for every attribute that differs from its default (required ones always)."""
    if attrs is None or not hasattr(attrs, "__dataclass_fields__"):
        return []
    required = {f.name: getattr(attrs, f.name) for f in fields(attrs) if f.default is MISSING}
    default = type(attrs)(**required)
    return [f"{f.name}={getattr(attrs, f.name)}" for f in fields(attrs)
            if f.name in required or getattr(attrs, f.name) != getattr(default, f.name)]


def reference_outputs(graph: Graph, params: Mapping[str, np.ndarray],
                      inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    from ..backends.numpy_ref import BACKEND as NUMPY

    exe = NUMPY.compile(graph, params, dtype="float64")
    out = exe(*(np.asarray(inputs[n], dtype=np.float64) for n in graph.inputs))
    return list(out) if isinstance(out, tuple) else [out]


# -- building cases ---------------------------------------------------------------------------------------------

def draw_param(case_id: str, name: str, shape: tuple[int, ...], op: str, role: str) -> np.ndarray:
    """Values that keep every op's output of order one: fan-in scaled weights, BN variance well above 0."""
    g = rng(case_id, name)
    if op == "batch_norm":
        if role == "running_var":
            return g.uniform(0.25, 2.0, shape)
        if role == "weight":
            return g.uniform(0.5, 1.5, shape)
        return g.normal(0.0, 0.5 if role == "running_mean" else 0.1, shape)
    if role == "weight":
        return g.normal(0.0, 1.0 / np.sqrt(max(1, int(np.prod(shape[1:])))), shape)
    return g.normal(0.0, 0.1, shape)


# int8/uint8 values (quantized weights and inputs of dequantize_linear): uniform over the whole range
INT_RANGES = {"int8": (-128, 127), "uint8": (0, 255)}


def draw_int(case_id: str, name: str, t: TensorType) -> np.ndarray:
    lo, hi = INT_RANGES[t.dtype]
    return rng(case_id, name).integers(lo, hi, t.shape, endpoint=True).astype(t.dtype)


def params_for(graph: Graph, case_id: str) -> dict[str, np.ndarray]:
    """Deterministic float32 parameters for every parameter of ``graph`` (role from the first reader); an
    int8/uint8 one (a quantized weight) holds integers of its type."""
    out: dict[str, np.ndarray] = {}
    for node in graph.nodes:
        opdef = ir_ops.get(node.op)
        for k, i in enumerate(node.inputs):
            if i in graph.params and i not in out:
                t = graph.params[i]
                out[i] = draw_int(case_id, i, t) if t.dtype in INT_RANGES else \
                    draw_param(case_id, i, t.shape, node.op, opdef.role(k)).astype(np.float32)
    return out


def inputs_for(graph: Graph, case_id: str, scale: float = 1.0) -> dict[str, np.ndarray]:
    return {name: draw_int(case_id, name, t) if t.dtype in INT_RANGES
            else (scale * rng(case_id, name).standard_normal(t.shape)).astype(np.float32)
            for name, t in graph.inputs.items()}


def make_case(case_id: str, graph: Graph, *, scale: float = 1.0, tags: Sequence[str] = ()) -> OpCase:
    """An `OpCase` from a graph: verified, with parameters and inputs drawn from the id."""
    graph = verify(graph.replace(name=case_id))
    op = "+".join(dict.fromkeys(n.op for n in graph.nodes))
    return OpCase(case_id, op, graph, params_for(graph, case_id), inputs_for(graph, case_id, scale),
                  frozenset(tags))


def node_case(case_id: str, op: str, attrs: Any, inputs: Sequence[tuple[int, ...]],
              params: Sequence[tuple[str, tuple[int, ...]]] = (), *, scale: float = 1.0,
              tags: Sequence[str] = ()) -> OpCase:
    """A one-node case: activations ``x`` (or ``x0``, ``x1`` … for several), then parameters ``op.role``."""
    names = ["x"] if len(inputs) == 1 else [f"x{i}" for i in range(len(inputs))]
    graph_inputs = {n: TensorType(s) for n, s in zip(names, inputs, strict=True)}
    graph_params = {f"{op}.{role}": TensorType(s) for role, s in params}
    node = Node(op, op, (*names, *graph_params), attrs if attrs is not None else ir_ops.NoAttrs())
    graph = Graph(graph_inputs, (node,), (op,), graph_params, case_id)
    return make_case(case_id, graph, scale=scale, tags=tags)


def pair_tag(v: tuple[int, int]) -> str:
    """``3`` for (3, 3), ``3x2`` for (3, 2): how case ids spell a pair."""
    return str(v[0]) if v[0] == v[1] else f"{v[0]}x{v[1]}"
