"""The int8 rules: a QDQ graph (ir/passes/quantize.py) run as oneDNN int8 primitives on the codes.

- An int8 conv (`ir.passes.int8_patterns.int8_convs`: a per-tensor dequantized activation read only by the conv,
  symmetric int8 weights) is one oneDNN s8/u8 × s8 convolution: the input's dequantize_linear is absorbed (the
  conv reads the codes, with the input's scale and zero point as run-time arguments), the weights are the int8
  codes with their per-channel scales, the bias the dequantized int32 bias in float32, residual and activation
  post-ops as for a float conv. oneDNN computes x_scale · w_scale[o] · Σ (q_x − z_x)·q_w + bias exactly as the
  QDQ graph does (the sums are integers).
- Where a conv's only readers are per-tensor quantize_linear nodes of one scale and zero point, the conv writes
  the codes itself: its dst is s8/u8 with that scale and zero point, and the quantize nodes are the same buffer.
  oneDNN rounds v / s + z half to even, where quantize_linear rounds v / s and then adds z: the two differ only when
  v / s is exactly half-way and z is odd, which float32 conv outputs practically never are (the standalone
  quantize_linear below is exact at ties too).
- Every other quantize_linear / dequantize_linear is a reorder with scales and zero points; what lies between
  them (pools, adds, the classifier) runs in float32 on the dequantized values, the QDQ graph's own arithmetic.
- A dequantize_linear of a parameter (a weight or bias) is a compile-time constant (`Lowering.array`).
"""

from __future__ import annotations

import numpy as np

from ...ir.graph import Node
from ...ir.passes.int8_patterns import Int8Conv
from . import capi
from .capi import dims
from .code_patterns import Int8Add, alike
from .lowering import Lowering, Value

AVX512_CORE = 0x27  # dnnl_cpu_isa_avx512_core: the ISAs below it are SSE4.1 … AVX2-VNNI-2


def _scalar(lw: Lowering, values, dt: int = capi.F32) -> Value:
    return lw.const(np.asarray(values, np.float64).reshape(-1), dt, capi.A)


def _to_codes(attr: capi.Attr, q: Node, zero: int) -> None:
    """x / s + z, ``q``'s scale and the codes' zero point, as the last post-op: the conversion to the codes' data
    type then rounds half to even and saturates, as quantize_linear does."""
    attr.eltwise(capi.ELTWISE_LINEAR, 1.0 / q.attrs.scale[0], float(zero))


def codes(lw: Lowering, value: str, attrs) -> tuple[int, tuple[int, ...]]:
    """(oneDNN data type, zero points) of the codes ``value`` holds: per-tensor int8 activations are held as uint8
    with the zero point + 128 (`ir.passes.int8_patterns.as_uint8`: the same real values), which oneDNN's brgemm
    convolutions read on AMX where s8 codes with a zero point fall back to its older jit kernels; ResNet's ReLU
    outputs (zero point −128) then need no zero point at all."""
    if value in lw.shifted:
        return capi.U8, tuple(z + 128 for z in attrs.zero_point)
    return capi.CODES[attrs.dtype], tuple(attrs.zero_point)


def codes_readers(lw: Lowering, name: str) -> tuple[Node, ...]:
    """The per-tensor quantize_linear nodes, all of one scale and zero point, that alone read ``name`` (not a graph
    output): the codes a conv can write itself. Empty where anything else reads it."""
    readers = tuple(lw.graph.node_by_name[n] for n in lw.graph.users.get(name, ()))
    if name in lw.graph.outputs or not alike(lw.graph, list(readers), readers[0] if readers else None):
        return ()
    return readers


def int8_conv(lw: Lowering, node: Node, plan: Int8Conv, x: Value, padding: list[int], right_padding: list[int]
              ) -> Value:
    """``x``: the codes it reads (the plan's, or a folded pad's input: `code_patterns.code_pads`)."""
    a, fused = node.attrs, node.op == "fused_conv2d"
    bias = a.bias if fused else len(node.inputs) > 2
    o, n, (oh, ow), g = lw.type(node.inputs[1])[0], x.shape[0], lw.type(node.name)[2:], a.groups
    readers = codes_readers(lw, node.name)
    q = readers[0] if readers else None
    q_dt, q_zero = codes(lw, q.name, q.attrs) if q is not None else (capi.F32, (0,))
    b = lw.bias(node.inputs[2], o) if bias else None
    residual = lw.read(node.inputs[-1]) if fused and a.residual else None
    activation = a.activation if fused else None
    if residual is not None and g > 1 and o % 8 and lw.lib.dnnl_get_effective_cpu_isa() < AVX512_CORE:
        # oneDNN 3.2's AVX2 int8 depthwise kernel (jit_uni_int8) adds a binary post-op wrongly when the channels
        # are no multiple of its 8 lanes (a Zen 3, 5 channels: 0.30 off; 8 and 16 exact): the conv writes
        # float32, then one binary add takes the residual, the activation and the output's codes
        mid = _int8_conv_primitive(lw, node, plan, (padding, right_padding), x, b,
                                   lw.new((n, o, oh, ow), capi.F32), None, None, None)
        out = lw.new((n, o, oh, ow), q_dt)
        attr, _ = lw.attr(activation)
        if q is not None:
            _to_codes(attr, q, q_zero[0])
        prim = lw.primitive(lw.lib.dnnl_binary_primitive_desc_create, lw.engine.engine, capi.BINARY_ADD, mid.md,
                            residual.md, out.md, attr.done(), what="an int8 depthwise conv's residual add")
        lw.step(prim, [(capi.SRC, mid.memory), (capi.SRC_1, residual.memory), (capi.DST, out.memory)])
    else:
        out = _int8_conv_primitive(lw, node, plan, (padding, right_padding), x, b, lw.new((n, o, oh, ow), q_dt),
                                   residual, activation, q)
    lw.writes_codes(readers, node.name)
    return out


