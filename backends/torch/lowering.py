"""The IR lowered to a ``torch.fx.GraphModule``: one fx node per IR node, one rule per op (`LOWERINGS`).

`LOWERINGS` is the one list of what the torch backend runs (`TorchBackend.lowered_ops` returns its keys); it is
defined whether or not torch is installed (the rules name torch's functions as strings, resolved when they
lower), so ``supports`` and the coverage test answer without torch. The rewrites the backend's docstring
describes (BN folding, oneDNN post-ops, in-place activations) are planned here.
"""
from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np

from ...ir import ops as ir_ops
from ...ir.graph import Graph, Node
from ...ir.ops import NoAttrs
from ...ir.ops._fused import heads
from ...ir.passes.fold_batch_norm import fold_conv_bn_weights
from ...ir.verify import verify
from ..base import BackendError
from ..template import cast_params
from . import quant_rules
from .quant_rules import QUANT_RULES
from .train_rules import TRAIN_RULES

try:  # the backend must load (and say why it is unavailable) without torch installed
    import torch
    import torch.fx
    import torch.nn.functional as F
    from torch import nn

    from . import layers
    from .layers import (
        POST_OPS,
        NchwConv2d,
        NumpyFallback,
        PackedConv2d,
        add_n,
        canonical_conv,
        onednn_unsafe,
        pads_past_kernel,
    )
except ImportError as _e:  # pragma: no cover - exercised by the registry test with torch hidden
    torch = None  # type: ignore[assignment]
    _IMPORT_ERROR = f"torch is not installed ({_e}); pip install -c constraints.txt 'convbench[torch]'"
else:
    _IMPORT_ERROR = ""

DTYPES = ("float32", "bfloat16", "float16", "int8")  # int8: a QDQ graph, float32 in between (TorchBackend.build)


