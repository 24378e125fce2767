"""Import an ONNX model as an IR graph and its parameters: ``from_onnx(path_or_model) -> (graph, params)``.

This module is the loop (values, constants, parameters, the error report); `onnx_ops` has one handler per ONNX
op. Each ONNX node becomes at most one IR node named like its output, so names survive a round trip. Constant
sub-graphs (shape arithmetic such as Shape → Gather → Concat feeding a Reshape) are folded with ONNX's own
reference evaluator; Identity is an alias. Patterns that stand for one IR op are recognised: Clip(0, 6) is relu6,
Clip(0, ∞) relu, MatMul (+ Add of a vector) a linear, a Reshape that only flattens a flatten, an Add of a vector to
a bias-free conv/linear that conv's bias, and the two averaging MatMuls `to_onnx` writes an adaptive average pool.

Anything else is refused with one `OnnxImportError` that lists every node it cannot import, with the reason for
each. Float attributes (stored as float32 in ONNX) are read back as the shortest decimal naming that float32,
so 1e-3 stays 1e-3.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .errors import IRError
from .graph import Graph, Node, TensorType
from .onnx_ops import FOLD_ONLY, HANDLERS, Unsupported
from .ops import infer_node
from .ops._base import NoAttrs
from .verify import verify

IR_DTYPES = {np.dtype("float32"): "float32", np.dtype("float64"): "float64", np.dtype("float16"): "float16"}


class OnnxImportError(IRError):
    """An ONNX model the IR cannot express; ``problems`` lists (node name, op type, reason) for each node."""

    def __init__(self, model: str, problems: list[tuple[str, str, str]]):
        self.problems = problems
        listed = "\n".join(f"  {name!r} ({op}): {why}" for name, op, why in problems)
        super().__init__(f"ONNX model {model!r}: {len(problems)} node(s) cannot be imported:\n{listed}")


class Importer:
    """The state of one import: constants (initializers and folded values), IR values and their types, the IR
    nodes and parameters emitted so far; `run` walks the ONNX nodes in order and collects the problems."""

    def __init__(self, model: onnx.ModelProto, input_shapes: Mapping[str, tuple[int, ...]]):
        self.model = model
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        g = model.graph
        self.consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        self.alias: dict[str, str] = {}  # ONNX value -> IR value it is the same tensor as
        self.types: dict[str, TensorType] = {}
        self.inputs: dict[str, TensorType] = {}
        self.nodes: list[Node] = []
        self.params: dict[str, np.ndarray] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in g.node:
            for i in node.input:
                self.consumers[i].append(node)
        self.done: set[str] = set()  # first outputs of ONNX nodes a pattern already consumed
        self.transposed: dict[str, str] = {}  # folded Transpose of a 2-D constant -> that constant
        for vi in g.input:
            if vi.name not in self.consts:
                self.inputs[vi.name] = self._input_type(vi, input_shapes)
                self.types[vi.name] = self.inputs[vi.name]

    # -- values -------------------------------------------------------------------------------------------------
    def _input_type(self, vi: onnx.ValueInfoProto, input_shapes: Mapping[str, tuple[int, ...]]) -> TensorType:
        tt = vi.type.tensor_type
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type))
        if dtype not in IR_DTYPES:
            raise IRError(f"input {vi.name!r} has element type {dtype}; the IR takes {list(IR_DTYPES.values())}")
        if vi.name in input_shapes:
            return TensorType(tuple(input_shapes[vi.name]), IR_DTYPES[dtype])
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim]
        if not tt.HasField("shape") or not dims:
            raise IRError(f"input {vi.name!r} has no shape; pass input_shapes={{{vi.name!r}: (...)}}")
        if not all(isinstance(d, int) and d > 0 for d in dims):
            raise IRError(f"input {vi.name!r} has shape {dims} with symbolic dimensions; pass "
                          f"input_shapes={{{vi.name!r}: (...)}}")
        return TensorType(tuple(dims), IR_DTYPES[dtype])

    def value(self, name: str) -> str:
        """The IR value an activation input names (following aliases); constants are not values."""
        name = self.alias.get(name, name)
        if name not in self.types:
            raise Unsupported(f"input {name!r} is a constant where the IR needs an activation")
        return name

    def const(self, name: str, what: str) -> np.ndarray:
        if name not in self.consts:
            raise Unsupported(f"{what} ({name!r}) must be a constant (an initializer or folded), it is computed")
        return self.consts[name]

    def param(self, name: str, array: np.ndarray) -> str:
        """Register a parameter; the same name with different contents (e.g. transposed) gets a new name."""
        array = np.asarray(array)
        if array.dtype not in IR_DTYPES:
            array = array.astype(np.float32)
        key, k = name, 0
        while key in self.params and not (self.params[key].shape == array.shape
                                          and np.array_equal(self.params[key], array)):
            k += 1
            key = f"{name}#{k}"
        self.params[key] = array
        self.types[key] = TensorType(array.shape, IR_DTYPES[array.dtype])
        return key

    def emit(self, out: str, op: str, inputs: list[str], attrs: Any = None) -> None:
        node = Node(out, op, tuple(inputs), NoAttrs() if attrs is None else attrs)
        try:
            self.types[out] = infer_node(node, self.types)
        except IRError as e:
            raise Unsupported(str(e)) from None
        self.nodes.append(node)

    def sole_consumer(self, value: str, op_type: str) -> onnx.NodeProto | None:
        users = self.consumers.get(value, [])
        out_is_graph_output = any(o.name == value for o in self.model.graph.output)
        if len(users) == 1 and users[0].op_type == op_type and not out_is_graph_output:
            return users[0]
        return None

    # -- the loop -----------------------------------------------------------------------------------------------
    def fold(self, node: onnx.NodeProto) -> None:
        from onnx.reference import ReferenceEvaluator

        feeds = {i: self.consts[i] for i in node.input if i}
        results = ReferenceEvaluator(node, opsets={"": self.opset}).run(None, feeds)
        for name, value in zip(node.output, results, strict=False):
            self.consts[name] = np.asarray(value)
        if node.op_type == "Transpose" and self.consts[node.input[0]].ndim == 2:
            self.transposed[node.output[0]] = node.input[0]

    def run(self) -> list[tuple[str, str, str]]:
        problems: list[tuple[str, str, str]] = []
        poisoned: set[str] = set()
        for index, node in enumerate(self.model.graph.node):
            label = node.name or (node.output[0] if node.output else f"#{index}")
            if node.output and node.output[0] in self.done:
                continue
            if node.domain not in ("", "ai.onnx"):
                problems.append((label, f"{node.domain}.{node.op_type}", "operator domain is not ONNX's"))
                poisoned.update(node.output)
                continue
            if any(i in poisoned for i in node.input):
                if node.op_type not in HANDLERS and node.op_type not in FOLD_ONLY:
                    problems.append((label, node.op_type, "no IR op for it"))
                poisoned.update(node.output)
                continue
            try:
                if all(i in self.consts for i in node.input if i):
                    self.fold(node)
                elif node.op_type in HANDLERS:
                    HANDLERS[node.op_type](self, node)
                else:
                    raise Unsupported("no IR op for it" if node.op_type not in FOLD_ONLY
                                       else "only supported on constants (it is applied to an activation)")
            except Unsupported as e:
                problems.append((label, node.op_type, str(e)))
                poisoned.update(node.output)
        return problems


def from_onnx(model: str | Path | onnx.ModelProto, input_shapes: Mapping[str, tuple[int, ...]] | None = None,
              name: str | None = None) -> tuple[Graph, dict[str, np.ndarray]]:
    """The IR graph and parameters (keyed by initializer name) of an ONNX model.

    ``input_shapes`` fixes inputs whose shapes are symbolic (a dynamic batch). Raises `OnnxImportError` listing
    every node that cannot be imported.
    """
    proto = onnx.load(str(model)) if isinstance(model, str | Path) else model
    label = name or proto.graph.name or str(model)
    imp = Importer(proto, input_shapes or {})
    problems = imp.run()
    outputs = []
    for out in proto.graph.output:
        value = imp.alias.get(out.name, out.name)
        if value in imp.consts:
            problems.append((out.name, "output", "the graph output is a constant"))
        outputs.append(value)
    if problems:
        raise OnnxImportError(label, problems)
    used = {i for n in imp.nodes for i in n.inputs}
    params = {k: v for k, v in imp.params.items() if k in used}  # a bias folded away leaves no orphan
    graph = Graph(imp.inputs, tuple(imp.nodes), tuple(outputs), {k: imp.types[k] for k in params}, label)
    return verify(graph), params
