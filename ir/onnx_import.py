"""Import an ONNX model as an IR graph and its parameters: ``from_onnx(path_or_model) -> (graph, params)``.

This module is the loop (values, constants, parameters, the error report); `onnx_ops` (elementwise, linear,
shapes) and `onnx_windows` (Conv, pools, Pad) have one handler per ONNX op, merged in `HANDLERS`. Each ONNX node
becomes one IR node named like its output, so names survive a round trip, except where the IR spells it as two:
padding a conv or pool cannot take becomes a ``<output>::pad`` node before it, a Gemm's matrix C an add after the
linear. Constant sub-graphs (shape arithmetic such as Shape → Gather → Concat feeding a Reshape) are folded with
ONNX's own reference evaluator; Identity is an alias. Patterns that stand for one IR op are recognised: Clip(0, 6)
is relu6, Clip(0, ∞) relu, MatMul (+ Add of a vector) a linear, a Reshape that only flattens a flatten, an Add of a
vector to a bias-free conv/linear that conv's bias, Sigmoid(x)·x silu, and the two averaging MatMuls `to_onnx`
writes an adaptive average pool. QuantizeLinear / DequantizeLinear with constant scale and zero point are the IR's
quantize_linear / dequantize_linear (the constants become attributes; a DequantizeLinear of an int8 initializer
is kept, not folded).

Anything else is refused with one `OnnxImportError` that lists every node it cannot import, with the reason for
each. Float attributes (stored as float32 in ONNX) are read back as the shortest decimal naming that float32,
so 1e-3 stays 1e-3.

The file is validated before it is walked: bytes that are not an ONNX protobuf (an empty file included), a model
without an IR version or without outputs, and an initializer that does not decode are one `OnnxImportError`;
each node goes through ``onnx.checker.check_node`` first (a required attribute missing, an input too few, an
attribute of the wrong type), so an invalid node is listed with the checker's reason rather than reaching a
handler. A complex weight is refused (the IR has no complex dtype), never cast with its imaginary part dropped.
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
from .onnx_ops import FOLD_ONLY, Unsupported
from .onnx_ops import HANDLERS as OP_HANDLERS
from .onnx_windows import HANDLERS as WINDOW_HANDLERS
from .ops import infer_node
from .ops._base import NoAttrs
from .verify import verify

# the integer types hold quantized values, weights (int8) and biases (int32) of a QDQ model
IR_DTYPES = {np.dtype("float32"): "float32", np.dtype("float64"): "float64", np.dtype("float16"): "float16",
             np.dtype("int8"): "int8", np.dtype("uint8"): "uint8", np.dtype("int32"): "int32"}


def _qdq(op: str):
    """QuantizeLinear / DequantizeLinear with constant scale and zero point: their values become `QuantAttrs`
    (the IR keeps them as attributes). A dequantized constant (an int8 weight) stays a parameter, unfolded."""

    def handle(imp: Importer, node: onnx.NodeProto) -> None:
        from .onnx_ops import attributes
        from .ops.quantize_linear import QDTYPES, QuantAttrs

        scale = np.asarray(imp.const(node.input[1], "the scale"))
        zp = (np.asarray(imp.const(node.input[2], "the zero point")) if len(node.input) > 2 and node.input[2]
              else np.zeros(scale.shape, np.uint8))  # ONNX: an absent zero point is uint8 0
        if zp.dtype.name not in QDTYPES or scale.ndim > 1 or zp.shape != scale.shape:
            raise Unsupported(f"zero point of type {zp.dtype} shape {zp.shape} with scale of shape {scale.shape} "
                              f"(the IR takes int8/uint8/int32, per-tensor or 1-D per-channel)")
        axis = int(attributes(node).get("axis", 1))
        x = node.input[0]
        x = imp.param(x, imp.consts[x]) if x in imp.consts else imp.value(x)
        try:
            attrs = QuantAttrs(tuple(scale.ravel().tolist()), tuple(int(z) for z in zp.ravel()), axis, zp.dtype.name)
        except IRError as e:
            raise Unsupported(str(e)) from None
        imp.emit(node.output[0], op, [x], attrs)

    return handle


HANDLERS = {**OP_HANDLERS, **WINDOW_HANDLERS,  # ONNX op type -> its handler: what the importer reads
            "QuantizeLinear": _qdq("quantize_linear"), "DequantizeLinear": _qdq("dequantize_linear")}


class OnnxImportError(IRError):
    """An ONNX model the IR cannot express; ``problems`` lists (node name, op type, reason) for each node."""

    def __init__(self, model: str, problems: list[tuple[str, str, str]], what: str = "node(s) cannot be imported"):
        self.problems = problems
        listed = "\n".join(f"  {name!r} ({op}): {why}" for name, op, why in problems)
        super().__init__(f"ONNX model {model!r}: {len(problems)} {what}:\n{listed}")

    @classmethod
    def file(cls, model: str, part: str, why: str) -> OnnxImportError:
        """The file or model as a whole is not importable (not protobuf, no outputs …): one problem, no node."""
        return cls(model, [(part, "file" if part == "file" else "model", why)], "problem(s) before any node")


def _initializers(model: onnx.ModelProto, label: str) -> dict[str, np.ndarray]:
    consts, problems = {}, []
    for t in model.graph.initializer:
        try:
            consts[t.name] = numpy_helper.to_array(t)
        except Exception as e:  # bytes from the file that numpy/onnx cannot decode, in any way
            problems.append((t.name, "initializer", f"does not decode: {type(e).__name__}: {e}"))
    if problems:
        raise OnnxImportError(label, problems, "initializer(s) cannot be read")
    return consts


def _checker(model: onnx.ModelProto, label: str) -> Any:
    ctx = onnx.checker.C.CheckerContext()
    try:
        ctx.ir_version = model.ir_version
        ctx.opset_imports = {o.domain or "": o.version for o in model.opset_import}
    except (TypeError, ValueError, OverflowError) as e:  # a version out of the checker's integer range
        raise OnnxImportError.file(label, "model", f"its IR version or opset imports are malformed ({e})") from None
    return ctx


class Importer:
    """The state of one import: constants (initializers and folded values), IR values and their types, the IR
    nodes and parameters emitted so far; `run` walks the ONNX nodes in order and collects the problems."""

    def __init__(self, model: onnx.ModelProto, input_shapes: Mapping[str, tuple[int, ...]], label: str = "model"):
        self.model = model
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.checker = _checker(model, label)
        g = model.graph
        self.consts: dict[str, np.ndarray] = _initializers(model, label)
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
        try:
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type))
        except (KeyError, TypeError, ValueError):
            why = f"not a tensor of a known element type (elem_type {tt.elem_type})"
            raise OnnxImportError.file(self.model.graph.name, vi.name, why) from None
        if dtype not in IR_DTYPES:  # complex included: never cast with its imaginary part dropped
            raise IRError(f"input {vi.name!r} has element type {dtype}; the IR takes {list(IR_DTYPES.values())}")
        if vi.name in input_shapes:
            return TensorType(tuple(input_shapes[vi.name]), IR_DTYPES[dtype])
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim]
        if not tt.HasField("shape") or not dims:
            raise IRError(f"input {vi.name!r} has no shape; pass input_shapes={{{vi.name!r}: (...)}}")
        if 0 in dims:  # a dim_value of 0: an empty tensor, not a symbolic one
            raise IRError(f"input {vi.name!r} has shape {dims} with an empty dimension; IR tensors are not empty")
        if not all(isinstance(d, int) and d > 0 for d in dims):
            raise IRError(f"input {vi.name!r} has shape {dims} with symbolic dimensions; pass "
                          f"input_shapes={{{vi.name!r}: (...)}}")
        return TensorType(tuple(dims), IR_DTYPES[dtype])

    def value(self, name: str) -> str:
        """The IR value an activation input names (following aliases); constants are not values."""
        name = self.alias.get(name, name)
        if name not in self.types:
            if name not in self.consts:
                raise Unsupported(f"input {name!r} is not defined (no graph input, initializer or earlier node)")
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
            if array.dtype.kind not in "biuf":  # complex, strings, objects: no IR dtype holds them
                raise Unsupported(f"weight {name!r} has element type {array.dtype}; the IR takes "
                                  f"{list(IR_DTYPES.values())} (integers and bools are cast)")
            cast = array.astype(np.float32)
            if array.dtype.kind != "f" and not np.array_equal(cast, array):
                raise Unsupported(f"weight {name!r} ({array.dtype}) has values float32 cannot hold exactly")
            array = cast
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
        try:
            results = ReferenceEvaluator(node, opsets={"": self.opset}).run(None, feeds)
        except Exception as e:  # onnx's evaluator on the file's constants fails in many ways
            raise Unsupported(f"cannot be evaluated on its constant inputs: {type(e).__name__}: {e}") from None
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
            try:  # what the handlers may then take for granted: required attributes, input counts, types
                onnx.checker.check_node(node, self.checker)
            except (onnx.checker.ValidationError, UnicodeDecodeError) as e:  # the checker's message quotes the node
                why = "its strings are not UTF-8" if isinstance(e, UnicodeDecodeError) else " ".join(str(e).split())
                problems.append((label, node.op_type, f"not valid ONNX: {why}"))
                poisoned.update(node.output)
                continue
            if any(i in poisoned for i in node.input):
                if node.op_type not in HANDLERS and node.op_type not in FOLD_ONLY:
                    problems.append((label, node.op_type, "no IR op for it"))
                poisoned.update(node.output)
                continue
            try:
                # a dequantized int8 weight stays a QDQ pair (an int8 engine needs it), not a folded float
                if all(i in self.consts for i in node.input if i) and node.op_type != "DequantizeLinear":
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


def _load(path: Path) -> onnx.ModelProto:
    """The model in a file, with its external data; one `OnnxImportError` if it is not an ONNX protobuf."""
    from google.protobuf.message import DecodeError
    from onnx.external_data_helper import load_external_data_for_model, uses_external_data

    def refuse(why: str) -> OnnxImportError:
        return OnnxImportError.file(str(path), "file", why)

    try:
        data = path.read_bytes()
    except OSError as e:
        raise refuse(f"cannot read ({e.strerror or e})") from None
    if not data:
        raise refuse("the file is empty: not an ONNX model")
    try:
        proto = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as e:
        raise refuse(f"not an ONNX protobuf ({' '.join(str(e).split())})") from None
    if any(uses_external_data(t) for t in proto.graph.initializer):
        try:
            load_external_data_for_model(proto, str(path.parent))
        except (OSError, ValueError) as e:
            raise refuse(f"its external data cannot be read ({e})") from None
    return proto


def from_onnx(model: str | Path | onnx.ModelProto, input_shapes: Mapping[str, tuple[int, ...]] | None = None,
              name: str | None = None) -> tuple[Graph, dict[str, np.ndarray]]:
    """The IR graph and parameters (keyed by initializer name) of an ONNX model.

    ``input_shapes`` fixes inputs whose shapes are symbolic (a dynamic batch). Raises `OnnxImportError` listing
    every node that cannot be imported.
    """
    proto = _load(Path(model)) if isinstance(model, str | Path) else model
    label = name or proto.graph.name or str(model)
    if proto.ir_version < 1:
        raise OnnxImportError.file(label, "model", "no IR version: not an ONNX model")
    if not proto.graph.output:
        raise OnnxImportError.file(label, "graph", "the graph has no outputs")
    imp = Importer(proto, input_shapes or {}, label)
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