def _int8_conv_primitive(lw: Lowering, node: Node, plan: Int8Conv, padding: tuple[list[int], list[int]], x: Value,
                         b: Value | None, out: Value, residual: Value | None, activation: str | None,
                         q: Node | None) -> Value:
    """The s8/u8 × s8 convolution writing ``out``: float32, or ``q``'s codes (its scale and zero point);
    ``padding``: (left, right) per spatial dim."""
    a = node.attrs
    o, cg, kh, kw = lw.type(node.inputs[1])
    g = a.groups
    wshape = (g, o // g, cg, kh, kw) if g > 1 else (o, cg, kh, kw)
    q_zero = codes(lw, q.name, q.attrs)[1] if q is not None else (0,)
    attr, extra = lw.attr(activation, residual)
    w_scale = np.broadcast_to(plan.weight_scale, (o,))
    scales = [(capi.SRC, _scalar(lw, [plan.x_scale]), 0), (capi.WEIGHTS, _scalar(lw, w_scale), 3 if g > 1 else 1)]
    x_zero = plan.x_zero + (128 if plan.codes in lw.shifted else 0)
    zeros = [(capi.SRC, _scalar(lw, [x_zero], capi.S32))] if x_zero else []
    if q is not None and q_zero[0]:
        # the output's zero point as a last post-op, x / s + z, not as oneDNN's dst zero point: with that, oneDNN
        # 3.2 runs a ResNet-50 conv3 on its older jit AMX kernel instead of brgconv (both round v / s + z)
        _to_codes(attr, q, q_zero[0])
    elif q is not None:
        scales.append((capi.DST, _scalar(lw, q.attrs.scale), 0))
    for arg, v, mask in scales:
        attr.scales(arg, mask)
        extra.append((capi.ATTR_SCALES | arg, v.memory))
    for arg, v in zeros:
        attr.zero_points(arg, 0)
        extra.append((capi.ATTR_ZERO_POINTS | arg, v.memory))
    prim = lw.primitive(lw.lib.dnnl_convolution_forward_primitive_desc_create, lw.engine.engine,
                        capi.FORWARD_INFERENCE, capi.CONVOLUTION_DIRECT, x.md,
                        lw.engine.md(wshape, capi.S8, capi.ANY), b.md if b is not None else None, out.md,
                        dims(a.stride), dims([d - 1 for d in a.dilation]), dims(padding[0]), dims(padding[1]),
                        attr.done(), what="an int8 convolution")
    plain = lw.const(plan.weight_codes.reshape(wshape), capi.S8, capi.PLAIN[len(wshape)])
    wv = lw.converted(plain, prim.md(lw.lib, capi.Q_WEIGHTS_MD), capi.ANY, now=True)
    args = [(capi.SRC, x.memory), (capi.WEIGHTS, wv.memory), (capi.DST, out.memory), *extra]
    lw.step(prim, args + ([(capi.BIAS, b.memory)] if b is not None else []))
    return out


def int8_add(lw: Lowering, node: Node, add: Int8Add) -> Value:
    """One binary add of the two codes, s_a·q_a + s_b·q_b (oneDNN's source scales), then post-ops: the zero points'
    constant − (s_a·z_a + s_b·z_b), the relu, and x / s_out + z_out, which the conversion to the output codes
    rounds half to even and saturates, as quantize_linear does."""
    (da, db), q = add.dequantize, add.quantize[0]
    a, b = lw.read(da.inputs[0]), lw.read(db.inputs[0])
    za, zb = codes(lw, da.inputs[0], da.attrs)[1][0], codes(lw, db.inputs[0], db.attrs)[1][0]
    sa, sb = da.attrs.scale[0], db.attrs.scale[0]
    q_dt, q_zero = codes(lw, q.name, q.attrs)
    out = lw.value(a.shape, lw.engine.md(a.shape, q_dt, a.tag), a.tag)
    attr = capi.Attr(lw.engine)
    attr.scales(capi.SRC, 0)
    attr.scales(capi.SRC_1, 0)
    if za or zb:
        attr.eltwise(capi.ELTWISE_LINEAR, 1.0, -(sa * za + sb * zb))
    if add.relu is not None:
        attr.eltwise(capi.ELTWISE_RELU, 0.0, 0.0)
    _to_codes(attr, q, q_zero[0])
    prim = lw.primitive(lw.lib.dnnl_binary_primitive_desc_create, lw.engine.engine, capi.BINARY_ADD, a.md, b.md,
                        out.md, attr.done(), what="an int8 add")
    lw.step(prim, [(capi.SRC, a.memory), (capi.SRC_1, b.memory), (capi.DST, out.memory),
                   (capi.ATTR_SCALES | capi.SRC, _scalar(lw, [sa]).memory),
                   (capi.ATTR_SCALES | capi.SRC_1, _scalar(lw, [sb]).memory)])
    lw.writes_codes(add.quantize, node.name)
    return out


def _requantize(lw: Lowering, node: Node, x: Value, out: Value, arg: int, scale: tuple[float, ...],
                zero: tuple[int, ...]) -> Value:
    """A reorder between codes and float32 with ``arg``'s (SRC: dequantize; DST: quantize) per-tensor scale and
    zero point."""
    attr, extra = capi.Attr(lw.engine), []
    if scale != (1.0,):
        attr.scales(arg, 0)
        extra.append((capi.ATTR_SCALES | arg, _scalar(lw, scale).memory))
    if zero[0]:
        attr.zero_points(arg, 0)
        extra.append((capi.ATTR_ZERO_POINTS | arg, _scalar(lw, zero, capi.S32).memory))
    prim = lw.primitive(lw.lib.dnnl_reorder_primitive_desc_create, x.md, lw.engine.engine, out.md,
                        lw.engine.engine, attr.done(), what=f"a {node.op}")
    lw.step(prim, [(capi.FROM, x.memory), (capi.TO, out.memory), *extra])
    return out


def _per_channel(lw: Lowering, node: Node, x: Value, out: Value, alg: int, first: np.ndarray,
                 then: tuple[int, np.ndarray] | None = None) -> Value:
    """A binary primitive ``x alg first`` [then a binary post-op], the per-channel operand broadcast along the
    node's axis: per-channel scales and zero points, which oneDNN 3.2's reorder takes per tensor only."""
    a, ndim = node.attrs, len(x.shape)
    shape = [1] * ndim
    shape[a.axis % ndim] = len(a.scale)
    operand = lw.const(np.asarray(first, np.float64).reshape(shape))
    attr, extra = capi.Attr(lw.engine), []
    if then is not None:
        second = lw.const(np.asarray(then[1], np.float64).reshape(shape))
        index = attr.binary(then[0], second.md)
        extra.append((capi.post_op_arg(index, capi.SRC_1), second.memory))
    prim = lw.primitive(lw.lib.dnnl_binary_primitive_desc_create, lw.engine.engine, alg, x.md, operand.md,
                        out.md, attr.done(), what=f"a per-channel {node.op}")
    lw.step(prim, [(capi.SRC, x.memory), (capi.SRC_1, operand.memory), (capi.DST, out.memory), *extra])
    return out


def quantize_linear(lw: Lowering, node: Node) -> Value:
    """round_half_even(x / s) + z, saturated. oneDNN adds the zero point before it rounds, which differs at ties
    where z is odd (0.5 + 3 → 4, not round(0.5) + 3 = 3): there x / s is rounded into int32 first and z added to the
    integers by a second primitive."""
    src = node.inputs[0]
    if node.name in lw.coded:  # a conv or an add wrote these codes already
        x = lw.read(lw.coded[node.name])
        return lw.value(x.shape, x.md, x.tag, x.buffer)
    a, x = node.attrs, lw.read(src)
    dt, zero = codes(lw, node.name, a)
    out = lw.value(x.shape, lw.engine.md(x.shape, dt, x.tag), x.tag)
    odd = any(z % 2 for z in zero)
    rounded = lw.value(x.shape, lw.engine.md(x.shape, capi.S32, x.tag), x.tag) if odd else out
    if a.per_channel:
        then = (capi.BINARY_ADD, zero) if any(zero) and not odd else None
        _per_channel(lw, node, x, rounded, capi.BINARY_DIV, a.scale, then)
        return _per_channel(lw, node, rounded, out, capi.BINARY_ADD, zero) if odd else out
    _requantize(lw, node, x, rounded, capi.DST, a.scale, (0,) if odd else zero)
    return _requantize(lw, node, rounded, out, capi.DST, (1.0,), zero) if odd else out


def dequantize_linear(lw: Lowering, node: Node) -> Value:
    """(q − z) · s: exact in float32 for the codes' range."""
    a, x = node.attrs, lw.read(node.inputs[0])
    out = lw.value(x.shape, lw.engine.md(x.shape, capi.F32, x.tag), x.tag)
    zero = codes(lw, node.inputs[0], a)[1]
    if a.per_channel:
        if any(zero):
            return _per_channel(lw, node, x, out, capi.BINARY_SUB, zero, (capi.BINARY_MUL, a.scale))
        return _per_channel(lw, node, x, out, capi.BINARY_MUL, a.scale)
    return _requantize(lw, node, x, out, capi.SRC, a.scale, zero)