class Lowering:
    """Builds the fx graph and the modules it calls; one instance per `lower` call. ``rules`` maps each op to
    its lowering (a subclass may replace some: the planted-bug test does)."""

    rules: ClassVar[Mapping[str, Callable[..., torch.fx.Node]]] = {}  # LOWERINGS, assigned below

    def __init__(self, graph: Graph, params: Mapping[str, np.ndarray], dtype: Any, device: Any,
                 prepack: bool = False, channels_last: bool = False):
        self.graph, self.params, self.dtype, self.device = graph, params, dtype, device
        self.prepack, self.channels_last = prepack, channels_last
        self.fx = torch.fx.Graph()
        self.env: dict[str, torch.fx.Node] = {}
        self.root: dict[str, Any] = {}  # qualified name -> module or tensor, what GraphModule copies
        self.folded: dict[str, Node] = {}  # conv/linear name -> the batch_norm folded into it
        self.post_ops: dict[str, Node] = {}  # pre-packed conv name -> the relu/relu6 it applies as a post-op
        self.int8 = quant_rules.Int8Plan()  # what runs on the int8 codes (with prepack): quant_rules.plan
        self.views: set[torch.fx.Node] = set()  # outputs of IR view ops: they may share their input's storage
        # a train step (the graph has vjp nodes): each forward node reads its inputs as autograd leaves
        # (`layers.leaf`), and a vjp node differentiates its forward node alone (`_vjp`)
        self.train = any(n.op == "vjp" for n in graph.nodes)
        self.current: Node | None = None  # the forward node being lowered (train steps only)
        self.leaves: dict[tuple[str, str], torch.fx.Node] = {}  # (forward node, input value) -> its leaf

    # -- helpers ------------------------------------------------------------------------------------------------
    def tensor(self, a: np.ndarray) -> torch.Tensor:
        """A parameter as a tensor of the executable's dtype, never sharing memory with the caller's array."""
        return torch.from_numpy(np.ascontiguousarray(a)).to(device=self.device, dtype=self.dtype, copy=True)

    def value(self, name: str) -> torch.fx.Node:
        """The fx node for an IR value; a parameter read as an activation becomes a buffer (get_attr)."""
        if name not in self.env:
            target = self.attach("_params." + _ident(name), self.tensor(self.params[name]))
            self.env[name] = self.fx.get_attr(target)
        node = self.current
        if node is None or name not in node.inputs:
            return self.env[name]
        key = (node.name, name)
        if key not in self.leaves:
            self.leaves[key] = self.fx.call_function(layers.leaf, (self.env[name],))
        return self.leaves[key]

    def attach(self, target: str, obj: Any) -> str:
        """Register a module or tensor under a qualified name not yet taken (IR names sanitise alike)."""
        unique, k = target, 1
        while unique in self.root:
            unique, k = f"{target}_{k}", k + 1
        self.root[unique] = obj
        return unique

    def call(self, node: Node, fn: Callable, *args: Any, **kwargs: Any) -> torch.fx.Node:
        return self.fx.call_function(fn, args, kwargs, name=_ident(node.name))

    def module(self, node: Node, module: nn.Module, *xs: torch.fx.Node) -> torch.fx.Node:
        target = self.attach(".".join(_ident(p) for p in node.name.split(".")), module.requires_grad_(False))
        return self.fx.create_node("call_module", target, xs, name=_ident(node.name))

    def epilogue(self, node: Node, op: str, y: torch.fx.Node, *others: str) -> torch.fx.Node:
        """One step of a fused node's epilogue (``y + residual``, the activation), lowered by ``op``'s own rule
        as an fx node named ``<node>_<op>``: ``y`` enters under a temporary IR name only that step reads."""
        temporary = f"{node.name}::{op}_input"
        self.env[temporary] = y
        try:
            return self.rules[op](self, Node(f"{node.name}_{op}", op, (temporary, *others), NoAttrs()))
        finally:
            del self.env[temporary]

    def all_params(self, node: Node) -> bool:
        # a train step lowers every layer functionally: its weights are leaves the vjp nodes differentiate
        return not self.train and all(i in self.params for i in node.inputs[1:])

    def weights(self, node: Node) -> tuple[np.ndarray, np.ndarray | None]:
        """(weight, bias), with the folded batch_norm's affine map applied (in float64) if there is one."""
        w = self.params[node.inputs[1]]
        b = self.params[node.inputs[2]] if len(node.inputs) > 2 else None
        bn = self.folded.get(node.name)
        if bn is not None:
            gamma, beta, mean, var = (self.params[i].astype(np.float64) for i in bn.inputs[1:])
            w, b = fold_conv_bn_weights(w.astype(np.float64), None if b is None else b.astype(np.float64),
                                        gamma, beta, mean, var, bn.attrs.eps)
        return w, b

    # -- the walk -----------------------------------------------------------------------------------------------
    def plan_folds(self) -> None:
        """batch_norm nodes that can be folded into their producer: a conv2d/linear (`_fused.heads`) with
        parameter weights that BN alone reads (else the other reader would see BN applied) and, for linear, rank
        2 (BN acts on axis 1, which is linear's feature axis only then). Unlike the ``fold_batch_norm`` pass
        (`foldable`), a weight another node also reads does not block it: each layer gets its own copy here."""
        for node in self.graph.nodes:
            if node.op != "batch_norm" or not all(i in self.params for i in node.inputs[1:]):
                continue
            src = self.graph.node_by_name.get(node.inputs[0])
            if (src is not None and src.op in heads() and self.all_params(src)
                    and self.graph.sole_reader(src.name) == node
                    and (src.op == "conv2d" or self.graph.types[src.name].rank == 2)):
                self.folded[src.name] = node

    def plan_post_ops(self, fallback: tuple[str, ...]) -> None:
        """Activations a pre-packed conv2d can apply as its oneDNN post-op (`layers.POST_OPS`: the ones oneDNN
        has): the activation alone reads the conv's output (or the batch_norm folded into it), not returned."""
        folded_bn = {bn.name: conv for conv, bn in self.folded.items()}
        for node in self.graph.nodes:
            if node.op not in POST_OPS or node.name in fallback:
                continue
            value = node.inputs[0]
            src = self.graph.node_by_name.get(folded_bn.get(value, value))
            if (src is not None and src.op == "conv2d" and (self.all_params(src) or src.name in self.int8.convs)
                    and src.name not in fallback
                    and self.graph.sole_reader(value) == node):
                self.post_ops[src.name] = node

    def run(self, fallback: tuple[str, ...]) -> torch.fx.GraphModule:
        self.plan_folds()
        if self.prepack:
            self.int8.convs = quant_rules.plan_int8(self.graph, dict(self.params), fallback)
            self.plan_post_ops(fallback)
            self.int8 = quant_rules.plan(self.graph, self.int8.convs, self.post_ops, fallback)
        absorbed = {bn.name: conv for conv, bn in self.folded.items()}  # node -> the layer that computes it
        absorbed.update({act.name: conv for conv, act in self.post_ops.items()})
        absorbed.update(self.int8.absorbed())
        for name in self.graph.inputs:
            self.env[name] = self.fx.placeholder(_ident(name))
        backward: set[str] = set()  # a train step's vjp nodes and what sums their results: no leaves
        for node in self.graph.nodes:
            if self.train and (node.op == "vjp" or any(i in backward for i in node.inputs)):
                backward.add(node.name)
            self.current = node if self.train and node.name not in backward else None
            if node.name in self.int8.unread:  # a dequantize_linear only the codes' int8 readers read
                continue
            if node.name in absorbed:  # the conv/linear before it already applies it
                self.env[node.name] = self.env[absorbed[node.name]]
            elif node.name in fallback:
                self.env[node.name] = self.fallback(node)
            else:
                made = (quant_rules.lower_int8 if self.int8.lowers(node.name) else self.rules[node.op])(self, node)
                if ir_ops.get(node.op).has("view") and made is not self.env.get(node.inputs[0]):
                    self.views.add(made)  # dropout returns its input's node itself: that one is no view
                self.env[node.name] = made
        self.current = None
        outs = tuple(self.value(o) for o in self.graph.outputs)
        self.fx.output(outs)
        self.make_in_place()
        self.fx.lint()
        return torch.fx.GraphModule(self.root, self.fx, class_name=_ident(self.graph.name) or "Graph")

    def make_in_place(self) -> None:
        """relu/relu6/add/mul may overwrite their (first) input when nothing else reads it and it is a fresh
        temporary (not a graph input, parameter, output or view): saves an allocation per activation, as
        torchvision's inplace ReLU and ``out += identity`` do."""
        if self.train:  # autograd keeps the forward values a node's derivative reads: none may be overwritten
            return
        returned = set(self.fx.find_nodes(op="output")[0].all_input_nodes)
        in_place = _in_place()
        for n in self.fx.nodes:
            if n.op != "call_function" or n.target not in in_place or not n.args:
                continue
            src = n.args[0]
            if (isinstance(src, torch.fx.Node) and src.op in ("call_function", "call_module")
                    and src not in self.views and len(src.users) == 1 and src not in returned):
                n.target = in_place[n.target]

    def fallback(self, node: Node) -> torch.fx.Node:
        """Route ``node`` to the NumPy reference (explicit ``fallback="numpy"`` only)."""
        module = NumpyFallback(node, {i: self.params[i] for i in node.inputs if i in self.params})
        target = self.attach("_fallback." + _ident(node.name), module)
        acts = tuple(self.value(i) for i in node.inputs if i not in self.params)
        return self.fx.create_node("call_module", target, acts, name=_ident(node.name))


