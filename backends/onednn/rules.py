"""One rule per op: how each IR node becomes oneDNN primitives (`LOWERINGS`, the one list of what the oneDNN backend
runs). A rule reads its inputs' `Value`s, creates its primitive(s) once and appends the steps a call executes.

Conventions the rules share: oneDNN's dilation is the IR's minus one (0 = dense); a window's right padding is what
makes oneDNN's output size the IR's (ceil_mode adds rows on the right); a fused op's residual is a sum post-op
written over the residual's own buffer where that may be overwritten (`Lowering.overwritable`), else a binary add
post-op, and its activation an eltwise post-op, applied in that order after the bias.
"""

from __future__ import annotations

import ctypes as C
from collections.abc import Sequence

import numpy as np

from ...ir import ops
from ...ir.graph import Node
from ...ir.ops.avg_pool2d import divisor
from . import capi, quant_rules
from .capi import dims
from .lowering import ELTWISE, Lowering, Rule, Value


def _right_padding(size: int, out: int, k: int, s: int, p: int, d: int) -> int:
    """The right padding for which oneDNN's floor((size + p + pr − span)/s) + 1 is ``out``: ``p`` unless ceil_mode
    asked for a last window that overhangs the padded input."""
    return max(p, (out - 1) * s + (k - 1) * d + 1 - size - p)


def _weight(lw: Lowering, name: str, shape: Sequence[int], md: capi.Handle) -> Value:
    """A weight in the primitive's layout ``md``: a parameter reordered once now; a computed value every call."""
    if (known := lw.array(name)) is not None:
        const = lw.const(known.reshape(shape))
        return lw.converted(const, md, capi.ANY, now=True)
    return lw.converted(lw.view(lw.read(name), shape), md, capi.ANY)


