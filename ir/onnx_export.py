"""Export a graph and its parameters to ONNX (opset 17), one ONNX node per IR node where the op has one.

Value names are kept: every ONNX value is named like the IR value it holds (node outputs, parameters under their
state_dict keys, the graph input), so `from_onnx(to_onnx(g, p))` gives back ``g`` and ``p``. Attributes map
one-to-one (conv pads are symmetric in the IR and written as [top, left, bottom, right]). Where ONNX has no
single op for an IR op, the export is an exact composition that the importer recognises:

- adaptive_avg_pool2d: GlobalAveragePool for 1×1, AveragePool when the output divides the input, otherwise two
  MatMuls with constant averaging matrices (x · Pwᵀ along W, then Ph · (…) along H);
- relu6: Clip(0, 6); flatten from an axis other than 1: Reshape to a constant shape; add of 3+ inputs: Sum;
- silu: Sigmoid then Mul by its input; clip: Clip with an absent bound as an empty input; pad: Pad with the 8
  pads of an NCHW tensor and its constant_value; hardsigmoid: HardSigmoid(alpha = 1/6, beta = 1/2), torch's;

- linear: Gemm on rank-2 inputs, else Transpose(W), MatMul (and Add of the bias), as torch writes nn.Linear;
- fused_conv2d / fused_linear (from `passes.fuse`): Conv or Gemm, Add of the residual, the activation — imported
  back as the unfused nodes;
- quantize_linear / dequantize_linear: QuantizeLinear / DequantizeLinear with their attributes as scale and
  zero-point initializers (the QDQ format ONNX Runtime fuses); int8/uint8/int32 parameters are integer
  initializers (cast from whatever float dtype holds their integer values).

`EMITTERS` (one emitter per IR op) is the export table, and so the ONNX Runtime backend's lowering table; this
module imports onnx only when it writes a model, so the table answers without onnx installed. Nodes with no exact
ONNX equivalent are refused by `unsupported_reason` (which ORT's ``supports`` uses): LRN of even size, where ONNX
centres the window the other way round from torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import IRError
from .graph import Graph, Node, TensorType
from .ops._base import NoAttrs
from .ops.adaptive_avg_pool2d import bounds

if TYPE_CHECKING:
    import onnx

OPSET = 17
# dtype -> onnx.TensorProto type; the integer types are quantized values, weights and biases (QDQ)
ELEM_TYPES = {"float32": "FLOAT", "float64": "DOUBLE", "float16": "FLOAT16", "int8": "INT8", "uint8": "UINT8",
              "int32": "INT32"}


def _elem_type(dtype: str) -> int:
    from onnx import TensorProto

    return getattr(TensorProto, ELEM_TYPES[dtype])


class OnnxExportError(IRError):
    """A graph that cannot be written as ONNX; the message names every node that stands in the way."""


def averaging_matrix(size: int, out: int) -> np.ndarray:
    """(out, size) matrix whose row i averages input cells [floor(i·size/out), ceil((i+1)·size/out))."""
    m = np.zeros((out, size))
    for i, (start, end) in enumerate(bounds(size, out)):
        m[i, start:end] = 1.0 / (end - start)
    return m


class _Writer:
    """Collects ONNX nodes and the extra constants they need; names constants after their node."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.types = dict(graph.types)  # a copy: fused ops add the types of their intermediate values
        self.nodes: list[onnx.NodeProto] = []
        self.constants: list[onnx.TensorProto] = []

    def emit(self, op_type: str, inputs: list[str], output: str, name: str, **attrs) -> None:
        from onnx import helper

        self.nodes.append(helper.make_node(op_type, inputs, [output], name=name, **attrs))

    def constant(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.constants.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def np_dtype(self, node: Node) -> np.dtype:
        return np.dtype(self.types[node.name].dtype)


# -- one emitter per IR op ----------------------------------------------------------------------------------------
def _conv2d(w: _Writer, node: Node) -> None:
    a = node.attrs
    kh, kw = w.types[node.inputs[1]].shape[2:]
    w.emit("Conv", list(node.inputs), node.name, node.name, kernel_shape=[kh, kw], strides=list(a.stride),
           pads=[*a.padding, *a.padding], dilations=list(a.dilation), group=a.groups)


def _pool(op_type: str) -> Callable[[_Writer, Node], None]:
    def emit(w: _Writer, node: Node) -> None:
        a = node.attrs
        extra = {"dilations": list(a.dilation)} if op_type == "MaxPool" else {"count_include_pad": int(
            a.count_include_pad)}
        w.emit(op_type, [node.inputs[0]], node.name, node.name, kernel_shape=list(a.kernel_size),
               strides=list(a.stride), pads=[*a.padding, *a.padding], ceil_mode=int(a.ceil_mode), **extra)

    return emit


def _adaptive_avg_pool2d(w: _Writer, node: Node) -> None:
    (x,) = node.inputs
    h, wd = w.types[x].shape[2:]
    oh, ow = node.attrs.output_size
    if (oh, ow) == (1, 1):
        w.emit("GlobalAveragePool", [x], node.name, node.name)
    elif h % oh == 0 and wd % ow == 0:
        k = [h // oh, wd // ow]
        w.emit("AveragePool", [x], node.name, node.name, kernel_shape=k, strides=k)
    else:  # unequal windows: a separable linear map, exactly the reference's window means
        dt = w.np_dtype(node)
        cols = f"{node.name}::cols"
        w.emit("MatMul", [x, w.constant(f"{node.name}::pool_w", averaging_matrix(wd, ow).T.astype(dt))], cols,
               cols)
        w.emit("MatMul", [w.constant(f"{node.name}::pool_h", averaging_matrix(h, oh).astype(dt)), cols],
               node.name, node.name)


def _linear(w: _Writer, node: Node) -> None:
    if w.types[node.inputs[0]].rank == 2:
        w.emit("Gemm", list(node.inputs), node.name, node.name, transB=1)
        return
    # Gemm takes rank 2 only: x · Wᵀ (+ b) as Transpose, MatMul (and Add), as torch exports nn.Linear
    weight_t = f"{node.name}::weight_t"
    w.emit("Transpose", [node.inputs[1]], weight_t, weight_t, perm=[1, 0])
    product = f"{node.name}::matmul" if len(node.inputs) > 2 else node.name
    w.emit("MatMul", [node.inputs[0], weight_t], product, product)
    if len(node.inputs) > 2:
        w.emit("Add", [product, node.inputs[2]], node.name, node.name)


def _same(op_type: str, **attr_names: str) -> Callable[[_Writer, Node], None]:
    """An ONNX op with the IR op's inputs; ``attr_names`` maps ONNX attribute -> IR attrs field."""

    def emit(w: _Writer, node: Node) -> None:
        attrs = {k: getattr(node.attrs, v) for k, v in attr_names.items()}
        w.emit(op_type, list(node.inputs), node.name, node.name, **attrs)

    return emit


def _hardsigmoid(w: _Writer, node: Node) -> None:
    # torch's hardsigmoid, relu6(x + 3)/6, is ONNX's max(0, min(1, alpha·x + beta)) at alpha = 1/6, beta = 1/2
    w.emit("HardSigmoid", [node.inputs[0]], node.name, node.name, alpha=1 / 6, beta=0.5)


def _relu6(w: _Writer, node: Node) -> None:
    dt = w.np_dtype(node)
    lo = w.constant(f"{node.name}::min", np.array(0, dt))
    hi = w.constant(f"{node.name}::max", np.array(6, dt))
    w.emit("Clip", [node.inputs[0], lo, hi], node.name, node.name)


def _clip(w: _Writer, node: Node) -> None:
    dt = w.np_dtype(node)
    bounds = [w.constant(f"{node.name}::{k}", np.array(v, dt)) if v is not None else ""
              for k, v in (("min", node.attrs.min), ("max", node.attrs.max))]
    while bounds and not bounds[-1]:  # trailing absent inputs are left out, as ONNX writes them
        bounds.pop()
    w.emit("Clip", [node.inputs[0], *bounds], node.name, node.name)


def _silu(w: _Writer, node: Node) -> None:
    gate = f"{node.name}::sigmoid"
    w.types[gate] = w.types[node.name]
    w.emit("Sigmoid", [node.inputs[0]], gate, gate)
    w.emit("Mul", [node.inputs[0], gate], node.name, node.name)


def _pad(w: _Writer, node: Node) -> None:
    top, left, bottom, right = node.attrs.pads
    pads = w.constant(f"{node.name}::pads", np.array([0, 0, top, left, 0, 0, bottom, right], np.int64))
    value = w.constant(f"{node.name}::value", np.array(node.attrs.value, w.np_dtype(node)))
    w.emit("Pad", [node.inputs[0], pads, value], node.name, node.name, mode="constant")


def _reshape(w: _Writer, node: Node) -> None:
    shape = w.constant(f"{node.name}::shape", np.array(node.attrs.shape, np.int64))
    w.emit("Reshape", [node.inputs[0], shape], node.name, node.name)


def _lrn(w: _Writer, node: Node) -> None:
    a = node.attrs
    w.emit("LRN", [node.inputs[0]], node.name, node.name, size=a.size, alpha=a.alpha, beta=a.beta, bias=a.k)


def _add(w: _Writer, node: Node) -> None:
    w.emit("Add" if len(node.inputs) == 2 else "Sum", list(node.inputs), node.name, node.name)


def _flatten(w: _Writer, node: Node) -> None:
    if node.attrs.start_dim == 1:
        w.emit("Flatten", [node.inputs[0]], node.name, node.name, axis=1)
        return
    shape = w.constant(f"{node.name}::shape", np.array(w.types[node.name].shape, np.int64))
    w.emit("Reshape", [node.inputs[0], shape], node.name, node.name)


def _dropout(w: _Writer, node: Node) -> None:
    ratio = w.constant(f"{node.name}::ratio", np.array(node.attrs.p, np.float32))
    w.emit("Dropout", [node.inputs[0], ratio], node.name, node.name)


def _fused(base: str) -> Callable[[_Writer, Node], None]:
    """fused_conv2d / fused_linear: the base op, then Add of the residual, then the activation, as separate ONNX
    nodes (ORT fuses them again its own way); they import back unfused."""

    def emit(w: _Writer, node: Node) -> None:
        a = node.attrs
        steps = [s for s in ("core", "residual" if a.residual else "", a.activation or "") if s]
        names = [f"{node.name}::{s}" for s in steps[:-1]] + [node.name]
        for name in names:
            w.types[name] = w.types[node.name]
        attrs = a.conv if base == "conv2d" else NoAttrs()
        EMITTERS[base](w, Node(names[0], base, node.inputs[: 2 + a.bias], attrs))
        prev = names[0]
        if a.residual:
            prev = names[1]
            w.emit("Add", [names[0], node.inputs[-1]], prev, prev)
        if a.activation:
            EMITTERS[a.activation](w, Node(names[-1], a.activation, (prev,), NoAttrs()))

    return emit


def _qdq(op_type: str) -> Callable[[_Writer, Node], None]:
    """quantize_linear / dequantize_linear: the attributes become the scale (float32) and zero-point (int8, uint8
    or int32) initializers ONNX takes as inputs; 1-D with ``axis`` when per-channel, scalars when per-tensor."""

    def emit(w: _Writer, node: Node) -> None:
        a = node.attrs
        shape = (len(a.scale),) if a.per_channel else ()
        scale = w.constant(f"{node.name}::scale", np.asarray(a.scale, np.float32).reshape(shape))
        zp = w.constant(f"{node.name}::zero_point", np.asarray(a.zero_point, np.dtype(a.dtype)).reshape(shape))
        extra = {"axis": a.axis} if a.per_channel else {}
        w.emit(op_type, [node.inputs[0], scale, zp], node.name, node.name, **extra)

    return emit


EMITTERS: dict[str, Callable[[_Writer, Node], None]] = {
    "conv2d": _conv2d,
    "max_pool2d": _pool("MaxPool"),
    "avg_pool2d": _pool("AveragePool"),
    "adaptive_avg_pool2d": _adaptive_avg_pool2d,
    "linear": _linear,
    "relu": _same("Relu"),
    "relu6": _relu6,
    "leaky_relu": _same("LeakyRelu", alpha="negative_slope"),
    "sigmoid": _same("Sigmoid"),
    "tanh": _same("Tanh"),
    "elu": _same("Elu", alpha="alpha"),
    "softmax": _same("Softmax", axis="axis"),
    "batch_norm": _same("BatchNormalization", epsilon="eps"),
    "lrn": _lrn,
    "add": _add,
    "concat": _same("Concat", axis="axis"),
    "flatten": _flatten,
    "dropout": _dropout,
    "fused_conv2d": _fused("conv2d"),
    "fused_linear": _fused("linear"),
    "pad": _pad,
    "mul": _same("Mul"),
    "hardswish": _same("HardSwish"),  # opset 14
    "hardsigmoid": _hardsigmoid,
    "silu": _silu,
    "clip": _clip,
    "reshape": _reshape,
    "quantize_linear": _qdq("QuantizeLinear"),  # opset 13: per-channel axis
    "dequantize_linear": _qdq("DequantizeLinear"),
}


def unsupported_reason(node: Node, types: Mapping[str, TensorType] | None = None) -> str | None:
    """Why ``node`` cannot be exported exactly, or None when it can (``types``: also check its dtype)."""
    if node.op not in EMITTERS:
        return f"no ONNX export for op {node.op!r}"
    if node.op == "lrn" and node.attrs.size % 2 == 0:
        return (f"LRN of even size {node.attrs.size}: ONNX puts the extra channel after the centre, "
                f"torch (and the IR) before it")
    dtype = types[node.name].dtype if types is not None and node.name in types else None
    if dtype is not None and dtype not in ELEM_TYPES:
        return f"dtype {dtype} (exportable: {', '.join(ELEM_TYPES)})"
    return None


def _value_info(name: str, t: TensorType) -> onnx.ValueInfoProto:
    from onnx import helper

    return helper.make_tensor_value_info(name, _elem_type(t.dtype), list(t.shape))


def _add_initializers(proto: onnx.GraphProto, graph: Graph, params: Mapping[str, np.ndarray]) -> None:
    """Write the parameters straight into ``proto`` (building TensorProtos first and copying them in costs
    seconds per VGG: protobuf copies every byte again)."""
    missing = [p for p in graph.params if p not in params]
    if missing:
        raise OnnxExportError(f"{graph.name}: {len(missing)} parameter(s) missing, e.g. {missing[:3]}")
    for name, t in graph.params.items():
        a = np.asarray(params[name])
        if a.shape != t.shape:
            raise OnnxExportError(f"{graph.name}: parameter {name!r} has shape {a.shape}, the graph expects "
                                  f"{t.shape}")
        tensor = proto.initializer.add()
        tensor.name = name
        tensor.data_type = _elem_type(t.dtype)
        tensor.dims.extend(t.shape)
        tensor.raw_data = np.ascontiguousarray(a, dtype=np.dtype(t.dtype).newbyteorder("<")).tobytes()


def to_onnx(graph: Graph, params: Mapping[str, np.ndarray], path: str | Path | None = None, *,
            check: bool = True) -> onnx.ModelProto:
    """The ONNX model of ``graph`` with ``params`` as initializers (in the graph's dtypes); saved if ``path``.

    Raises `OnnxExportError` listing every node that has no exact ONNX form. The result passes onnx.checker,
    which runs unless ``check=False`` (it serialises the whole model: a second or two for VGG; ONNX Runtime
    validates what it loads anyway).
    """
    import onnx
    from onnx import helper

    types = graph.types
    bad = [(n, r) for n in graph.nodes if (r := unsupported_reason(n, types)) is not None]
    bad_io = [f"{k}: {t.dtype}" for k, t in {**graph.inputs, **graph.params}.items() if t.dtype not in ELEM_TYPES]
    if bad or bad_io:
        listed = "; ".join([f"{n.name!r} ({n.op}): {r}" for n, r in bad] + bad_io)
        raise OnnxExportError(f"{graph.name}: cannot export {len(bad) + len(bad_io)} item(s) to ONNX: {listed}")
    writer = _Writer(graph)
    for node in graph.nodes:
        EMITTERS[node.op](writer, node)
    onnx_graph = helper.make_graph(
        writer.nodes, graph.name,
        inputs=[_value_info(k, t) for k, t in graph.inputs.items()],
        outputs=[_value_info(o, types[o]) for o in graph.outputs],
    )
    opset = [helper.make_opsetid("", OPSET)]
    model = helper.make_model(onnx_graph, opset_imports=opset, producer_name="convbench",
                              ir_version=helper.find_min_ir_version_for(opset))
    _add_initializers(model.graph, graph, params)
    model.graph.initializer.extend(writer.constants)
    if check:
        onnx.checker.check_model(model)
    if path is not None:
        onnx.save_model(model, str(path))
    return model
