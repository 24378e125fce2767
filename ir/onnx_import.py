"""Import an ONNX model as an IR graph and its parameters: ``from_onnx(path_or_model) -> (graph, params)``.

Each ONNX node becomes at most one IR node named like its output, so names survive a round trip. Constant
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
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .errors import IRError
from .graph import Graph, Node, TensorType
from .onnx_export import averaging_matrix
from .ops import infer_node
from .ops._base import NoAttrs
from .ops._pool import PoolAttrs
from .ops.adaptive_avg_pool2d import AdaptivePoolAttrs
from .ops.batch_norm import BatchNormAttrs
from .ops.concat import ConcatAttrs
from .ops.conv2d import Conv2dAttrs
from .ops.dropout import DropoutAttrs
from .ops.elu import EluAttrs
from .ops.flatten import FlattenAttrs
from .ops.leaky_relu import LeakyReluAttrs
from .ops.lrn import LrnAttrs
from .ops.softmax import SoftmaxAttrs
from .verify import verify

IR_DTYPES = {np.dtype("float32"): "float32", np.dtype("float64"): "float64", np.dtype("float16"): "float16"}


class OnnxImportError(IRError):
    """An ONNX model the IR cannot express; ``problems`` lists (node name, op type, reason) for each node."""

    def __init__(self, model: str, problems: list[tuple[str, str, str]]):
        self.problems = problems
        listed = "\n".join(f"  {name!r} ({op}): {why}" for name, op, why in problems)
        super().__init__(f"ONNX model {model!r}: {len(problems)} node(s) cannot be imported:\n{listed}")


class _Unsupported(Exception):
    """Raised by a handler: this node cannot be imported, for the stated reason."""


def _f32(value: float) -> float:
    """The shortest decimal that names the same float32 (ONNX stores float attributes as float32)."""
    return float(np.format_float_scientific(np.float32(value), unique=True))


class _Importer:
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
        self.done: set[int] = set()  # ids of ONNX nodes a pattern already consumed
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
            raise _Unsupported(f"input {name!r} is a constant where the IR needs an activation")
        return name

    def const(self, name: str, what: str) -> np.ndarray:
        if name not in self.consts:
            raise _Unsupported(f"{what} ({name!r}) must be a constant (an initializer or folded), it is computed")
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

    def emit(self, out: str, op: str, inputs: list[str], attrs=None) -> None:
        node = Node(out, op, tuple(inputs), NoAttrs() if attrs is None else attrs)
        try:
            self.types[out] = infer_node(node, self.types)
        except IRError as e:
            raise _Unsupported(str(e)) from None
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
            if id(node) in self.done:
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
                    raise _Unsupported("no IR op for it" if node.op_type not in FOLD_ONLY
                                       else "only supported on constants (it is applied to an activation)")
            except _Unsupported as e:
                problems.append((label, node.op_type, str(e)))
                poisoned.update(node.output)
        return problems


# -- helpers for attributes -------------------------------------------------------------------------------------
def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _pads(node: onnx.NodeProto, a: dict, in_hw: tuple[int, ...], kernel: tuple[int, int],
          stride: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int]:
    """Symmetric (pad_h, pad_w) from ``pads`` or ``auto_pad``; asymmetric padding has no IR form."""
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        total = [max(0, (-(-size // s) - 1) * s + (k - 1) * d + 1 - size)
                 for size, k, s, d in zip(in_hw, kernel, stride, dilation, strict=True)]
        if any(t % 2 for t in total):
            raise _Unsupported(f"auto_pad={auto} needs asymmetric padding {total} here; the IR pads symmetrically")
        return total[0] // 2, total[1] // 2
    if auto == "VALID":
        return 0, 0
    pads = list(a.get("pads", [0, 0, 0, 0]))
    if len(pads) != 4 or pads[:2] != pads[2:]:
        raise _Unsupported(f"pads {pads} are not symmetric 2-D padding [top, left, bottom, right]")
    return pads[0], pads[1]


def _rank4(imp: _Importer, x: str, op: str) -> tuple[int, ...]:
    shape = imp.types[x].shape
    if len(shape) != 4:
        raise _Unsupported(f"{op} on a rank-{len(shape)} input {shape}: the IR's {op} is 2-D (NCHW)")
    return shape


# -- one handler per ONNX op ------------------------------------------------------------------------------------
def _conv(imp: _Importer, node: onnx.NodeProto) -> None:
    a = _attrs(node)
    x = imp.value(node.input[0])
    w = imp.const(node.input[1], "Conv weight")
    shape = _rank4(imp, x, "Conv")
    if w.ndim != 4:
        raise _Unsupported(f"weight of shape {w.shape}: only 2-D convolutions are supported")
    kernel = tuple(a.get("kernel_shape", w.shape[2:]))
    if kernel != w.shape[2:]:
        raise _Unsupported(f"kernel_shape {kernel} differs from the weight's {w.shape[2:]}")
    stride, dilation = tuple(a.get("strides", (1, 1))), tuple(a.get("dilations", (1, 1)))
    pad = _pads(node, a, shape[2:], kernel, stride, dilation)
    inputs = [x, imp.param(node.input[1], w)]
    if len(node.input) > 2 and node.input[2]:
        inputs.append(imp.param(node.input[2], imp.const(node.input[2], "Conv bias")))
    imp.emit(node.output[0], "conv2d", inputs, Conv2dAttrs(stride, pad, dilation, a.get("group", 1)))


def _pool(op: str) -> Callable[[_Importer, onnx.NodeProto], None]:
    def handle(imp: _Importer, node: onnx.NodeProto) -> None:
        a = _attrs(node)
        if len(node.output) > 1 and node.output[1] and imp.consumers.get(node.output[1]):
            raise _Unsupported("the Indices output is used; the IR's max pool returns values only")
        x = imp.value(node.input[0])
        shape = _rank4(imp, x, node.op_type)
        kernel = tuple(a["kernel_shape"])
        stride, dilation = tuple(a.get("strides", (1, 1))), tuple(a.get("dilations", (1, 1)))
        if op == "avg_pool2d" and dilation != (1, 1):
            raise _Unsupported(f"dilations {dilation}: the IR's average pool has none")
        pad = _pads(node, a, shape[2:], kernel, stride, dilation)
        try:
            attrs = PoolAttrs(kernel, stride, pad, dilation, bool(a.get("ceil_mode", 0)),
                              bool(a.get("count_include_pad", 0)) if op == "avg_pool2d" else True)
        except IRError as e:
            raise _Unsupported(str(e)) from None
        imp.emit(node.output[0], op, [x], attrs)

    return handle


def _global_average_pool(imp: _Importer, node: onnx.NodeProto) -> None:
    x = imp.value(node.input[0])
    _rank4(imp, x, "GlobalAveragePool")
    imp.emit(node.output[0], "adaptive_avg_pool2d", [x], AdaptivePoolAttrs(1))


def _gemm(imp: _Importer, node: onnx.NodeProto) -> None:
    a = _attrs(node)
    if a.get("transA", 0):
        raise _Unsupported("transA=1: the IR's linear takes the activation as is")
    x = imp.value(node.input[0])
    if imp.types[x].rank != 2:
        raise _Unsupported(f"Gemm input of shape {imp.types[x].shape} is not rank 2")
    w = imp.const(node.input[1], "Gemm B")
    alpha, beta = a.get("alpha", 1.0), a.get("beta", 1.0)
    weight = (w if a.get("transB", 0) else w.T) * (w.dtype.type(alpha) if alpha != 1.0 else 1)
    inputs = [x, imp.param(node.input[1], np.ascontiguousarray(weight, dtype=w.dtype))]
    if len(node.input) > 2 and node.input[2]:
        c = imp.const(node.input[2], "Gemm C")
        if c.size != weight.shape[0] or (c.ndim == 2 and c.shape[0] != 1):
            raise _Unsupported(f"C of shape {c.shape} is not a bias of {weight.shape[0]} features")
        bias = c.reshape(-1) * (c.dtype.type(beta) if beta != 1.0 else 1)
        inputs.append(imp.param(node.input[2], bias.astype(c.dtype)))
    imp.emit(node.output[0], "linear", inputs)


def _matmul(imp: _Importer, node: onnx.NodeProto) -> None:
    if node.input[0] in imp.consts:
        raise _Unsupported("a constant on the left of MatMul is only supported in an adaptive average pool")
    x = imp.value(node.input[0])
    w = imp.const(node.input[1], "MatMul B")
    if w.ndim != 2:
        raise _Unsupported(f"B of shape {w.shape} is not a 2-D weight")
    if imp.types[x].rank == 4 and _adaptive_pool(imp, node, x, w):
        return
    source = imp.transposed.get(node.input[1])  # B = Transpose(W): the weight is W itself, under its own name
    weight = imp.param(source, imp.consts[source]) if source else imp.param(node.input[1], np.ascontiguousarray(w.T))
    imp.emit(node.output[0], "linear", [x, weight])


def _adaptive_pool(imp: _Importer, node: onnx.NodeProto, x: str, pool_w: np.ndarray) -> bool:
    """x · Pwᵀ followed by Ph · (…) with averaging matrices: what `to_onnx` writes for an adaptive pool."""
    h, wd = imp.types[x].shape[2:]
    second = imp.sole_consumer(node.output[0], "MatMul")
    if second is None or second.input[1] != node.output[0] or second.input[0] not in imp.consts:
        return False
    pool_h = imp.consts[second.input[0]]
    if pool_w.shape[0] != wd or pool_h.ndim != 2 or pool_h.shape[1] != h:
        return False
    oh, ow = pool_h.shape[0], pool_w.shape[1]
    if not (np.allclose(pool_w, averaging_matrix(wd, ow).T, rtol=1e-6, atol=0)
            and np.allclose(pool_h, averaging_matrix(h, oh), rtol=1e-6, atol=0)):
        return False
    imp.emit(second.output[0], "adaptive_avg_pool2d", [x], AdaptivePoolAttrs((oh, ow)))
    imp.done.add(id(second))
    return True


def _add(imp: _Importer, node: onnx.NodeProto) -> None:
    consts = [i for i in node.input if i in imp.consts]
    if not consts:
        imp.emit(node.output[0], "add", [imp.value(i) for i in node.input])
        return
    (c,) = consts
    x = imp.value(next(i for i in node.input if i != c))
    _fold_bias(imp, node, x, c)


def _fold_bias(imp: _Importer, node: onnx.NodeProto, x: str, c: str) -> None:
    """Add(conv or linear without bias, constant vector) → that node with the vector as its bias."""
    producer = next((n for n in reversed(imp.nodes) if n.name == x), None)
    if producer is None or producer.op not in ("conv2d", "linear") or len(producer.inputs) != 2:
        raise _Unsupported("adding a constant is only supported as the bias of a conv or linear without one")
    if len(imp.consumers.get(x, [])) != 1 or any(o.name == x for o in imp.model.graph.output):
        raise _Unsupported(f"the bias is added to {x!r}, which is read elsewhere too")
    out = imp.types[x].shape[-1 if producer.op == "linear" else 1]
    bias = imp.consts[c]
    want = (out,) if producer.op == "linear" else (out, 1, 1)
    if bias.shape not in (want, (1, *want)):
        raise _Unsupported(f"constant of shape {bias.shape} is not a per-channel bias for {imp.types[x].shape}")
    # the fused node takes the Add's name: the value it computes is the Add's output
    index = imp.nodes.index(producer)
    name = node.output[0]
    imp.nodes[index] = Node(name, producer.op, (*producer.inputs, imp.param(c, bias.reshape(out))), producer.attrs)
    imp.types[name] = imp.types.pop(x)


def _sum(imp: _Importer, node: onnx.NodeProto) -> None:
    if len(node.input) == 1:
        imp.alias[node.output[0]] = imp.value(node.input[0])
    else:
        imp.emit(node.output[0], "add", [imp.value(i) for i in node.input])


def _clip(imp: _Importer, node: onnx.NodeProto) -> None:
    a = _attrs(node)
    x = imp.value(node.input[0])
    if imp.opset < 11:
        lo, hi = a.get("min", -np.inf), a.get("max", np.inf)
    else:
        names = [*node.input[1:3], "", ""]
        lo = float(imp.const(names[0], "Clip min")) if names[0] else -np.inf
        hi = float(imp.const(names[1], "Clip max")) if names[1] else np.inf
    if (lo, hi) == (0.0, 6.0):
        imp.emit(node.output[0], "relu6", [x])
    elif (lo, hi) == (0.0, np.inf):
        imp.emit(node.output[0], "relu", [x])
    else:
        raise _Unsupported(f"Clip({lo}, {hi}): the IR has relu (0, ∞) and relu6 (0, 6)")


def _elementwise(op: str, make: Callable[[dict], object] | None = None) -> Callable[[_Importer, onnx.NodeProto], None]:
    def handle(imp: _Importer, node: onnx.NodeProto) -> None:
        imp.emit(node.output[0], op, [imp.value(node.input[0])], make(_attrs(node)) if make else None)

    return handle


def _softmax(imp: _Importer, node: onnx.NodeProto) -> None:
    x = imp.value(node.input[0])
    rank = imp.types[x].rank
    axis = _attrs(node).get("axis", -1 if imp.opset >= 13 else 1)
    if imp.opset < 13 and axis % rank != rank - 1:  # before opset 13 Softmax normalised all axes from `axis` on
        raise _Unsupported(f"opset-{imp.opset} Softmax over axes {axis % rank}… of a rank-{rank} input (the IR's "
                           f"softmax is over one axis)")
    imp.emit(node.output[0], "softmax", [x], SoftmaxAttrs(axis))


def _batch_norm(imp: _Importer, node: onnx.NodeProto) -> None:
    a = _attrs(node)
    if a.get("training_mode", 0) or any(o and imp.consumers.get(o) for o in node.output[1:]):
        raise _Unsupported("training mode (running statistics as outputs): the IR's batch_norm is inference")
    stats = [imp.param(i, imp.const(i, "BatchNormalization " + role))
             for i, role in zip(node.input[1:], ("scale", "B", "mean", "var"), strict=True)]
    imp.emit(node.output[0], "batch_norm", [imp.value(node.input[0]), *stats],
             BatchNormAttrs(_f32(a.get("epsilon", 1e-5))))


def _lrn(imp: _Importer, node: onnx.NodeProto) -> None:
    a = _attrs(node)
    if a["size"] % 2 == 0:
        raise _Unsupported(f"LRN of even size {a['size']}: ONNX's window has its extra channel after the centre, "
                           f"the IR's (torch's) before")
    attrs = LrnAttrs(a["size"], _f32(a.get("alpha", 1e-4)), _f32(a.get("beta", 0.75)), _f32(a.get("bias", 1.0)))
    imp.emit(node.output[0], "lrn", [imp.value(node.input[0])], attrs)


def _concat(imp: _Importer, node: onnx.NodeProto) -> None:
    xs = [imp.value(i) for i in node.input]
    imp.emit(node.output[0], "concat", xs, ConcatAttrs(_attrs(node)["axis"]))


def _flatten(imp: _Importer, node: onnx.NodeProto) -> None:
    x = imp.value(node.input[0])
    axis = _attrs(node).get("axis", 1) % max(imp.types[x].rank, 1)
    if axis != 1:
        raise _Unsupported(f"Flatten(axis={axis}) merges the leading axes; the IR's flatten keeps them")
    imp.emit(node.output[0], "flatten", [x], FlattenAttrs(1))


def _reshape(imp: _Importer, node: onnx.NodeProto) -> None:
    x = imp.value(node.input[0])
    shape = imp.types[x].shape
    target = [int(d) for d in imp.const(node.input[1], "Reshape shape")]
    target = [shape[i] if d == 0 and not _attrs(node).get("allowzero", 0) else d for i, d in enumerate(target)]
    if -1 in target:
        known = int(np.prod([d for d in target if d != -1]))
        target[target.index(-1)] = int(np.prod(shape)) // max(known, 1)
    k = len(target) - 1  # a Reshape to the same shape is flatten(rank − 1): a no-op that keeps the node
    if tuple(target) == shape:
        imp.emit(node.output[0], "flatten", [x], FlattenAttrs(max(k, 0)))
        return
    if k < 0 or tuple(target[:k]) != shape[:k] or target[k] != int(np.prod(shape[k:])):
        raise _Unsupported(f"Reshape {shape} → {tuple(target)} is not a flatten of the trailing axes")
    imp.emit(node.output[0], "flatten", [x], FlattenAttrs(k))


def _dropout(imp: _Importer, node: onnx.NodeProto) -> None:
    if len(node.output) > 1 and node.output[1] and imp.consumers.get(node.output[1]):
        raise _Unsupported("its mask output is used")
    if len(node.input) > 2 and node.input[2] and bool(imp.const(node.input[2], "training_mode")):
        raise _Unsupported("training_mode is true")
    ratio = _attrs(node).get("ratio", 0.5)
    if len(node.input) > 1 and node.input[1]:
        ratio = float(imp.const(node.input[1], "Dropout ratio"))
    imp.emit(node.output[0], "dropout", [imp.value(node.input[0])], DropoutAttrs(_f32(ratio)))


def _identity(imp: _Importer, node: onnx.NodeProto) -> None:
    imp.alias[node.output[0]] = imp.value(node.input[0])


def _shape(imp: _Importer, node: onnx.NodeProto) -> None:
    a = _attrs(node)
    shape = imp.types[imp.value(node.input[0])].shape
    imp.consts[node.output[0]] = np.array(shape[a.get("start", 0): a.get("end", len(shape))], np.int64)


HANDLERS: dict[str, Callable[[_Importer, onnx.NodeProto], None]] = {
    "Conv": _conv,
    "MaxPool": _pool("max_pool2d"),
    "AveragePool": _pool("avg_pool2d"),
    "GlobalAveragePool": _global_average_pool,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Relu": _elementwise("relu"),
    "LeakyRelu": _elementwise("leaky_relu", lambda a: LeakyReluAttrs(_f32(a.get("alpha", 0.01)))),
    "Sigmoid": _elementwise("sigmoid"),
    "Tanh": _elementwise("tanh"),
    "Elu": _elementwise("elu", lambda a: EluAttrs(_f32(a.get("alpha", 1.0)))),
    "Clip": _clip,
    "Softmax": _softmax,
    "BatchNormalization": _batch_norm,
    "LRN": _lrn,
    "Add": _add,
    "Sum": _sum,
    "Concat": _concat,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Dropout": _dropout,
    "Identity": _identity,
    "Shape": _shape,
}
# Ops that only appear in shape arithmetic: folded when their inputs are constants, refused otherwise.
FOLD_ONLY = frozenset({"Constant", "ConstantOfShape", "Gather", "Unsqueeze", "Squeeze", "Cast", "Slice", "Mul",
                       "Div", "Sub", "Range", "Transpose", "ReduceProd", "Equal", "Where", "Expand"})


def from_onnx(model: str | Path | onnx.ModelProto, input_shapes: Mapping[str, tuple[int, ...]] | None = None,
              name: str | None = None) -> tuple[Graph, dict[str, np.ndarray]]:
    """The IR graph and parameters (keyed by initializer name) of an ONNX model.

    ``input_shapes`` fixes inputs whose shapes are symbolic (a dynamic batch). Raises `OnnxImportError` listing
    every node that cannot be imported.
    """
    proto = onnx.load(str(model)) if isinstance(model, str | Path) else model
    label = name or proto.graph.name or str(model)
    imp = _Importer(proto, input_shapes or {})
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