def _in_place() -> dict[Callable, Callable]:
    """The functions `Lowering.make_in_place` rewrites -> their in-place forms."""
    return {torch.relu: torch.relu_, F.relu6: layers.relu6_, operator.add: operator.iadd, operator.mul: operator.imul}


def _function(path: str) -> Callable:
    """``"torch.relu"``, ``"F.relu6"``, ``"layers.lrn"``: the function a rule calls, looked up when it lowers."""
    root, _, name = path.partition(".")
    return getattr({"torch": torch, "F": F, "layers": layers}[root], name)


# -- one rule per op ----------------------------------------------------------------------------------------------

def _conv2d(lw: Lowering, node: Node) -> torch.fx.Node:
    taps = lw.graph.types[node.inputs[1]].shape[2:]
    a = canonical_conv(node.attrs, taps)
    unsafe = onednn_unsafe(a, taps, lw.graph.types[node.name].shape[2:])  # on every layout: see its docstring
    if not lw.all_params(node):  # weights computed by the graph (a train step's leaves): the functional form
        args = [lw.value(i) for i in node.inputs] + [None] * (3 - len(node.inputs))
        if unsafe:
            return lw.call(node, layers.nchw_conv2d, *args, a.stride, a.padding, a.dilation, a.groups,
                           pads_past_kernel(a, taps))
        return lw.call(node, F.conv2d, *args, a.stride, a.padding, a.dilation, a.groups)
    w, b = lw.weights(node)
    act = lw.post_ops.get(node.name)
    if unsafe:
        conv = NchwConv2d(lw.tensor(w), None if b is None else lw.tensor(b), a.stride, a.padding, a.dilation,
                          a.groups, act.op if act else None, pad_first=pads_past_kernel(a, taps))
        return lw.module(node, conv, lw.value(node.inputs[0]))
    if lw.prepack:
        conv = PackedConv2d(lw.tensor(w), None if b is None else lw.tensor(b), a.stride, a.padding, a.dilation,
                            a.groups, lw.graph.types[node.inputs[0]].shape, act.op if act else None)
        return lw.module(node, conv, lw.value(node.inputs[0]))
    conv = nn.Conv2d(w.shape[1] * a.groups, w.shape[0], w.shape[2:], a.stride, a.padding, a.dilation, a.groups,
                     bias=b is not None, device="meta")
    return lw.module(node, _load(conv, lw, w, b), lw.value(node.inputs[0]))


