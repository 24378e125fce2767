"""Lower a convbench graph to one Relax function, node by node, through ``relax.BlockBuilder``.

Each rule maps one IR op to Relax ops (or a TOPI compute through ``emit_te`` where Relax has no op) and is
checked against the op's NumPy reference by the tests. Inference batch_norm is folded into the conv2d or
linear that feeds it when that conv is its only reader (``fold_conv_bn_weights``), otherwise it becomes a
per-channel multiply-add with constants; either way no BN survives into the compiled module.

Weights are Relax constants by default (``bind_weights=True``), so FoldConstant sees them and the compiled
module is self-contained; with ``bind_weights=False`` they become function parameters after the graph inputs
and the executable passes them on every call.

Importing this module imports TVM (and, through tvm_ffi, torch): only the backend's compile path does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from tvm import relax, topi

from ..ir.graph import Graph, Node
from ..ir.ops.avg_pool2d import divisor as avg_divisor
from ..ir.ops.batch_norm import scale_shift
from ..ir.passes.fold_batch_norm import fold_conv_bn_weights

Expr = relax.Expr


@dataclass
class Lowered:
    """The Relax module and what the executable needs to call it."""

    mod: object  # tvm.IRModule with one function, "main"
    weight_order: tuple[str, ...] = ()  # parameters passed after the inputs (bind_weights=False)
    weight_values: dict[str, np.ndarray] = field(default_factory=dict)
    folded_bn: tuple[str, ...] = ()  # batch_norm nodes folded into the conv/linear before them


class _Lowering:
    def __init__(self, graph: Graph, params: Mapping[str, np.ndarray], dtype: str, bind_weights: bool):
        self.g, self.dtype, self.bind = graph, dtype, bind_weights
        self.params = {k: np.ascontiguousarray(v, dtype=dtype) for k, v in params.items()}
        self.bb = relax.BlockBuilder()
        self.values: dict[str, Expr] = {}
        self.weight_vars: dict[str, relax.Var] = {}
        self.fold = _foldable_bns(graph)  # conv/linear node -> the batch_norm node it absorbs

    def weight(self, key: str, array: np.ndarray) -> Expr:
        """A weight as a constant, or as a function parameter when weights are not bound."""
        array = np.ascontiguousarray(array, dtype=self.dtype)
        if self.bind:
            return relax.const(array, self.dtype)
        var = relax.Var(_hint(key), relax.TensorType(array.shape, self.dtype))
        self.weight_vars[key] = var
        self.params[key] = array
        return var

    def arg(self, name: str) -> Expr:
        if name in self.values:
            return self.values[name]
        return self.weight(name, self.params[name])

    def run(self) -> Lowered:
        inputs = [relax.Var(_hint(n), relax.TensorType(t.shape, self.dtype)) for n, t in self.g.inputs.items()]
        self.values.update(zip(self.g.inputs, inputs, strict=True))
        # params=None: the signature is only known once every (unbound) weight has been seen.
        with self.bb.function("main", params=None, pure=True, private=False):
            with self.bb.dataflow():
                for node in self.g.nodes:
                    if node.name in self.values:  # a batch_norm already folded into its conv
                        continue
                    expr = RULES[node.op](self, node)
                    # An identity (dropout) hands back an existing value: alias it, emit nothing.
                    is_value = isinstance(expr, relax.Var)
                    self.values[node.name] = expr if is_value else self.bb.emit(expr, name_hint=_hint(node.name))
                    if node.name in self.fold:
                        self.values[self.fold[node.name]] = self.values[node.name]
                outs = [self.values[o] for o in self.g.outputs]
                out = self.bb.emit_output(outs[0] if len(outs) == 1 else relax.Tuple(outs))
            self.bb.emit_func_output(out, params=[*inputs, *self.weight_vars.values()])
        order = tuple(self.weight_vars)
        return Lowered(self.bb.get(), order, {k: self.params[k] for k in order}, tuple(self.fold.values()))

    # -- helpers the rules share --------------------------------------------------------------------------
    def conv_weights(self, node: Node) -> tuple[np.ndarray, np.ndarray | None]:
        """The node's weight and bias, with the batch_norm after it folded in when there is one."""
        w = self.params[node.inputs[1]]
        b = self.params[node.inputs[2]] if len(node.inputs) > 2 else None
        bn_name = self.fold.get(node.name)
        if bn_name is None:
            return w, b
        bn = self.g.node_by_name[bn_name]
        gamma, beta, mean, var = (self.params[p] for p in bn.inputs[1:])
        return fold_conv_bn_weights(w, b, gamma, beta, mean, var, bn.attrs.eps)


