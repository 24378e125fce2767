"""Lower a convbench graph to one Relax function, node by node, through ``relax.BlockBuilder``.

Each rule maps one IR op to Relax ops (LRN, which Relax lacks, is composed from them) and is checked against
the op's NumPy reference by the conformance suite. Inference batch_norm is folded into the conv2d or
linear that feeds it where the fold_batch_norm pass would fold it (``foldable``, ``fold_conv_bn_weights``),
otherwise it becomes a per-channel multiply-add with constants; either way no BN op reaches TVM.

Weights are Relax constants by default (``bind_weights=True``), so FoldConstant sees them and the compiled
module is self-contained; with ``bind_weights=False`` they become function parameters after the graph inputs
and the executable passes them on every call.

Nodes named in ``fallback`` (the explicit ``fallback="numpy"``) run their NumPy reference from inside the
compiled module: a ``call_pure_packed`` to one Python packed function, keyed by node, that the VM calls back.

``RULES`` is the one list of what the backend runs: ``TvmBackend.supports`` answers from its keys. Importing
this module does not import TVM (which takes seconds and, through tvm_ffi, imports torch): ``tvm``, ``relax``
and ``tvm_ffi`` here are proxies that import the module on first attribute access, which only lowering does.
"""

from __future__ import annotations

import functools
import importlib
import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from ...ir import ops as ir_ops
from ...ir.graph import Graph, Node
from ...ir.ops import NoAttrs, _fused
from ...ir.ops.avg_pool2d import divisor as avg_divisor
from ...ir.ops.batch_norm import scale_shift
from ...ir.passes.fold_batch_norm import fold_conv_bn_weights, foldable
from .quant import QUANT_RULES

if TYPE_CHECKING:
    from tvm.relax import Expr
else:
    Expr = Any


class _LazyModule:
    """A module imported on first attribute access: ``supports()`` must answer without importing TVM."""

    def __init__(self, name: str):
        self._name = name

    @functools.cached_property
    def _module(self) -> ModuleType:
        return importlib.import_module(self._name)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):  # copy/pickle/inspect probe dunders: do not import TVM for them
            raise AttributeError(attr)
        return getattr(self._module, attr)


tvm: Any = _LazyModule("tvm")
relax: Any = _LazyModule("tvm.relax")
tvm_ffi: Any = _LazyModule("tvm_ffi")


@dataclass
class Lowered:
    """The Relax module and what the executable needs to call it."""

    mod: object  # tvm.IRModule with one function, "main"
    weight_order: tuple[str, ...] = ()  # parameters passed after the inputs (bind_weights=False)
    weight_values: dict[str, np.ndarray] = field(default_factory=dict)
    folded_bn: tuple[str, ...] = ()  # batch_norm nodes folded into the conv/linear before them
    fallback_keys: tuple[int, ...] = ()  # entries of _FALLBACKS this module calls; release them with it