def _linear(lw: Lowering, node: Node) -> torch.fx.Node:
    if not lw.all_params(node):
        return lw.call(node, F.linear, *(lw.value(i) for i in node.inputs))
    w, b = lw.weights(node)
    fc = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, device="meta")
    return lw.module(node, _load(fc, lw, w, b), lw.value(node.inputs[0]))


def _load(layer: nn.Module, lw: Lowering, w: np.ndarray, b: np.ndarray | None) -> nn.Module:
    layer.weight = nn.Parameter(lw.tensor(w), requires_grad=False)
    if b is not None:
        layer.bias = nn.Parameter(lw.tensor(b), requires_grad=False)
    return layer


def _batch_norm(lw: Lowering, node: Node) -> torch.fx.Node:
    x = lw.value(node.inputs[0])
    rank = lw.graph.types[node.inputs[0]].rank
    if not lw.all_params(node) or rank not in (2, 3, 4):
        w, b, mean, var = (lw.value(i) for i in node.inputs[1:])
        return lw.call(node, F.batch_norm, x, mean, var, w, b, False, 0.0, node.attrs.eps)
    gamma, beta, mean, var = (lw.params[i] for i in node.inputs[1:])
    bn = (nn.BatchNorm2d if rank == 4 else nn.BatchNorm1d)(len(gamma), eps=node.attrs.eps).eval()
    for attr, value in (("weight", gamma), ("bias", beta), ("running_mean", mean), ("running_var", var)):
        getattr(bn, attr).data = lw.tensor(value)
    return lw.module(node, bn, x)


def _fused(kind: str) -> Callable[[Lowering, Node], torch.fx.Node]:
    """fused_conv2d / fused_linear: the layer (a module named after the node), then ``+ residual`` and the
    activation as their own fx nodes, each by its op's rule (`Lowering.epilogue`); `Lowering.make_in_place`
    turns both into in-place updates of the layer's output."""

    def lower(lw: Lowering, node: Node) -> torch.fx.Node:
        a = node.attrs
        y = lw.rules[kind](lw, Node(node.name, kind, node.inputs[: 2 + a.bias],
                                    a.conv if kind == "conv2d" else NoAttrs()))
        if a.residual:
            y = lw.epilogue(node, "add", y, node.inputs[-1])
        if a.activation is not None:
            y = lw.epilogue(node, a.activation, y)
        return y
    return lower


def _pool(fn: str, with_dilation: bool) -> Callable[[Lowering, Node], torch.fx.Node]:
    def lower(lw: Lowering, node: Node) -> torch.fx.Node:
        a, x = node.attrs, lw.value(node.inputs[0])
        if with_dilation:
            return lw.call(node, _function(fn), x, a.kernel_size, a.stride, a.padding, a.dilation, a.ceil_mode)
        return lw.call(node, _function(fn), x, a.kernel_size, a.stride, a.padding, a.ceil_mode,
                       a.count_include_pad)
    return lower


def _unary(fn: str, *attr_names: str) -> Callable[[Lowering, Node], torch.fx.Node]:
    def lower(lw: Lowering, node: Node) -> torch.fx.Node:
        return lw.call(node, _function(fn), lw.value(node.inputs[0]), *(getattr(node.attrs, a) for a in attr_names))
    return lower


def _add(lw: Lowering, node: Node) -> torch.fx.Node:
    xs = [lw.value(i) for i in node.inputs]
    return lw.call(node, operator.add if len(xs) == 2 else add_n, *xs)


def _mul(lw: Lowering, node: Node) -> torch.fx.Node:
    """x · y; torch broadcasts the (N, C, 1, 1) gate itself. x always has the output's shape, so the in-place
    rewrite (`Lowering.make_in_place`) may write over it."""
    return lw.call(node, operator.mul, lw.value(node.inputs[0]), lw.value(node.inputs[1]))


def _pad(lw: Lowering, node: Node) -> torch.fx.Node:
    top, left, bottom, right = node.attrs.pads
    return lw.call(node, F.pad, lw.value(node.inputs[0]), (left, right, top, bottom), "constant", node.attrs.value)


