"""One handler per ONNX op for `convbench.ir.onnx_import`: each reads an ONNX node and emits (at most) one IR node
through the importer, or raises `Unsupported` with the reason. The patterns live here too: Clip(0, 6) → relu6,
MatMul (+ Add) → linear, Add of a vector → the bias of the conv/linear before it, the exporter's two averaging
MatMuls → adaptive_avg_pool2d, a Reshape that flattens → flatten.
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

if TYPE_CHECKING:
    from .onnx_import import Importer


class Unsupported(Exception):
    """Raised by a handler: this node cannot be imported, for the stated reason."""


def f32(value: float) -> float:
    """The shortest decimal that names the same float32 (ONNX stores float attributes as float32)."""
    return float(np.format_float_scientific(np.float32(value), unique=True))


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
            raise Unsupported(f"auto_pad={auto} needs asymmetric padding {total} here; the IR pads symmetrically")
        return total[0] // 2, total[1] // 2
    if auto == "VALID":
        return 0, 0
    pads = list(a.get("pads", [0, 0, 0, 0]))
    if len(pads) != 4 or pads[:2] != pads[2:]:
        raise Unsupported(f"pads {pads} are not symmetric 2-D padding [top, left, bottom, right]")
    return pads[0], pads[1]


def _rank4(imp: Importer, x: str, op: str) -> tuple[int, ...]:
    shape = imp.types[x].shape
    if len(shape) != 4:
        raise Unsupported(f"{op} on a rank-{len(shape)} input {shape}: the IR's {op} is 2-D (NCHW)")
    return shape


# -- one handler per ONNX op ------------------------------------------------------------------------------------
def _conv(imp: Importer, node: onnx.NodeProto) -> None:
    a = _attrs(node)
    x = imp.value(node.input[0])
    w = imp.const(node.input[1], "Conv weight")
    shape = _rank4(imp, x, "Conv")
    if w.ndim != 4:
        raise Unsupported(f"weight of shape {w.shape}: only 2-D convolutions are supported")
    kernel = tuple(a.get("kernel_shape", w.shape[2:]))
    if kernel != w.shape[2:]:
        raise Unsupported(f"kernel_shape {kernel} differs from the weight's {w.shape[2:]}")
    stride, dilation = tuple(a.get("strides", (1, 1))), tuple(a.get("dilations", (1, 1)))
    pad = _pads(node, a, shape[2:], kernel, stride, dilation)
    inputs = [x, imp.param(node.input[1], w)]
    if len(node.input) > 2 and node.input[2]:
        inputs.append(imp.param(node.input[2], imp.const(node.input[2], "Conv bias")))
    imp.emit(node.output[0], "conv2d", inputs, Conv2dAttrs(stride, pad, dilation, a.get("group", 1)))


def _pool(op: str) -> Callable[[Importer, onnx.NodeProto], None]:
    def handle(imp: Importer, node: onnx.NodeProto) -> None:
        a = _attrs(node)
        if len(node.output) > 1 and node.output[1] and imp.consumers.get(node.output[1]):
            raise Unsupported("the Indices output is used; the IR's max pool returns values only")
        x = imp.value(node.input[0])
        shape = _rank4(imp, x, node.op_type)
        kernel = tuple(a["kernel_shape"])
        stride, dilation = tuple(a.get("strides", (1, 1))), tuple(a.get("dilations", (1, 1)))
        if op == "avg_pool2d" and dilation != (1, 1):
            raise Unsupported(f"dilations {dilation}: the IR's average pool has none")
        pad = _pads(node, a, shape[2:], kernel, stride, dilation)
        try:
            attrs = PoolAttrs(kernel, stride, pad, dilation, bool(a.get("ceil_mode", 0)),
                              bool(a.get("count_include_pad", 0)) if op == "avg_pool2d" else True)
        except IRError as e:
            raise Unsupported(str(e)) from None
        imp.emit(node.output[0], op, [x], attrs)

    return handle


def _global_average_pool(imp: Importer, node: onnx.NodeProto) -> None:
    x = imp.value(node.input[0])
    _rank4(imp, x, "GlobalAveragePool")
    imp.emit(node.output[0], "adaptive_avg_pool2d", [x], AdaptivePoolAttrs(1))


def _gemm(imp: Importer, node: onnx.NodeProto) -> None:
    a = _attrs(node)
    if a.get("transA", 0):
        raise Unsupported("transA=1: the IR's linear takes the activation as is")
    x = imp.value(node.input[0])
    if imp.types[x].rank != 2:
        raise Unsupported(f"Gemm input of shape {imp.types[x].shape} is not rank 2")
    w = imp.const(node.input[1], "Gemm B")
    alpha, beta = a.get("alpha", 1.0), a.get("beta", 1.0)
    weight = (w if a.get("transB", 0) else w.T) * (w.dtype.type(alpha) if alpha != 1.0 else 1)
    inputs = [x, imp.param(node.input[1], np.ascontiguousarray(weight, dtype=w.dtype))]
    if len(node.input) > 2 and node.input[2]:
        c = imp.const(node.input[2], "Gemm C")
        if c.size != weight.shape[0] or (c.ndim == 2 and c.shape[0] != 1):
            raise Unsupported(f"C of shape {c.shape} is not a bias of {weight.shape[0]} features")
        bias = c.reshape(-1) * (c.dtype.type(beta) if beta != 1.0 else 1)
        inputs.append(imp.param(node.input[2], bias.astype(c.dtype)))
    imp.emit(node.output[0], "linear", inputs)


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
    _fold_bias(imp, node, x, c)


def _fold_bias(imp: Importer, node: onnx.NodeProto, x: str, c: str) -> None:
    """Add(conv or linear without bias, constant vector) → that node with the vector as its bias."""
    producer = next((n for n in reversed(imp.nodes) if n.name == x), None)
    if producer is None or producer.op not in ("conv2d", "linear") or len(producer.inputs) != 2:
        raise Unsupported("adding a constant is only supported as the bias of a conv or linear without one")
    if len(imp.consumers.get(x, [])) != 1 or any(o.name == x for o in imp.model.graph.output):
        raise Unsupported(f"the bias is added to {x!r}, which is read elsewhere too")
    out = imp.types[x].shape[-1 if producer.op == "linear" else 1]
    bias = imp.consts[c]
    want = (out,) if producer.op == "linear" else (out, 1, 1)
    if bias.shape not in (want, (1, *want)):
        raise Unsupported(f"constant of shape {bias.shape} is not a per-channel bias for {imp.types[x].shape}")
    # the fused node takes the Add's name: the value it computes is the Add's output
    index = imp.nodes.index(producer)
    name = node.output[0]
    imp.nodes[index] = Node(name, producer.op, (*producer.inputs, imp.param(c, bias.reshape(out))), producer.attrs)
    imp.types[name] = imp.types.pop(x)


def _sum(imp: Importer, node: onnx.NodeProto) -> None:
    if len(node.input) == 1:
        imp.alias[node.output[0]] = imp.value(node.input[0])
    else:
        imp.emit(node.output[0], "add", [imp.value(i) for i in node.input])


def _clip(imp: Importer, node: onnx.NodeProto) -> None:
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
        raise Unsupported(f"Clip({lo}, {hi}): the IR has relu (0, ∞) and relu6 (0, 6)")


def _elementwise(op: str, make: Callable[[dict], object] | None = None) -> Callable[[Importer, onnx.NodeProto], None]:
    def handle(imp: Importer, node: onnx.NodeProto) -> None:
        imp.emit(node.output[0], op, [imp.value(node.input[0])], make(_attrs(node)) if make else None)

    return handle


def _softmax(imp: Importer, node: onnx.NodeProto) -> None:
    x = imp.value(node.input[0])
    rank = imp.types[x].rank
    axis = _attrs(node).get("axis", -1 if imp.opset >= 13 else 1)
    if imp.opset < 13 and axis % rank != rank - 1:  # before opset 13 Softmax normalised all axes from `axis` on
        raise Unsupported(f"opset-{imp.opset} Softmax over axes {axis % rank}… of a rank-{rank} input (the IR's "
                           f"softmax is over one axis)")
    imp.emit(node.output[0], "softmax", [x], SoftmaxAttrs(axis))


def _batch_norm(imp: Importer, node: onnx.NodeProto) -> None:
    a = _attrs(node)
    if a.get("training_mode", 0) or any(o and imp.consumers.get(o) for o in node.output[1:]):
        raise Unsupported("training mode (running statistics as outputs): the IR's batch_norm is inference")
    stats = [imp.param(i, imp.const(i, "BatchNormalization " + role))
             for i, role in zip(node.input[1:], ("scale", "B", "mean", "var"), strict=True)]
    imp.emit(node.output[0], "batch_norm", [imp.value(node.input[0]), *stats],
             BatchNormAttrs(f32(a.get("epsilon", 1e-5))))


def _lrn(imp: Importer, node: onnx.NodeProto) -> None:
    a = _attrs(node)
    if a["size"] % 2 == 0:
        raise Unsupported(f"LRN of even size {a['size']}: ONNX's window has its extra channel after the centre, "
                           f"the IR's (torch's) before")
    attrs = LrnAttrs(a["size"], f32(a.get("alpha", 1e-4)), f32(a.get("beta", 0.75)), f32(a.get("bias", 1.0)))
    imp.emit(node.output[0], "lrn", [imp.value(node.input[0])], attrs)


def _concat(imp: Importer, node: onnx.NodeProto) -> None:
    xs = [imp.value(i) for i in node.input]
    imp.emit(node.output[0], "concat", xs, ConcatAttrs(_attrs(node)["axis"]))


def _flatten(imp: Importer, node: onnx.NodeProto) -> None:
    x = imp.value(node.input[0])
    axis = _attrs(node).get("axis", 1) % max(imp.types[x].rank, 1)
    if axis != 1:
        raise Unsupported(f"Flatten(axis={axis}) merges the leading axes; the IR's flatten keeps them")
    imp.emit(node.output[0], "flatten", [x], FlattenAttrs(1))


def _reshape(imp: Importer, node: onnx.NodeProto) -> None:
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
        raise Unsupported(f"Reshape {shape} → {tuple(target)} is not a flatten of the trailing axes")
    imp.emit(node.output[0], "flatten", [x], FlattenAttrs(k))


def _dropout(imp: Importer, node: onnx.NodeProto) -> None:
    if len(node.output) > 1 and node.output[1] and imp.consumers.get(node.output[1]):
        raise Unsupported("its mask output is used")
    if len(node.input) > 2 and node.input[2] and bool(imp.const(node.input[2], "training_mode")):
        raise Unsupported("training_mode is true")
    ratio = _attrs(node).get("ratio", 0.5)
    if len(node.input) > 1 and node.input[1]:
        ratio = float(imp.const(node.input[1], "Dropout ratio"))
    imp.emit(node.output[0], "dropout", [imp.value(node.input[0])], DropoutAttrs(f32(ratio)))


def _identity(imp: Importer, node: onnx.NodeProto) -> None:
    imp.alias[node.output[0]] = imp.value(node.input[0])


def _shape(imp: Importer, node: onnx.NodeProto) -> None:
    a = _attrs(node)
    shape = imp.types[imp.value(node.input[0])].shape
    imp.consts[node.output[0]] = np.array(shape[a.get("start", 0): a.get("end", len(shape))], np.int64)


HANDLERS: dict[str, Callable[[Importer, onnx.NodeProto], None]] = {
    "Conv": _conv,
    "MaxPool": _pool("max_pool2d"),
    "AveragePool": _pool("avg_pool2d"),
    "GlobalAveragePool": _global_average_pool,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Relu": _elementwise("relu"),
    "LeakyRelu": _elementwise("leaky_relu", lambda a: LeakyReluAttrs(f32(a.get("alpha", 0.01)))),
    "Sigmoid": _elementwise("sigmoid"),
    "Tanh": _elementwise("tanh"),
    "Elu": _elementwise("elu", lambda a: EluAttrs(f32(a.get("alpha", 1.0)))),
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