class _Lowering:
    def __init__(self, graph: Graph, params: Mapping[str, np.ndarray], dtype: str, bind_weights: bool,
                 fallback: Iterable[str] = ()):
        self.g, self.dtype, self.bind = graph, dtype, bind_weights
        self.fallback = frozenset(fallback)
        self.fallback_keys: list[int] = []
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
        if key in self.weight_vars:  # a parameter several nodes read: one function parameter
            return self.weight_vars[key]
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
                    expr = _fallback(self, node) if node.name in self.fallback else RULES[node.op](self, node)
                    # An identity (dropout) hands back an existing value: alias it, emit nothing.
                    is_value = isinstance(expr, relax.Var)
                    self.values[node.name] = expr if is_value else self.bb.emit(expr, name_hint=_hint(node.name))
                    if node.name in self.fold:
                        self.values[self.fold[node.name]] = self.values[node.name]
                outs = [self.values[o] for o in self.g.outputs]
                out = self.bb.emit_output(outs[0] if len(outs) == 1 else relax.Tuple(outs))
            self.bb.emit_func_output(out, params=[*inputs, *self.weight_vars.values()])
        order = tuple(self.weight_vars)
        return Lowered(self.bb.get(), order, {k: self.params[k] for k in order}, tuple(self.fold.values()),
                       tuple(self.fallback_keys))

    # -- helpers the rules share --------------------------------------------------------------------------
    def conv_weights(self, node: Node, bias: bool) -> tuple[Expr, Expr | None]:
        """The node's weight (OIHW, or a linear's IO: transposed) and bias (shaped to broadcast over the
        output), with the batch_norm after it folded in when there is one. Weights the graph computes
        (not parameters) are used as they are."""
        w_name, b_name = node.inputs[1], (node.inputs[2] if bias else None)
        linear = not ir_ops.get(node.op).has("window")  # a contraction without a window: linear, fused_linear
        bshape = (-1,) if linear else (1, -1, 1, 1)
        if not self.g.is_param(w_name) or (b_name is not None and not self.g.is_param(b_name)):
            w = self.arg(w_name)
            b = None if b_name is None else relax.op.reshape(self.arg(b_name), bshape)
            return (relax.op.permute_dims(w) if linear else w), b
        w, b = self.params[w_name], (self.params[b_name] if b_name else None)
        if (bn_name := self.fold.get(node.name)) is not None:
            bn = self.g.node_by_name[bn_name]
            gamma, beta, mean, var = (self.params[p] for p in bn.inputs[1:])
            w, b = fold_conv_bn_weights(w, b, gamma, beta, mean, var, bn.attrs.eps)
        w_expr = self.weight(f"{node.name}.wT" if linear else f"{node.name}.w", w.T if linear else w)
        return w_expr, None if b is None else self.weight(f"{node.name}.b", b.reshape(bshape))


def _hint(name: str) -> str:
    """Relax variable names are identifiers: torchvision's dotted names become underscores."""
    return "v_" + "".join(ch if ch.isalnum() else "_" for ch in name)


# key -> (node name, function(*activation arrays) -> array) for the nodes that fall back to the reference
_FALLBACKS: dict[int, tuple[str, Callable[..., np.ndarray]]] = {}
_fallback_ids = itertools.count()


FALLBACK_FUNC = "convbench.tvm.fallback"  # the packed function the VM calls back


def _run_fallback(key: str, *tensors: Any) -> Any:
    out = _FALLBACKS[int(key)][1](*(t.numpy() for t in tensors))
    return tvm.runtime.tensor(np.ascontiguousarray(out), tensors[0].device if tensors else tvm.cpu(0))


@functools.cache
def _register_fallback() -> None:
    """Register `_run_fallback` with TVM once, when the first fallback node is lowered (not at import)."""
    tvm_ffi.register_global_func(FALLBACK_FUNC, _run_fallback, override=True)


def release_fallbacks(keys: Iterable[int]) -> None:
    for key in keys:
        _FALLBACKS.pop(key, None)


def _fallback(lo: _Lowering, node: Node) -> Expr:
    """The node's NumPy reference, called back from the VM with the node's activations (its parameters are
    bound here, in the compile dtype)."""
    op = ir_ops.get(node.op)
    consts = {i: lo.params[i] for i in node.inputs if lo.g.is_param(i)}
    acts = [i for i in node.inputs if not lo.g.is_param(i)]
    dtype = np.dtype(lo.dtype)

    def run(*arrays: np.ndarray) -> np.ndarray:
        given = dict(zip(acts, arrays, strict=True))
        return op.reference(node.attrs, *(consts[i] if i in consts else given[i] for i in node.inputs)).astype(dtype)

    _register_fallback()
    key = next(_fallback_ids)
    _FALLBACKS[key] = (node.name, run)
    lo.fallback_keys.append(key)
    out = relax.TensorType(lo.g.types[node.name].shape, lo.dtype)
    return relax.call_pure_packed(FALLBACK_FUNC, tvm.ir.StringImm(str(key)), *(lo.arg(i) for i in acts),
                                  ty_args=out)


def _foldable_bns(graph: Graph) -> dict[str, str]:
    """conv2d/linear node -> the batch_norm that folds into it (the fold_batch_norm pass's preconditions)."""
    out = {}
    for node in graph.nodes:
        if node.op == "batch_norm" and (producer := foldable(graph, node)) is not None:
            out[producer.name] = node.name
    return out