def _hint(name: str) -> str:
    """Relax variable names are identifiers: torchvision's dotted names become underscores."""
    return "v_" + "".join(ch if ch.isalnum() else "_" for ch in name)


def _foldable_bns(graph: Graph) -> dict[str, str]:
    """conv2d/linear node -> the batch_norm reading it, when that BN is the conv's only reader and its
    statistics and the conv's weights are parameters (not activations)."""
    out = {}
    for node in graph.nodes:
        if node.op != "batch_norm" or not all(graph.is_param(p) for p in node.inputs[1:]):
            continue
        src = graph.node_by_name.get(node.inputs[0])
        if (src is not None and src.op in ("conv2d", "linear") and graph.users[src.name] == (node.name,)
                and all(graph.is_param(p) for p in src.inputs[1:])):
            out[src.name] = node.name
    return out


# -- the rules: one per op ------------------------------------------------------------------------------------

def _conv2d(lo: _Lowering, node: Node) -> Expr:
    a = node.attrs
    w, b = lo.conv_weights(node)
    y = relax.op.nn.conv2d(lo.arg(node.inputs[0]), lo.weight(f"{node.name}.w", w), strides=a.stride,
                           padding=a.padding, dilation=a.dilation, groups=a.groups)
    if b is None:
        return y
    return relax.op.add(lo.bb.emit(y), lo.weight(f"{node.name}.b", b.reshape(1, -1, 1, 1)))


def _linear(lo: _Lowering, node: Node) -> Expr:
    w, b = lo.conv_weights(node)
    y = relax.op.matmul(lo.arg(node.inputs[0]), lo.weight(f"{node.name}.wT", np.ascontiguousarray(w.T)))
    return y if b is None else relax.op.add(lo.bb.emit(y), lo.weight(f"{node.name}.b", b))


def _batch_norm(lo: _Lowering, node: Node) -> Expr:
    """A BN with nothing to fold into: y = x·scale + shift with the per-channel constants."""
    x = lo.arg(node.inputs[0])
    scale, shift = scale_shift(node.attrs.eps, *(lo.params[p].astype(np.float64) for p in node.inputs[1:]))
    bcast = (1, -1) + (1,) * (lo.g.types[node.inputs[0]].rank - 2)
    y = lo.bb.emit(relax.op.multiply(x, lo.weight(f"{node.name}.scale", scale.reshape(bcast))))
    return relax.op.add(y, lo.weight(f"{node.name}.shift", shift.reshape(bcast)))


def _pool_padding(lo: _Lowering, node: Node) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) padding that makes a floor-mode window give the IR's output size.

    torch's ceil_mode keeps a last partial window but drops one that would start in the right padding;
    spelling the extra right/bottom padding out avoids depending on TOPI's reading of ceil_mode.
    """
    a = node.attrs
    sizes = lo.g.types[node.inputs[0]].shape[2:]
    outs = lo.g.types[node.name].shape[2:]
    extra = [max(0, (out - 1) * s + d * (k - 1) + 1 - (size + 2 * p))
             for size, out, k, s, p, d in zip(sizes, outs, a.kernel_size, a.stride, a.padding, a.dilation, strict=True)]
    return a.padding[0], a.padding[1], a.padding[0] + extra[0], a.padding[1] + extra[1]


def _max_pool2d(lo: _Lowering, node: Node) -> Expr:
    a = node.attrs
    return relax.op.nn.max_pool2d(lo.arg(node.inputs[0]), a.kernel_size, a.stride, _pool_padding(lo, node),
                                  a.dilation, ceil_mode=False)


def _avg_pool2d(lo: _Lowering, node: Node) -> Expr:
    """Sum pool (count_include_pad with every window full), then divide by torch's exact divisor table."""
    a = node.attrs
    x = lo.arg(node.inputs[0])
    h, w = lo.g.types[node.inputs[0]].shape[2:]
    oh, ow = lo.g.types[node.name].shape[2:]
    pads = _pool_padding(lo, node)
    dh = avg_divisor(h, oh, a.kernel_size[0], a.stride[0], a.padding[0], a.count_include_pad)
    dw = avg_divisor(w, ow, a.kernel_size[1], a.stride[1], a.padding[1], a.count_include_pad)
    full = float(a.kernel_size[0] * a.kernel_size[1])
    mean = lo.bb.emit(relax.op.nn.avg_pool2d(x, a.kernel_size, a.stride, pads, ceil_mode=False,
                                             count_include_pad=True))
    correction = full / np.outer(dh, dw)  # 1 everywhere unless a window is clipped
    if np.all(correction == 1.0):
        return mean
    return relax.op.multiply(mean, lo.weight(f"{node.name}.div", correction.reshape(1, 1, oh, ow)))


