"""One handler per ONNX op for `convbench.ir.onnx_import`: each reads an ONNX node and emits its IR node(s)
through the importer, or raises `Unsupported` with the reason (windowed ops and Pad: `onnx_windows`). The patterns
live here too: Clip(0, 6) → relu6 and Clip(0, ∞) → relu (other bounds: clip), MatMul (+ Add) → linear, Add of a
vector → the bias of the conv/linear before it, the exporter's two averaging MatMuls → adaptive_avg_pool2d, a
Reshape that flattens → flatten (any other Reshape, and Flatten at an axis other than 1: reshape), Sigmoid(x)·x →
silu, HardSigmoid with torch's alpha = 1/6, beta = 1/2 → hardsigmoid.

Constants an op broadcasts are expanded at import to the shape the IR op takes (`expand_constant`): for Mul the
(N, C, 1, 1) gate where the constant is the same over H and W, else the activation's shape; an Add of a constant
that is no bias becomes an add of such a parameter, a Gemm's C that is no bias an add after the linear (named
``<output>::gemm``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import helper

from .errors import IRError
from .graph import Node
from .onnx_export import averaging_matrix
from .ops._fused import heads
from .ops.adaptive_avg_pool2d import AdaptivePoolAttrs
from .ops.batch_norm import BatchNormAttrs
from .ops.clip import ClipAttrs
from .ops.concat import ConcatAttrs
from .ops.dropout import DropoutAttrs
from .ops.elu import EluAttrs
from .ops.flatten import FlattenAttrs
from .ops.leaky_relu import LeakyReluAttrs
from .ops.lrn import LrnAttrs
from .ops.reshape import ReshapeAttrs
from .ops.softmax import SoftmaxAttrs

if TYPE_CHECKING:
    from .onnx_import import Importer


class Unsupported(Exception):
    """Raised by a handler: this node cannot be imported, for the stated reason."""


def f32(value: float) -> float:
    """The shortest decimal that names the same float32 (ONNX stores float attributes as float32)."""
    return float(np.format_float_scientific(np.float32(value), unique=True))


# -- helpers ----------------------------------------------------------------------------------------------------
def attributes(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def rank4(imp: Importer, x: str, op: str) -> tuple[int, ...]:
    shape = imp.types[x].shape
    if len(shape) != 4:
        raise Unsupported(f"{op} on a rank-{len(shape)} input {shape}: the IR's {op} is 2-D (NCHW)")
    return shape


def secondary_output_used(imp: Importer, node: onnx.NodeProto) -> bool:
    """Does anything read an output after the first (a mask, indices, running statistics), or is it returned?"""
    returned = {o.name for o in imp.model.graph.output}
    return any(o and (imp.consumers.get(o) or o in returned) for o in node.output[1:])


def expand_constant(imp: Importer, name: str, value: np.ndarray, x: str, what: str, gate: bool = False) -> str:
    """A constant an elementwise op applies to activation ``x``, as the parameter the IR op takes: as it is when
    it has x's shape, else broadcast (NumPy's rules) to x's shape — or, with ``gate`` (mul), to (N, C, 1, 1) when it
    is the same over H and W of an NCHW ``x``. A constant that does not broadcast onto x is refused."""
    shape = imp.types[x].shape
    try:
        fits = np.broadcast_shapes(value.shape, shape) == shape
    except ValueError:
        fits = False
    if not fits:
        raise Unsupported(f"{what}: constant {name!r} of shape {value.shape} does not broadcast onto {shape}")
    if value.shape != shape and gate and len(shape) == 4:
        per_channel = (*shape[:2], 1, 1)
        if np.broadcast_shapes(value.shape, per_channel) == per_channel:
            shape = per_channel
    return imp.param(name, value if value.shape == shape else np.ascontiguousarray(np.broadcast_to(value, shape)))


# -- one handler per ONNX op ------------------------------------------------------------------------------------
def _gemm(imp: Importer, node: onnx.NodeProto) -> None:
    """alpha·A·B' + beta·C as linear: B' (B, or Bᵀ with transB) transposed once into the weight and scaled by
    alpha; a C that broadcasts onto one row is the bias, any other C an add of it after the linear."""
    a = attributes(node)
    if a.get("transA", 0):
        raise Unsupported("transA=1 transposes the activation; the IR's linear takes it as is (and has no "
                          "transpose)")
    x = imp.value(node.input[0])
    if imp.types[x].rank != 2:
        raise Unsupported(f"Gemm input of shape {imp.types[x].shape} is not rank 2")
    alpha, beta = a.get("alpha", 1.0), a.get("beta", 1.0)
    if node.input[1] not in imp.consts and a.get("transB", 0) and alpha == beta == 1.0:  # a QDQ model's Gemm
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else ""
        ins = [x, imp.value(node.input[1])] + ([imp.value(bias) if bias not in imp.consts else imp.param(
            bias, imp.consts[bias])] if bias else [])
        imp.emit(node.output[0], "linear", ins)
        return
    w = imp.const(node.input[1], "Gemm B")
    weight = (w if a.get("transB", 0) else w.T) * (w.dtype.type(alpha) if alpha != 1.0 else 1)
    inputs = [x, imp.param(node.input[1], np.ascontiguousarray(weight, dtype=w.dtype))]
    c_name = node.input[2] if len(node.input) > 2 and node.input[2] else ""
    if not c_name:
        imp.emit(node.output[0], "linear", inputs)
        return
    c = imp.const(c_name, "Gemm C")
    c = c * c.dtype.type(beta) if beta != 1.0 else c
    features = weight.shape[0]
    if c.ndim <= 2 and c.size in (1, features) and (c.ndim < 2 or c.shape[0] == 1):  # a bias: one row
        inputs.append(imp.param(c_name, np.ascontiguousarray(np.broadcast_to(c.reshape(-1), (features,)))))
        imp.emit(node.output[0], "linear", inputs)
        return
    product = f"{node.output[0]}::gemm"
    imp.emit(product, "linear", inputs)
    imp.emit(node.output[0], "add", [product, expand_constant(imp, c_name, c, product, "Gemm C")])


def _matmul(imp: Importer, node: onnx.NodeProto) -> None:
    if node.input[0] in imp.consts:
        raise Unsupported("a constant on the left of MatMul is only supported in an adaptive average pool")
    x = imp.value(node.input[0])
    w = imp.const(node.input[1], "MatMul B")
    if w.ndim != 2:
        raise Unsupported(f"B of shape {w.shape} is not a 2-D weight")
    if imp.types[x].rank == 4 and _adaptive_pool(imp, node, x, w):
        return
    source = imp.transposed.get(node.input[1])  # B = Transpose(W): the weight is W itself, under its own name
    weight = imp.param(source, imp.consts[source]) if source else imp.param(node.input[1], np.ascontiguousarray(w.T))
    imp.emit(node.output[0], "linear", [x, weight])


def _adaptive_pool(imp: Importer, node: onnx.NodeProto, x: str, pool_w: np.ndarray) -> bool:
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
    imp.done.add(second.output[0])
    return True


def _add(imp: Importer, node: onnx.NodeProto) -> None:
    consts = [i for i in node.input if i in imp.consts]
    if not consts:
        imp.emit(node.output[0], "add", [imp.value(i) for i in node.input])
        return
    (c,) = consts
    x = imp.value(next(i for i in node.input if i != c))
    if not _fold_bias(imp, node, x, c):
        imp.emit(node.output[0], "add", [x, expand_constant(imp, c, imp.consts[c], x, "Add")])


def _fold_bias(imp: Importer, node: onnx.NodeProto, x: str, c: str) -> bool:
    """Add(conv or linear without bias, constant vector) → that node with the vector as its bias, where the
    conv/linear has no bias, is read by the Add alone and the constant is a per-channel vector."""
    producer = next((n for n in reversed(imp.nodes) if n.name == x), None)
    if producer is None or producer.op not in heads() or len(producer.inputs) != 2:
        return False
    if len(imp.consumers.get(x, [])) != 1 or any(o.name == x for o in imp.model.graph.output):
        return False
    out = imp.types[x].shape[-1 if producer.op == "linear" else 1]
    bias = imp.consts[c]
    want = (out,) if producer.op == "linear" else (out, 1, 1)
    if bias.shape not in (want, (1, *want)):
        return False
    # the fused node takes the Add's name: the value it computes is the Add's output
    index = imp.nodes.index(producer)
    name = node.output[0]
    imp.nodes[index] = Node(name, producer.op, (*producer.inputs, imp.param(c, bias.reshape(out))), producer.attrs)
    imp.types[name] = imp.types.pop(x)
    return True


def _mul(imp: Importer, node: onnx.NodeProto) -> None:
    """mul broadcasts one way, the (N, C, 1, 1) gate onto NCHW: two activations are put in that order (the product
    commutes), a constant is expanded to the shape mul takes (`expand_constant`)."""
    a, b = node.input[0], node.input[1]
    if a in imp.consts or b in imp.consts:
        c, x = (a, b) if a in imp.consts else (b, a)
        x = imp.value(x)
        imp.emit(node.output[0], "mul", [x, expand_constant(imp, c, imp.consts[c], x, "Mul", gate=True)])
        return
    x, y = imp.value(a), imp.value(b)
    if imp.types[x].numel < imp.types[y].numel:
        x, y = y, x
    imp.emit(node.output[0], "mul", [x, y])


def _sum(imp: Importer, node: onnx.NodeProto) -> None:
    if len(node.input) == 1:
        imp.alias[node.output[0]] = imp.value(node.input[0])
    else:
        imp.emit(node.output[0], "add", [imp.value(i) for i in node.input])


def _clip(imp: Importer, node: onnx.NodeProto) -> None:
    a = attributes(node)
    x = imp.value(node.input[0])
    if imp.opset < 11:
        lo, hi = float(a.get("min", -np.inf)), float(a.get("max", np.inf))
    else:
        names = [*node.input[1:3], "", ""]
        lo = float(np.asarray(imp.const(names[0], "Clip min")).reshape(-1)[0]) if names[0] else -np.inf
        hi = float(np.asarray(imp.const(names[1], "Clip max")).reshape(-1)[0]) if names[1] else np.inf
    # opset 6 writes an absent bound as float32's extreme: no bound either
    bound = float(np.finfo(np.float32).max)
    lo_ = None if not np.isfinite(lo) or lo <= -bound else f32(lo)
    hi_ = None if not np.isfinite(hi) or hi >= bound else f32(hi)
    if (lo_, hi_) == (0.0, 6.0):
        imp.emit(node.output[0], "relu6", [x])
    elif (lo_, hi_) == (0.0, None):
        imp.emit(node.output[0], "relu", [x])
    else:
        imp.emit(node.output[0], "clip", [x], ClipAttrs(lo_, hi_))


def _sigmoid(imp: Importer, node: onnx.NodeProto) -> None:
    """Sigmoid(x) read only by Mul(x, ·) is silu (how the exporter, and torch before opset 14, write it)."""
    x = imp.value(node.input[0])
    mul = imp.sole_consumer(node.output[0], "Mul")
    if mul is not None and sorted(mul.input) == sorted([node.input[0], node.output[0]]):
        imp.emit(mul.output[0], "silu", [x])
        imp.done.add(mul.output[0])
        return
    imp.emit(node.output[0], "sigmoid", [x])


def _hard_sigmoid(imp: Importer, node: onnx.NodeProto) -> None:
    a = attributes(node)
    alpha, beta = a.get("alpha", 0.2), a.get("beta", 0.5)
    if np.float32(alpha) != np.float32(1 / 6) or np.float32(beta) != np.float32(0.5):
        raise Unsupported(f"HardSigmoid(alpha={f32(alpha)}, beta={f32(beta)}): the IR's hardsigmoid is torch's, "
                          f"alpha = 1/6 and beta = 1/2 (ONNX's defaults are 0.2 and 0.5)")
    imp.emit(node.output[0], "hardsigmoid", [imp.value(node.input[0])])


def _elementwise(op: str, make: Callable[[dict], object] | None = None) -> Callable[[Importer, onnx.NodeProto], None]:
    def handle(imp: Importer, node: onnx.NodeProto) -> None:
        imp.emit(node.output[0], op, [imp.value(node.input[0])], make(attributes(node)) if make else None)

    return handle


def _softmax(imp: Importer, node: onnx.NodeProto) -> None:
    x = imp.value(node.input[0])
    rank = imp.types[x].rank
    axis = attributes(node).get("axis", -1 if imp.opset >= 13 else 1)
    if imp.opset < 13 and axis % rank != rank - 1:  # before opset 13 Softmax normalised all axes from `axis` on
        raise Unsupported(f"opset-{imp.opset} Softmax over axes {axis % rank}… of a rank-{rank} input (the IR's "
                           f"softmax is over one axis)")
    imp.emit(node.output[0], "softmax", [x], SoftmaxAttrs(axis))


def _batch_norm(imp: Importer, node: onnx.NodeProto) -> None:
    a = attributes(node)
    if a.get("training_mode", 0) or secondary_output_used(imp, node):
        raise Unsupported("training mode (running statistics as outputs): the IR's batch_norm is inference")
    stats = [imp.param(i, imp.const(i, "BatchNormalization " + role))
             for i, role in zip(node.input[1:], ("scale", "B", "mean", "var"), strict=True)]
    imp.emit(node.output[0], "batch_norm", [imp.value(node.input[0]), *stats],
             BatchNormAttrs(f32(a.get("epsilon", 1e-5))))


def _lrn(imp: Importer, node: onnx.NodeProto) -> None:
    a = attributes(node)
    if a["size"] % 2 == 0:
        raise Unsupported(f"LRN of even size {a['size']}: ONNX's window has its extra channel after the centre, "
                           f"the IR's (torch's) before")
    attrs = LrnAttrs(a["size"], f32(a.get("alpha", 1e-4)), f32(a.get("beta", 0.75)), f32(a.get("bias", 1.0)))
    imp.emit(node.output[0], "lrn", [imp.value(node.input[0])], attrs)


def _concat(imp: Importer, node: onnx.NodeProto) -> None:
    xs = [imp.value(i) for i in node.input]
    imp.emit(node.output[0], "concat", xs, ConcatAttrs(attributes(node)["axis"]))


def _flatten(imp: Importer, node: onnx.NodeProto) -> None:
    """ONNX's Flatten is always 2-D (the axes before ``axis`` merged, the rest merged): the IR's flatten at
    axis 1, a reshape at any other."""
    x = imp.value(node.input[0])
    shape = imp.types[x].shape
    axis = attributes(node).get("axis", 1)
    axis = axis + len(shape) if axis < 0 else axis
    if axis == 1:
        imp.emit(node.output[0], "flatten", [x], FlattenAttrs(1))
        return
    lead = int(np.prod(shape[:axis]))
    imp.emit(node.output[0], "reshape", [x], ReshapeAttrs((lead, int(np.prod(shape)) // lead)))


def _reshape(imp: Importer, node: onnx.NodeProto) -> None:
    x = imp.value(node.input[0])
    shape = imp.types[x].shape
    target = [int(d) for d in imp.const(node.input[1], "Reshape shape")]
    target = [shape[i] if d == 0 and not attributes(node).get("allowzero", 0) else d for i, d in enumerate(target)]
    if -1 in target:
        known = int(np.prod([d for d in target if d != -1]))
        target[target.index(-1)] = int(np.prod(shape)) // max(known, 1)
    k = len(target) - 1  # a Reshape to the same shape is flatten(rank − 1): a no-op that keeps the node
    if tuple(target) == shape:
        imp.emit(node.output[0], "flatten", [x], FlattenAttrs(max(k, 0)))
    elif 0 <= k < len(shape) and tuple(target[:k]) == shape[:k] and target[k] == int(np.prod(shape[k:])):
        imp.emit(node.output[0], "flatten", [x], FlattenAttrs(k))  # a flatten of the trailing axes
    else:
        try:
            attrs = ReshapeAttrs(tuple(target))
        except IRError as e:
            raise Unsupported(f"Reshape {shape} → {tuple(target)}: {e}") from None
        imp.emit(node.output[0], "reshape", [x], attrs)


def _dropout(imp: Importer, node: onnx.NodeProto) -> None:
    if secondary_output_used(imp, node):
        raise Unsupported("its mask output is used; the IR's dropout returns the data only")
    ratio = attributes(node).get("ratio", 0.5)
    if len(node.input) > 1 and node.input[1]:
        ratio = float(imp.const(node.input[1], "Dropout ratio"))
    training = len(node.input) > 2 and node.input[2] and bool(imp.const(node.input[2], "training_mode"))
    if training and ratio != 0:  # training with ratio 0 drops nothing: the identity, as at inference
        raise Unsupported(f"training_mode is true with ratio {ratio}: random masks are not inference")
    imp.emit(node.output[0], "dropout", [imp.value(node.input[0])], DropoutAttrs(f32(ratio)))


def _identity(imp: Importer, node: onnx.NodeProto) -> None:
    imp.alias[node.output[0]] = imp.value(node.input[0])


def _shape(imp: Importer, node: onnx.NodeProto) -> None:
    a = attributes(node)
    shape = imp.types[imp.value(node.input[0])].shape
    imp.consts[node.output[0]] = np.array(shape[a.get("start", 0): a.get("end", len(shape))], np.int64)


HANDLERS: dict[str, Callable[[Importer, onnx.NodeProto], None]] = {  # with onnx_windows.HANDLERS: the table
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Relu": _elementwise("relu"),
    "LeakyRelu": _elementwise("leaky_relu", lambda a: LeakyReluAttrs(f32(a.get("alpha", 0.01)))),
    "Sigmoid": _sigmoid,
    "HardSigmoid": _hard_sigmoid,
    "HardSwish": _elementwise("hardswish"),
    "Tanh": _elementwise("tanh"),
    "Elu": _elementwise("elu", lambda a: EluAttrs(f32(a.get("alpha", 1.0)))),
    "Clip": _clip,
    "Softmax": _softmax,
    "BatchNormalization": _batch_norm,
    "LRN": _lrn,
    "Add": _add,
    "Mul": _mul,
    "Sum": _sum,
    "Concat": _concat,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Dropout": _dropout,
    "Identity": _identity,
    "Shape": _shape,
}
# Ops that only appear in shape arithmetic: folded when their inputs are constants, refused otherwise.
FOLD_ONLY = frozenset({"Constant", "ConstantOfShape", "Gather", "Unsqueeze", "Squeeze", "Cast", "Slice", "Div",
                       "Sub", "Range", "Transpose", "ReduceProd", "Equal", "Where", "Expand"})