# -- the rules: one per op ------------------------------------------------------------------------------------

def _conv2d(lo: _Lowering, node: Node) -> Expr:
    """conv2d and fused_conv2d: the conv, then + bias, + residual, activation (FuseOps fuses them again)."""
    a = node.attrs
    fused = node.op == "fused_conv2d"
    w, b = lo.conv_weights(node, a.bias if fused else len(node.inputs) > 2)
    y = relax.op.nn.conv2d(lo.arg(node.inputs[0]), w, strides=a.stride, padding=a.padding, dilation=a.dilation,
                           groups=a.groups)
    return _epilogue(lo, node, y, b, fused)


def _linear(lo: _Lowering, node: Node) -> Expr:
    """linear and fused_linear: x @ Wᵀ (any rank), then the same epilogue as conv2d."""
    fused = node.op == "fused_linear"
    w, b = lo.conv_weights(node, node.attrs.bias if fused else len(node.inputs) > 2)
    return _epilogue(lo, node, relax.op.matmul(lo.arg(node.inputs[0]), w), b, fused)


def _epilogue(lo: _Lowering, node: Node, y: Expr, bias: Expr | None, fused: bool) -> Expr:
    if bias is not None:
        y = relax.op.add(lo.bb.emit(y), bias)
    if fused and node.attrs.residual:
        y = relax.op.add(lo.bb.emit(y), lo.arg(node.inputs[-1]))
    if fused and node.attrs.activation is not None:  # through the activation op's own rule
        y = RULES[node.attrs.activation].apply(lo, lo.bb.emit(y), NoAttrs())
    return y


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
    """x / (k + alpha/size · Σ x²)^beta over a channel window (size//2 before, (size−1)//2 after), composed
    from Relax ops: the window mean of x² is an average pool over channels, with x viewed as (N, 1, C, H·W).
    (TOPI's lrn takes odd sizes only.)"""
    a = node.attrs
    x = lo.arg(node.inputs[0])
    n, c, h, w = lo.g.types[node.inputs[0]].shape
    sq = lo.bb.emit(relax.op.reshape(relax.op.multiply(x, x), (n, 1, c, h * w)))
    mean = lo.bb.emit(relax.op.nn.avg_pool2d(sq, (a.size, 1), (1, 1), (a.size // 2, 0, (a.size - 1) // 2, 0),
                                             count_include_pad=True))
    denom = relax.op.add(relax.const(a.k, lo.dtype), relax.op.multiply(relax.const(a.alpha, lo.dtype), mean))
    denom = lo.bb.emit(relax.op.power(denom, relax.const(a.beta, lo.dtype)))
    return relax.op.divide(x, relax.op.reshape(denom, (n, c, h, w)))


def _elu(lo: _Lowering, x: Expr, attrs: Any) -> Expr:
    zero = relax.const(0.0, lo.dtype)
    neg = lo.bb.emit(relax.op.multiply(relax.const(attrs.alpha, lo.dtype),
                                       relax.op.subtract(relax.op.exp(relax.op.minimum(x, zero)),
                                                         relax.const(1.0, lo.dtype))))
    return relax.op.where(relax.op.greater(x, zero), x, neg)


def _add(lo: _Lowering, node: Node) -> Expr:
    acc = lo.arg(node.inputs[0])
    for name in node.inputs[1:-1]:
        acc = lo.bb.emit(relax.op.add(acc, lo.arg(name)))
    return relax.op.add(acc, lo.arg(node.inputs[-1]))


def _reshape(lo: _Lowering, node: Node) -> Expr:
    """flatten and reshape: to the output's static shape."""
    return relax.op.reshape(lo.arg(node.inputs[0]), lo.g.types[node.name].shape)


def _pad(lo: _Lowering, node: Node) -> Expr:
    top, left, bottom, right = node.attrs.pads
    return relax.op.nn.pad(lo.arg(node.inputs[0]), (0, 0, 0, 0, top, bottom, left, right), "constant",
                           node.attrs.value)


def _clip(lo: _Lowering, x: Expr, attrs: Any) -> Expr:
    """Each bound present as a maximum/minimum with a constant (relax's clip takes both)."""
    if attrs.min is not None:
        x = lo.bb.emit(relax.op.maximum(x, relax.const(attrs.min, lo.dtype)))
    return x if attrs.max is None else relax.op.minimum(x, relax.const(attrs.max, lo.dtype))


def _hardsigmoid(lo: _Lowering, x: Expr, attrs: Any) -> Expr:
    """relu6(x + 3) / 6, as torch writes it."""
    shifted = relax.op.clip(relax.op.add(x, relax.const(3.0, lo.dtype)), 0, 6)
    return relax.op.divide(shifted, relax.const(6.0, lo.dtype))


def _hardswish(lo: _Lowering, x: Expr, attrs: Any) -> Expr:
    """x · relu6(x + 3) / 6, multiplied before the division as torch does."""
    shifted = relax.op.clip(relax.op.add(x, relax.const(3.0, lo.dtype)), 0, 6)
    return relax.op.divide(relax.op.multiply(x, shifted), relax.const(6.0, lo.dtype))


@dataclass(frozen=True)
class Unary:
    """The rule of a one-input op as a function of its input expression, ``apply(lo, x, attrs)``: the fused
    epilogue applies an activation to the conv/linear output through the activation op's own rule."""

    apply: Callable[[_Lowering, Expr, Any], Expr]

    def __call__(self, lo: _Lowering, node: Node) -> Expr:
        return self.apply(lo, lo.arg(node.inputs[0]), node.attrs)


RULES: dict[str, Callable[[_Lowering, Node], Expr]] = {
    "conv2d": _conv2d,
    "fused_conv2d": _conv2d,
    "linear": _linear,
    "fused_linear": _linear,
    "batch_norm": _batch_norm,
    "max_pool2d": _max_pool2d,
    "avg_pool2d": _avg_pool2d,
    "adaptive_avg_pool2d": _adaptive_avg_pool2d,
    "lrn": _lrn,
    "relu": Unary(lambda lo, x, attrs: relax.op.nn.relu(x)),
    "relu6": Unary(lambda lo, x, attrs: relax.op.clip(x, 0, 6)),
    "leaky_relu": Unary(lambda lo, x, attrs: relax.op.nn.leakyrelu(x, attrs.negative_slope)),
    "elu": Unary(_elu),
    "sigmoid": Unary(lambda lo, x, attrs: relax.op.sigmoid(x)),
    "tanh": Unary(lambda lo, x, attrs: relax.op.tanh(x)),
    "hardswish": Unary(_hardswish),
    "hardsigmoid": Unary(_hardsigmoid),
    "silu": Unary(lambda lo, x, attrs: relax.op.nn.silu(x)),
    "clip": Unary(_clip),
    "softmax": lambda lo, node: relax.op.nn.softmax(lo.arg(node.inputs[0]), node.attrs.axis),
    "add": _add,
    "concat": lambda lo, node: relax.op.concat([lo.arg(i) for i in node.inputs], node.attrs.axis),
    "flatten": _reshape,
    "reshape": _reshape,
    "dropout": Unary(lambda lo, x, attrs: x),
    "pad": _pad,
    "mul": lambda lo, node: relax.op.multiply(lo.arg(node.inputs[0]), lo.arg(node.inputs[1])),  # broadcasts
    **QUANT_RULES,  # int8 QDQ (quant.py)
}


def activations() -> frozenset[str]:
    """The activations a fused node may end with (`_fused.activations()`, from the ops' traits) that the
    epilogue can lower: those whose op has a `Unary` rule here. A function, not a table: the registry decides."""
    return frozenset(name for name in _fused.activations() if isinstance(RULES.get(name), Unary))


def lower(graph: Graph, params: Mapping[str, np.ndarray], dtype: str = "float32", bind_weights: bool = True,
          fallback: Iterable[str] = ()) -> Lowered:
    """The graph as a Relax IRModule whose ``main`` takes the graph inputs (then the weights, if unbound);
    the nodes named in ``fallback`` call back their NumPy reference."""
    return _Lowering(graph, params, dtype, bind_weights, fallback).run()