def _adaptive_avg_pool2d(lo: _Lowering, node: Node) -> Expr:
    return relax.op.nn.adaptive_avg_pool2d(lo.arg(node.inputs[0]), node.attrs.output_size)


def _lrn(lo: _Lowering, node: Node) -> Expr:
    """TOPI's LRN: a / (bias + alpha/size · Σ a²)^beta over a centred channel window (tested with a large
    alpha against the reference, since alpha·Σ/size and alpha·Σ differ only there)."""
    a = node.attrs
    return lo.bb.emit_te(topi.nn.lrn, lo.arg(node.inputs[0]), a.size, 1, a.alpha, a.beta, a.k)


def _elu(lo: _Lowering, node: Node) -> Expr:
    x = lo.arg(node.inputs[0])
    zero = relax.const(0.0, lo.dtype)
    neg = lo.bb.emit(relax.op.multiply(relax.const(node.attrs.alpha, lo.dtype),
                                       relax.op.subtract(relax.op.exp(relax.op.minimum(x, zero)),
                                                         relax.const(1.0, lo.dtype))))
    return relax.op.where(relax.op.greater(x, zero), x, neg)


def _leaky_relu(lo: _Lowering, node: Node) -> Expr:
    return relax.op.nn.leakyrelu(lo.arg(node.inputs[0]), node.attrs.negative_slope)


def _relu6(lo: _Lowering, node: Node) -> Expr:
    return relax.op.clip(lo.arg(node.inputs[0]), 0, 6)


def _add(lo: _Lowering, node: Node) -> Expr:
    acc = lo.arg(node.inputs[0])
    for name in node.inputs[1:-1]:
        acc = lo.bb.emit(relax.op.add(acc, lo.arg(name)))
    return relax.op.add(acc, lo.arg(node.inputs[-1]))


def _flatten(lo: _Lowering, node: Node) -> Expr:
    return relax.op.reshape(lo.arg(node.inputs[0]), lo.g.types[node.name].shape)


def _unary(op: Callable[[Expr], Expr]) -> Callable[[_Lowering, Node], Expr]:
    return lambda lo, node: op(lo.arg(node.inputs[0]))


RULES: dict[str, Callable[[_Lowering, Node], Expr]] = {
    "conv2d": _conv2d,
    "linear": _linear,
    "batch_norm": _batch_norm,
    "max_pool2d": _max_pool2d,
    "avg_pool2d": _avg_pool2d,
    "adaptive_avg_pool2d": _adaptive_avg_pool2d,
    "lrn": _lrn,
    "relu": _unary(relax.op.nn.relu),
    "relu6": _relu6,
    "leaky_relu": _leaky_relu,
    "elu": _elu,
    "sigmoid": _unary(relax.op.sigmoid),
    "tanh": _unary(relax.op.tanh),
    "softmax": lambda lo, node: relax.op.nn.softmax(lo.arg(node.inputs[0]), node.attrs.axis),
    "add": _add,
    "concat": lambda lo, node: relax.op.concat([lo.arg(i) for i in node.inputs], node.attrs.axis),
    "flatten": _flatten,
    "dropout": _unary(lambda x: x),
}


def lower(graph: Graph, params: Mapping[str, np.ndarray], dtype: str = "float32",
          bind_weights: bool = True) -> Lowered:
    """The graph as a Relax IRModule whose ``main`` takes the graph inputs (then the weights, if unbound)."""
    return _Lowering(graph, params, dtype, bind_weights).run()