def conv(lw: Lowering, node: Node) -> Value:
    a, fused = node.attrs, node.op == "fused_conv2d"
    (h, w), (oh, ow) = lw.type(node.inputs[0])[2:], lw.type(node.name)[2:]
    o, cg, kh, kw = lw.type(node.inputs[1])
    pl = list(a.padding)
    pr = [_right_padding(*sz, a.stride[i], a.padding[i], a.dilation[i])
          for i, sz in enumerate(((h, oh, kh), (w, ow, kw)))]
    source = node.inputs[0]
    pad = lw.code_pads.get(node.name) or (source if source in lw.folded_pads else None)
    if pad is not None:  # the pad's rows and columns are this conv's padding
        top, left, bottom, right = lw.graph.node_by_name[pad].attrs.pads
        pl, pr = [pl[0] + top, pl[1] + left], [pr[0] + bottom, pr[1] + right]
        source = lw.graph.node_by_name[pad].inputs[0]
    if node.name in lw.int8:  # reading the codes: the plan's, or those the folded pad would have padded
        codes = lw.on_codes[pad].dequantize.inputs[0] if pad is not None else lw.int8[node.name].codes
        return quant_rules.int8_conv(lw, node, lw.int8[node.name], lw.read(codes), pl, pr)
    bias = a.bias if fused else len(node.inputs) > 2
    residual = lw.read(node.inputs[-1]) if fused and a.residual else None
    x = lw.read(source)
    n = x.shape[0]
    g = a.groups
    wshape = (g, o // g, cg, kh, kw) if g > 1 else (o, cg, kh, kw)
    # NHWC in and out, not oneDNN's choice ("any"): for float32 that picks blocked layouts and slower kernels
    # (ResNet-50 b1 26.7 → 57.7 ms on an AMX Xeon); bf16 loses too (5.6 → 6.1 ms)
    out_md = lw.engine.md((n, o, oh, ow), lw.dt, capi.NHWC)
    over = lw.overwritable(node.inputs[-1], out_md) if residual is not None else None
    out = lw.value((n, o, oh, ow), out_md, capi.NHWC, over.buffer) if over is not None else lw.new((n, o, oh, ow))
    # a 16-bit depthwise conv's bias in its own dtype: with a float32 bias oneDNN 3.2 leaves its brgemm depthwise
    # kernel for the older jit_dw one (a 240-channel 5×5 at 28×28, batch 8: 0.61 → 0.97 ms)
    depthwise = g == o and cg == 1 and lw.dt in (capi.BF16, capi.F16)
    b = lw.bias(node.inputs[2], o, lw.dt if depthwise else capi.F32) if bias else None
    attr, extra = lw.attr(a.activation if fused else None, residual, in_place=over is not None)
    prim = lw.primitive(lw.lib.dnnl_convolution_forward_primitive_desc_create, lw.engine.engine,
                        capi.FORWARD_INFERENCE, capi.CONVOLUTION_DIRECT, x.md,
                        lw.engine.md(wshape, lw.dt, capi.ANY), b.md if b is not None else None, out.md,
                        dims(a.stride), dims([d - 1 for d in a.dilation]), dims(pl), dims(pr), attr.done(),
                        what="a convolution")
    wv = _weight(lw, node.inputs[1], wshape, prim.md(lw.lib, capi.Q_WEIGHTS_MD))
    args = [(capi.SRC, x.memory), (capi.WEIGHTS, wv.memory), (capi.DST, out.memory), *extra]
    lw.step(prim, args + ([(capi.BIAS, b.memory)] if b is not None else []))
    return out


def linear(lw: Lowering, node: Node) -> Value:
    a, fused = node.attrs, node.op == "fused_linear"
    bias = a.bias if fused else len(node.inputs) > 2
    x = lw.read(node.inputs[0])
    o, k = lw.type(node.inputs[1])
    shape = lw.type(node.name)
    m = int(np.prod(shape[:-1]))
    src = x if len(x.shape) == 2 and x.plain else lw.view(x, (m, k))
    residual = lw.read(node.inputs[-1]) if fused and a.residual else None
    if residual is not None and not (len(residual.shape) == 2 and residual.plain):
        residual = lw.view(residual, (m, o))
    out = lw.new((m, o))
    b = lw.bias(node.inputs[2], o) if bias else None
    attr, extra = lw.attr(a.activation if fused else None, residual)
    prim = lw.primitive(lw.lib.dnnl_inner_product_forward_primitive_desc_create, lw.engine.engine,
                        capi.FORWARD_INFERENCE, src.md, lw.engine.md((o, k), lw.dt, capi.ANY),
                        b.md if b is not None else None, out.md, attr.done(), what="an inner product")
    wv = _weight(lw, node.inputs[1], (o, k), prim.md(lw.lib, capi.Q_WEIGHTS_MD))
    args = [(capi.SRC, src.memory), (capi.WEIGHTS, wv.memory), (capi.DST, out.memory), *extra]
    lw.step(prim, args + ([(capi.BIAS, b.memory)] if b is not None else []))
    return out if len(shape) == 2 else lw.view(out, shape)


def pool(lw: Lowering, node: Node) -> Value:
    a = node.attrs
    on_codes = lw.on_codes.get(node.name)  # a QDQ graph's max pool of codes: pooled as they are, exactly
    x = lw.read(on_codes.dequantize.inputs[0] if on_codes else node.inputs[0])
    n, c, h, w = x.shape
    oh, ow = lw.type(node.name)[2:]
    k, s, p = a.kernel_size, a.stride, a.padding
    d = a.dilation if node.op == "max_pool2d" else (1, 1)
    pr = [_right_padding(size, out, k[i], s[i], p[i], d[i]) for i, (size, out) in enumerate(((h, oh), (w, ow)))]
    attr, extra = capi.Attr(lw.engine), []
    if node.op == "max_pool2d":
        alg = capi.POOLING_MAX  # oneDNN's max skips padding, as torch's -inf padding does
    elif not a.count_include_pad:
        alg = capi.POOLING_AVG_EXCLUDE
    else:  # torch divides by the window within the declared padding; a ceil_mode overhang is not counted
        torch_div = [divisor(size, out, k[i], s[i], p[i], True) for i, (size, out) in enumerate(((h, oh), (w, ow)))]
        if all((dv == k[i]).all() for i, dv in enumerate(torch_div)):
            alg = capi.POOLING_AVG_INCLUDE
        else:  # the average over the input cells, rescaled by (input cells)/(torch's divisor) per output cell
            alg = capi.POOLING_AVG_EXCLUDE
            inside = [divisor(size, out, k[i], s[i], p[i], False) for i, (size, out) in enumerate(((h, oh), (w, ow)))]
            ratio = np.outer(inside[0], inside[1]) / np.outer(*torch_div)
            scale = lw.const(ratio.reshape(1, 1, oh, ow))
            index = attr.binary(capi.BINARY_MUL, scale.md)
            extra.append((capi.post_op_arg(index, capi.SRC_1), scale.memory))
    out = lw.new((n, c, oh, ow), lw.engine.dtype(x.md) if on_codes else None)
    prim = lw.primitive(lw.lib.dnnl_pooling_forward_primitive_desc_create, lw.engine.engine,
                        capi.FORWARD_INFERENCE, alg, x.md, out.md, dims(s), dims(k), dims([v - 1 for v in d]),
                        dims(p), dims(pr), attr.done(), what="a pooling")
    lw.step(prim, [(capi.SRC, x.memory), (capi.DST, out.memory), *extra])
    lw.writes_codes(on_codes.quantize if on_codes else (), node.name)
    return out


def _adaptive_bounds(size: int, out: int) -> list[tuple[int, int]]:
    return [((i * size) // out, -((-(i + 1) * size) // out)) for i in range(out)]


def adaptive_avg_pool2d(lw: Lowering, node: Node) -> Value:
    """A pooling where the windows tile the input; otherwise (torch's overlapping windows) a matmul with the
    averaging matrix P, (N, C, H·W) × (H·W, OH·OW), P broadcast over the batch."""
    x = lw.read(node.inputs[0])
    n, c, h, w = x.shape
    oh, ow = lw.type(node.name)[2:]
    if h % oh == 0 and w % ow == 0:
        out = lw.new((n, c, oh, ow))
        kern = (h // oh, w // ow)
        prim = lw.primitive(lw.lib.dnnl_pooling_forward_primitive_desc_create, lw.engine.engine,
                            capi.FORWARD_INFERENCE, capi.POOLING_AVG_EXCLUDE, x.md, out.md, dims(kern), dims(kern),
                            dims((0, 0)), dims((0, 0)), dims((0, 0)), None, what="an adaptive average pooling")
        lw.step(prim, [(capi.SRC, x.memory), (capi.DST, out.memory)])
        return out
    p = np.zeros((h, w, oh, ow))
    for i, (r0, r1) in enumerate(_adaptive_bounds(h, oh)):
        for j, (c0, c1) in enumerate(_adaptive_bounds(w, ow)):
            p[r0:r1, c0:c1, i, j] = 1.0 / ((r1 - r0) * (c1 - c0))
    weights = lw.const(p.reshape(1, h * w, oh * ow), lw.dt, capi.ABC)
    out = lw.new((n, c, oh, ow))
    src_md, dst_md = lw.engine.reshaped(x.md, (n, c, h * w)), lw.engine.reshaped(out.md, (n, c, oh * ow))
    src, dst = lw.engine.memory(src_md, x.buffer), lw.engine.memory(dst_md, out.buffer)
    prim = lw.primitive(lw.lib.dnnl_matmul_primitive_desc_create, lw.engine.engine, src_md, weights.md, None,
                        dst_md, None, what="an adaptive average pooling (as a matmul)")
    lw.step(prim, [(capi.SRC, src), (capi.WEIGHTS, weights.memory), (capi.DST, dst)])
    return out


def _alike_out(lw: Lowering, node: Node, create, alg: int, *rest) -> Value:
    """One source, one destination of its shape and layout: ``create(pd, engine, inference, alg, src, dst, *rest,
    attr)``, the shape of oneDNN's eltwise, softmax and LRN descriptors."""
    x = lw.read(node.inputs[0])
    out = lw.value(x.shape, x.md, x.tag)
    prim = lw.primitive(create, lw.engine.engine, capi.FORWARD_INFERENCE, alg, x.md, out.md, *rest, None,
                        what=f"a {node.op}")
    lw.step(prim, [(capi.SRC, x.memory), (capi.DST, out.memory)])
    return out


def eltwise(lw: Lowering, node: Node) -> Value:
    return _alike_out(lw, node, lw.lib.dnnl_eltwise_forward_primitive_desc_create, *ELTWISE[node.op](node.attrs))


def _many(lw: Lowering, node: Node, create, *, prim_args) -> Value:
    """add (sum) and concat: N sources in one primitive, each in the first one's layout."""
    xs = [lw.read(i) for i in node.inputs]
    tag = xs[0].tag
    xs = [xs[0]] + [lw.converted(v, lw.engine.md(v.shape, lw.dt, tag), tag) for v in xs[1:]]
    out = lw.new(lw.type(node.name))
    mds = (capi.Handle * len(xs))(*[v.md for v in xs])
    prim = lw.primitive(create, lw.engine.engine, out.md, len(xs), *prim_args(len(xs)), mds, None,
                        what=f"a {node.op} of {len(xs)}")
    lw.step(prim, [(capi.DST, out.memory), *[(capi.MULTIPLE_SRC + i, v.memory) for i, v in enumerate(xs)]])
    return out


def add(lw: Lowering, node: Node) -> Value:
    if node.name in lw.int8_adds:
        return quant_rules.int8_add(lw, node, lw.int8_adds[node.name])
    return _many(lw, node, lw.lib.dnnl_sum_primitive_desc_create,
                 prim_args=lambda n: ((C.c_float * n)(*([1.0] * n)),))


def concat(lw: Lowering, node: Node) -> Value:
    axis = node.attrs.axis % len(lw.type(node.name))
    return _many(lw, node, lw.lib.dnnl_concat_primitive_desc_create, prim_args=lambda n: (axis,))


def mul(lw: Lowering, node: Node) -> Value:
    x, y = lw.read(node.inputs[0]), lw.read(node.inputs[1])
    out = lw.value(x.shape, x.md, x.tag)
    prim = lw.primitive(lw.lib.dnnl_binary_primitive_desc_create, lw.engine.engine, capi.BINARY_MUL, x.md, y.md,
                        out.md, None, what="a mul")
    lw.step(prim, [(capi.SRC, x.memory), (capi.SRC_1, y.memory), (capi.DST, out.memory)])
    return out


def batch_norm(lw: Lowering, node: Node) -> Value:
    x = lw.read(node.inputs[0])
    c = x.shape[1]
    stats = [lw.bias(name, c) for name in node.inputs[1:]]  # weight, bias, mean, var: float32 (C,)
    out = lw.value(x.shape, x.md, x.tag)
    prim = lw.primitive(lw.lib.dnnl_batch_normalization_forward_primitive_desc_create, lw.engine.engine,
                        capi.FORWARD_INFERENCE, x.md, out.md, node.attrs.eps,
                        capi.USE_GLOBAL_STATS | capi.USE_SCALE | capi.USE_SHIFT, None, what="a batch_norm")
    roles = (capi.SCALE, capi.SHIFT, capi.MEAN, capi.VARIANCE)
    lw.step(prim, [(capi.SRC, x.memory), (capi.DST, out.memory),
                   *[(role, v.memory) for role, v in zip(roles, stats, strict=True)]])
    return out


def softmax(lw: Lowering, node: Node) -> Value:
    axis = node.attrs.axis % len(lw.type(node.name))
    return _alike_out(lw, node, lw.lib.dnnl_softmax_forward_primitive_desc_create, capi.SOFTMAX_ACCURATE, axis)


def lrn(lw: Lowering, node: Node) -> Value:
    a = node.attrs
    return _alike_out(lw, node, lw.lib.dnnl_lrn_forward_primitive_desc_create, capi.LRN_ACROSS_CHANNELS,
                      a.size, a.alpha, a.beta, a.k)


def view(lw: Lowering, node: Node) -> Value:
    return lw.view(lw.read(node.inputs[0]), lw.type(node.name))


def identity(lw: Lowering, node: Node) -> Value:
    x = lw.read(node.inputs[0])
    return lw.value(x.shape, x.md, x.tag, x.buffer)


def pad(lw: Lowering, node: Node) -> Value:
    """A buffer of its own, filled with ``value`` once; each call reorders the input into its interior. In a QDQ
    graph where the pad is run on the codes (`code_patterns.int8_on_codes`), the fill is the value's code."""
    a, on_codes = node.attrs, lw.on_codes.get(node.name)
    x = lw.read(on_codes.dequantize.inputs[0] if on_codes else node.inputs[0])
    top, left = a.pads[0], a.pads[1]
    shape = lw.type(node.name)
    fill, dt = a.value, lw.dt
    if on_codes:  # the value's code by quantize_linear's own rule, + 128 where the codes are held as uint8
        q = on_codes.quantize[0]
        dt = quant_rules.codes(lw, q.name, q.attrs)[0]
        code = ops.get("quantize_linear").reference(q.attrs, np.array([a.value], np.float32))[0]
        fill = float(code) + (128 if q.name in lw.shifted else 0)
    out = lw.const(np.full(shape, fill, np.float32), dt, lw.layout(shape))
    inner = lw.engine.submemory(out.md, x.shape, (0, 0, top, left))
    prim = lw.primitive(lw.lib.dnnl_reorder_primitive_desc_create, x.md, lw.engine.engine, inner,
                        lw.engine.engine, None, what="a pad")
    lw.step(prim, [(capi.FROM, x.memory), (capi.TO, lw.engine.memory(inner, out.buffer))])
    lw.writes_codes(on_codes.quantize if on_codes else (), node.name)
    return out


LOWERINGS: dict[str, Rule] = {
    "conv2d": conv, "fused_conv2d": conv, "linear": linear, "fused_linear": linear,
    "max_pool2d": pool, "avg_pool2d": pool, "adaptive_avg_pool2d": adaptive_avg_pool2d,
    **{op: eltwise for op in ELTWISE},
    "add": add, "mul": mul, "concat": concat, "batch_norm": batch_norm, "softmax": softmax, "lrn": lrn,
    "flatten": view, "reshape": view, "dropout": identity, "pad": pad,
    "quantize_linear": quant_rules.quantize_linear, "dequantize_linear": quant_rules.dequantize_linear,
}
Lowering.rules = LOWERINGS