def _clip(lw: Lowering, node: Node) -> torch.fx.Node:
    a = node.attrs
    if a.min is None and a.max is None:  # torch.clamp refuses two absent bounds; the op is the identity then
        return lw.value(node.inputs[0])
    return lw.call(node, torch.clamp, lw.value(node.inputs[0]), a.min, a.max)


def _concat(lw: Lowering, node: Node) -> torch.fx.Node:
    return lw.call(node, torch.cat, [lw.value(i) for i in node.inputs], node.attrs.axis)


def _dropout(lw: Lowering, node: Node) -> torch.fx.Node:
    """Dropout is its input at inference: the input's own fx node, no new one."""
    return lw.value(node.inputs[0])


LOWERINGS: dict[str, Callable[[Lowering, Node], torch.fx.Node]] = {
    "conv2d": _conv2d, "linear": _linear, "batch_norm": _batch_norm,
    "fused_conv2d": _fused("conv2d"), "fused_linear": _fused("linear"),
    "max_pool2d": _pool("F.max_pool2d", True), "avg_pool2d": _pool("F.avg_pool2d", False),
    "adaptive_avg_pool2d": _unary("F.adaptive_avg_pool2d", "output_size"),
    "relu": _unary("torch.relu"), "relu6": _unary("F.relu6"), "leaky_relu": _unary("F.leaky_relu", "negative_slope"),
    "sigmoid": _unary("torch.sigmoid"), "tanh": _unary("torch.tanh"), "elu": _unary("F.elu", "alpha"),
    "softmax": _unary("torch.softmax", "axis"), "lrn": _unary("layers.lrn", "size", "alpha", "beta", "k"),
    "flatten": _unary("torch.flatten", "start_dim"), "add": _add, "concat": _concat, "dropout": _dropout,
    "hardswish": _unary("F.hardswish"), "hardsigmoid": _unary("F.hardsigmoid"), "silu": _unary("F.silu"),
    "clip": _clip, "mul": _mul, "pad": _pad, "reshape": _unary("torch.reshape", "shape"),
    **QUANT_RULES,
    **TRAIN_RULES,
}
Lowering.rules = LOWERINGS


def _ident(name: str) -> str:
    """A Python identifier for an IR name (fx node and module attribute names)."""
    s = re.sub(r"\W", "_", name)
    return s if s and not s[0].isdigit() else f"_{s}"


def lower(graph: Graph, params: Mapping[str, np.ndarray], dtype: str = "float32", channels_last: bool = False,
          device: str = "cpu", fallback: tuple[str, ...] = (), lowering: type[Lowering] = Lowering,
          prepack: bool = False) -> torch.fx.GraphModule:
    """The fx GraphModule of ``graph`` with ``params`` converted to ``dtype`` (print its ``.code``): what
    `TorchBackend.build` runs, callable on its own (it verifies the graph and checks the parameters first).

    ``gm.meta["folded_batch_norms"]`` lists the batch_norm nodes folded into the layer before them,
    ``gm.meta["post_ops"]`` the activations pre-packed convolutions apply."""
    if torch is None:
        raise BackendError(_IMPORT_ERROR)
    verify(graph)
    return lower_verified(graph, cast_params(graph, params, "float32"), dtype, channels_last, device, fallback,
                          lowering, prepack)


def lower_verified(graph: Graph, params: Mapping[str, np.ndarray], dtype: str, channels_last: bool, device: str,
                   fallback: tuple[str, ...], lowering: type[Lowering], prepack: bool) -> torch.fx.GraphModule:
    """`lower` on a graph the compile template already verified, with its parameters already cast to float32."""
    lw = lowering(graph, params, getattr(torch, dtype), torch.device(device), prepack, channels_last)
    gm = lw.run(fallback)
    gm.meta["folded_batch_norms"] = [bn.name for bn in lw.folded.values()]
    gm.meta["post_ops"] = [act.name for act in lw.post_ops.values()]
    gm.meta["int8_convs"], gm.meta["int8_adds"] = list(lw.int8.convs), list(lw.int8.adds)
    gm.meta["int8_shared"] = list(lw.int8.shared)  # pads and max pools of codes
    gm.meta["requantized"] = [n for n in lw.int8.requant if n in lw.int8.convs]
    gm.eval()
    if channels_last:
        gm = gm.to(memory_format=torch.channels_last)
    return gm
