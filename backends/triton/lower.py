"""Lowering for the Triton backend: a (pass-optimised) IR graph becomes a list of kernel launches, planned once.

Each `Step` is one launch (or a view: flatten, dropout) producing one IR value. On top of what the pass pipeline
did (BN folded into conv/linear weights, conv → add → activation chains fused into ``fused_conv2d``/
``fused_linear``), lowering:

- absorbs an activation into the launch that produces its only input (an unfolded batch_norm, an add, a conv
  or linear whose activation the fuse pass does not take, such as leaky_relu or elu);
- lays concats out before lowering anything (`plan.layout_concats`): inputs written in place into the
  concat's output, concats of concats as views of it; each step is then built once with that decision;
- packs every weight once (`kernels.triton.conv2d.pack_weight`, `linear.pack_weight`) in the compute dtype.

``LOWERINGS`` is the one list of what the backend runs. This module loads without torch and triton (the table
and the op sets only: coverage and ``supports`` read them); lowering itself needs both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ...ir import ops as ir_ops
from ...ir.graph import Graph, Node
from ...ir.ops.batch_norm import scale_shift
from ...ir.ops.clip import ClipAttrs
from ...kernels.triton.activations import ACTIVATIONS as KERNEL_ACTIVATIONS
from ..base import BackendError

try:  # optional: without them the backend is unavailable (it says why), yet its table still loads
    import torch

    from ...kernels.triton import concat as k_concat
    from ...kernels.triton import conv2d as k_conv
    from ...kernels.triton import elementwise as k_elem
    from ...kernels.triton import linear as k_linear
    from ...kernels.triton import lrn as k_lrn
    from ...kernels.triton import pad as k_pad
    from ...kernels.triton import pool as k_pool
    from ...kernels.triton import runtime
    from ...kernels.triton import softmax as k_softmax
    from .plan import ConcatLayout, Env, Plan, Step, layout_concats
except ImportError as _e:
    IMPORT_ERROR = f"{type(_e).__name__}: {_e}"
else:
    IMPORT_ERROR = ""

ACTIVATION_OPS = ir_ops.with_trait("activation")
# launches that take an activation epilogue: the conv/linear kernels, add, and channel_affine (an unfolded BN)
EPILOGUE_OPS = ir_ops.with_trait("contraction") | {"add", "batch_norm"}
# what a conv/linear launch stands for besides itself: the BN folded into its weights, the residual add and the
# activation of its epilogue (fold_batch_norm, fuse, and this lowering's absorbed activations)
FOLDED_OPS = {"batch_norm", "add"} | ACTIVATION_OPS


class Lowering:
    def __init__(self, graph: Graph, params: Mapping[str, np.ndarray], dtype: torch.dtype, tf32: bool,
                 original: Graph | None = None, fallback: tuple[str, ...] = (),
                 notes: Mapping[str, str] | None = None):
        self.graph, self.params, self.dtype, self.tf32 = graph, params, dtype, tf32
        self.original = original or graph
        self.fallback = set(fallback)
        self.notes = notes or {}  # per node, what an earlier rewrite did to it (shown in the plan)
        self.constants: Env = {}
        self.activation_of: dict[str, Node] = self._absorbable_activations()
        self.absorbed = {a.name for a in self.activation_of.values()}  # activations computed by their producer
        self.layout: ConcatLayout = layout_concats(graph, self._writers())

    # -- decisions made from the graph before any step is built ------------------------------------------------
    def _absorbable_activations(self) -> dict[str, Node]:
        """producer name -> the activation node its launch applies as an epilogue."""
        out = {}
        for node in self.graph.nodes:
            if node.op not in EPILOGUE_OPS or getattr(node.attrs, "activation", None) or node.name in self.fallback:
                continue
            reader = self.graph.sole_reader(node.name)
            if (reader is not None and reader.op in ACTIVATION_OPS and reader.inputs == (node.name,)
                    and reader.name not in self.fallback):
                out[node.name] = reader
        return out

    def _writers(self) -> dict[str, str]:
        """value -> the op of the launch that writes it: an absorbed activation's value is written by its
        producer's launch; values of fallback nodes are absent (the reference returns fresh arrays)."""
        return {self.epilogue(n)[0]: n.op for n in self.graph.nodes
                if n.name not in self.absorbed and n.name not in self.fallback}

    # -- helpers --------------------------------------------------------------------------------------------
    def tensor(self, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.params[name])).to(runtime.DEVICE, dtype or self.dtype)

    def value(self, name: str) -> Callable[[Env], torch.Tensor]:
        """How a step reads input ``name``: from the environment, or a parameter converted once."""
        if name in self.graph.params:
            self.constants.setdefault(name, self.tensor(name))
        return lambda env: env[name]

    def step(self, output: str, kernel: str, run: Callable[[Env, torch.Tensor | None], torch.Tensor], text: str,
             covers: tuple[str, ...]) -> Step:
        """The step, writing into its slice of a concat's output where the layout placed ``output`` there."""
        into = self.layout.into.get(output)
        if into is not None:
            text += f"  → into {into[0]}[{into[1]}]"
        return Step(output, kernel, run, text, covers, into)

    def epilogue(self, node: Node) -> tuple[str, str | None, tuple[float, float]]:
        """(output name, activation, its (alpha, beta)) of ``node``'s launch, counting an absorbed activation."""
        act = self.activation_of.get(node.name)
        if act is None:
            return node.name, getattr(node.attrs, "activation", None), (0.0, math.inf)
        return act.name, act.op, scalars(act.attrs)

    def covers(self, output: str, head: str) -> tuple[str, ...]:
        """The original graph's nodes one launch computes: from ``head`` along sole readers to ``output``,
        through what the passes folded or fused away. Past ``output`` only a folded batch_norm can follow (the
        conv keeps its name); before it, any folded or fused node."""
        chain, name = [head], head
        while (nxt := self.original.sole_reader(name)) is not None:
            if nxt.name in self.graph.node_by_name and nxt.name != output:
                break
            reached = output in chain
            if not (nxt.name == output or nxt.op == "batch_norm" or (not reached and nxt.op in FOLDED_OPS)):
                break
            chain.append(nxt.name)
            name = nxt.name
        return tuple(chain)

    # -- the walk -------------------------------------------------------------------------------------------
    def run(self) -> Plan:
        launched = [k for k, n in enumerate(self.graph.nodes) if n.name not in self.absorbed]
        nodes = [self.graph.nodes[k] for k in launched]
        steps = tuple((_reference if n.name in self.fallback else LOWERINGS[n.op])(self, n) for n in nodes)
        # The graph's liveness holds for the plan. An absorbed activation has no step: what the graph frees after
        # it is its producer's own output, which that launch never materialised (it writes the activation's).
        # Views share storage with what they view (a value written into a concat, a concat that is a view of
        # another), so releasing one name frees memory only with its last alias; and a view's owner is the
        # concat its inputs were placed into, the latest holding them: later in the schedule, so alive then.
        frees = tuple(self.graph.frees[k] for k in launched)
        return Plan(steps, self.constants, self.dtype, self.graph.outputs, self.layout, frees)


# -- per-op lowerings -------------------------------------------------------------------------------------------
def _conv2d(lw: Lowering, node: Node) -> Step:
    a = node.attrs
    bias_on = getattr(a, "bias", len(node.inputs) > 2) and len(node.inputs) > 2
    residual = node.inputs[-1] if getattr(a, "residual", False) else None
    x, w = lw.value(node.inputs[0]), node.inputs[1]
    b = node.inputs[2] if bias_on else None
    static = w in lw.graph.params and (b is None or b in lw.graph.params)
    packed = _pack_conv(lw, w, b, a.groups) if static else None  # else packed per call from activations
    wv, bv = (None, None) if static else (lw.value(w), lw.value(b) if b else None)
    rv = lw.value(residual) if residual else None
    output, act, (alpha, beta) = lw.epilogue(node)

    def run(env: Env, out: torch.Tensor | None) -> torch.Tensor:
        weight = packed or k_conv.pack_weight(wv(env), bv(env) if bv else None, a.groups, lw.dtype)
        return k_conv.conv2d(x(env), weight, stride=a.stride, padding=a.padding, dilation=a.dilation,
                             residual=rv(env) if rv else None, activation=act, alpha=alpha, beta=beta, out=out,
                             tf32=lw.tf32)

    o, cg, kh, kw = lw.graph.types[w].shape
    head = _head(lw, w)
    text = (f"{output}: conv2d {kh}×{kw}/s{_pair(a.stride)}/p{_pair(a.padding)}"
            + (f"/d{_pair(a.dilation)}" if a.dilation != (1, 1) else "")
            + (("/depthwise" if cg == 1 else f"/g{a.groups}") if a.groups > 1 else "")
            + f" {cg * a.groups}→{o}" + (" +bias" if b else "") + (f" +residual({residual})" if residual else "")
            + (f" {act}" if act else "") + f"  [{', '.join(lw.covers(output, head))}]")
    return lw.step(output, "conv2d", run, text, lw.covers(output, head))


def _pack_conv(lw: Lowering, w: str, b: str | None, groups: int) -> k_conv.PackedConv:
    return k_conv.pack_weight(lw.tensor(w, torch.float32), lw.tensor(b, torch.float32) if b else None, groups,
                              lw.dtype)


def _linear(lw: Lowering, node: Node) -> Step:
    a = node.attrs
    bias_on = getattr(a, "bias", True) and len(node.inputs) > 2
    residual = node.inputs[-1] if getattr(a, "residual", False) else None
    x, w = lw.value(node.inputs[0]), node.inputs[1]
    b = node.inputs[2] if bias_on else None
    static = w in lw.graph.params and (b is None or b in lw.graph.params)
    packed = k_linear.pack_weight(lw.tensor(w, torch.float32), lw.tensor(b, torch.float32) if b else None,
                                  lw.dtype) if static else None
    wv, bv = (None, None) if static else (lw.value(w), lw.value(b) if b else None)
    rv = lw.value(residual) if residual else None
    output, act, (alpha, beta) = lw.epilogue(node)

    def run(env: Env, out: torch.Tensor | None) -> torch.Tensor:
        weight = packed or k_linear.pack_weight(wv(env), bv(env) if bv else None, lw.dtype)
        return k_linear.linear(x(env), weight, residual=rv(env) if rv else None, activation=act, alpha=alpha,
                               beta=beta, out=out, tf32=lw.tf32)

    n_out, n_in = lw.graph.types[w].shape
    head = _head(lw, w)
    text = (f"{output}: linear {n_in}→{n_out}" + (" +bias" if b else "")
            + (f" +residual({residual})" if residual else "") + (f" {act}" if act else "")
            + f"  [{', '.join(lw.covers(output, head))}]"
            + (f"  ({lw.notes[node.name]})" if node.name in lw.notes else ""))
    return lw.step(output, "linear", run, text, lw.covers(output, head))


def _batch_norm(lw: Lowering, node: Node) -> Step:
    stats = node.inputs[1:]
    if not all(s in lw.graph.params for s in stats):
        raise BackendError(f"triton backend: node {node.name!r} (batch_norm): its statistics must be parameters")
    scale, shift = scale_shift(node.attrs.eps, *(lw.params[s].astype(np.float64) for s in stats))
    scale_t = torch.from_numpy(scale.astype(np.float32)).to(runtime.DEVICE)
    shift_t = torch.from_numpy(shift.astype(np.float32)).to(runtime.DEVICE)
    x = lw.value(node.inputs[0])
    output, act, (alpha, beta) = lw.epilogue(node)
    text = f"{output}: batch_norm as per-channel affine" + (f" {act}" if act else "")
    return lw.step(output, "channel_affine",
                   lambda env, out: k_elem.channel_affine(x(env), scale_t, shift_t, act, alpha, beta), text,
                   lw.covers(output, node.name))


def _add(lw: Lowering, node: Node) -> Step:
    xs = [lw.value(i) for i in node.inputs]
    output, act, (alpha, beta) = lw.epilogue(node)
    return lw.step(output, "add", lambda env, out: k_elem.add(*(x(env) for x in xs), activation=act, alpha=alpha,
                                                              beta=beta),
                   f"{output}: add ×{len(xs)}" + (f" {act}" if act else ""), lw.covers(output, node.name))


def scalars(attrs: Any) -> tuple[float, float]:
    """An activation's attributes as the kernels' (alpha, beta) (kernels/triton/activations.py): leaky_relu's
    slope or elu's alpha; clip's min and max, ±inf where absent."""
    if isinstance(attrs, ClipAttrs):
        return (-math.inf if attrs.min is None else attrs.min, math.inf if attrs.max is None else attrs.max)
    return float(getattr(attrs, "negative_slope", getattr(attrs, "alpha", 0.0))), math.inf


def _activation(lw: Lowering, node: Node) -> Step:
    x = lw.value(node.inputs[0])
    alpha, beta = scalars(node.attrs)
    return lw.step(node.name, node.op, lambda env, out: k_elem.activation(x(env), node.op, alpha, beta),
                   f"{node.name}: {node.op}", (node.name,))


def _mul(lw: Lowering, node: Node) -> Step:
    x, y = (lw.value(i) for i in node.inputs)
    gate = lw.graph.types[node.inputs[1]].shape != lw.graph.types[node.name].shape
    return lw.step(node.name, "mul", lambda env, out: k_elem.mul(x(env), y(env)),
                   f"{node.name}: mul" + (" by a per-channel gate" if gate else ""), (node.name,))


def _pad(lw: Lowering, node: Node) -> Step:
    x, a = lw.value(node.inputs[0]), node.attrs
    return lw.step(node.name, "pad", lambda env, out: k_pad.pad(x(env), a.pads, a.value),
                   f"{node.name}: pad {'/'.join(map(str, a.pads))}" + (f" with {a.value}" if a.value else ""),
                   (node.name,))


def _pool(lw: Lowering, node: Node) -> Step:
    a, kind = node.attrs, node.op.split("_")[0]
    x = lw.value(node.inputs[0])

    def run(env: Env, out: torch.Tensor | None) -> torch.Tensor:
        return k_pool.pool2d(x(env), a.kernel_size, kind=kind, stride=a.stride, padding=a.padding,
                             dilation=a.dilation, ceil_mode=a.ceil_mode, count_include_pad=a.count_include_pad,
                             out=out)

    text = (f"{node.name}: {node.op} {_pair(a.kernel_size)}/s{_pair(a.stride)}/p{_pair(a.padding)}"
            + (" ceil" if a.ceil_mode else "") + ("" if a.count_include_pad or kind == "max" else " exclude-pad"))
    return lw.step(node.name, node.op, run, text, (node.name,))


def _adaptive(lw: Lowering, node: Node) -> Step:
    x = lw.value(node.inputs[0])
    size = node.attrs.output_size
    return lw.step(node.name, node.op, lambda env, out: k_pool.adaptive_avg_pool2d(x(env), size, out=out),
                   f"{node.name}: adaptive_avg_pool2d → {_pair(size)}", (node.name,))


def _lrn(lw: Lowering, node: Node) -> Step:
    a, x = node.attrs, lw.value(node.inputs[0])
    return lw.step(node.name, "lrn", lambda env, out: k_lrn.lrn(x(env), a.size, a.alpha, a.beta, a.k, out=out),
                   f"{node.name}: lrn size {a.size}", (node.name,))


def _softmax(lw: Lowering, node: Node) -> Step:
    x, axis = lw.value(node.inputs[0]), node.attrs.axis
    return lw.step(node.name, "softmax", lambda env, out: k_softmax.softmax(x(env), axis),
                   f"{node.name}: softmax axis {axis}", (node.name,))


def _view(lw: Lowering, node: Node) -> Step:
    """flatten, reshape and dropout: no launch, a view of the input (contiguous: every step's output is)."""
    x, shape = lw.value(node.inputs[0]), lw.graph.types[node.name].shape
    return lw.step(node.name, "view", lambda env, out: x(env).reshape(shape),
                   f"{node.name}: {node.op} (a view, no launch)", (node.name,))


def _concat(lw: Lowering, node: Node) -> Step:
    """A view of another concat's output where the layout made it one (no launch); otherwise copies the inputs
    that are not written in place into their slices of the output buffer (allocated here unless an in-place
    producer already did)."""
    if node.name in lw.layout.views:
        owner, first, end = lw.layout.views[node.name]
        _, axis, sizes = lw.layout.shapes[owner]
        start, length = sum(sizes[:first]), sum(sizes[first:end])
        return lw.step(node.name, "view", lambda env, out: env[owner].narrow(axis, start, length),
                       f"{node.name}: concat as a view of {owner}[{first}:{end}] (no launch)", (node.name,))
    xs = [lw.value(i) for i in node.inputs]
    shape, axis, sizes = lw.layout.shapes[node.name]
    in_place = lw.layout.in_place(node.name, node.inputs)

    def run(env: Env, out: torch.Tensor | None) -> torch.Tensor:
        buffer = env[node.name] if node.name in env else torch.empty(shape, dtype=lw.dtype, device=runtime.DEVICE)
        for x, view, done in zip(xs, k_concat.slices(buffer, sizes, axis), in_place, strict=True):
            if not done:
                k_concat.copy(x(env), view)
        return buffer

    copies = in_place.count(False)
    return lw.step(node.name, "concat", run, f"{node.name}: concat axis {axis} ×{len(xs)} "
                   f"({len(xs) - copies} written in place, {copies} copied)", (node.name,))


def _reference(lw: Lowering, node: Node) -> Step:
    """The explicit ``fallback="numpy"``: the op's NumPy reference on host copies of its inputs."""
    op = ir_ops.get(node.op)
    xs = [lw.value(i) for i in node.inputs]

    def run(env: Env, out: torch.Tensor | None) -> torch.Tensor:
        y = op.reference(node.attrs, *(x(env).to(torch.float32).cpu().numpy() for x in xs))
        return torch.from_numpy(np.ascontiguousarray(y)).to(runtime.DEVICE, lw.dtype)

    return lw.step(node.name, "numpy", run, f"{node.name}: {node.op} on the NumPy reference (fallback)",
                   (node.name,))


def _head(lw: Lowering, weight: str) -> str:
    """The original node that reads ``weight`` as its weight (a fused node's conv/linear)."""
    readers = lw.original.users.get(weight, ())
    return next((r for r in readers if lw.original.node_by_name[r].inputs[1:2] == (weight,)), weight)


def _pair(p: tuple[int, int]) -> str:
    return str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"


# The one list of what the backend runs (`TritonBackend.lowered_ops`); an op added to the IR needs a row here.
LOWERINGS: dict[str, Callable[[Lowering, Node], Step]] = {
    "conv2d": _conv2d, "fused_conv2d": _conv2d, "linear": _linear, "fused_linear": _linear,
    "batch_norm": _batch_norm, "add": _add, "max_pool2d": _pool, "avg_pool2d": _pool,
    "adaptive_avg_pool2d": _adaptive, "lrn": _lrn, "softmax": _softmax, "concat": _concat,
    "flatten": _view, "reshape": _view, "dropout": _view, "mul": _mul, "pad": _pad,
    **{op: _activation for op in KERNEL_ACTIVATIONS},  # what the kernels compute: an IR activation needs a branch
}


def supported(node: Node) -> bool:
    # the table, narrowed where the kernels refuse an attribute: a fused node's activation they lack
    act = getattr(node.attrs, "activation", None)
    return node.op in LOWERINGS and (act is None or act in KERNEL_ACTIVATIONS)


def lower(graph: Graph, params: Mapping[str, np.ndarray], dtype: torch.dtype, tf32: bool,
          original: Graph | None = None, fallback: tuple[str, ...] = (),
          notes: Mapping[str, str] | None = None) -> Plan:
    """The launch plan of ``graph``; ``original`` (the graph before passes) names what each launch covers,
    ``fallback`` the nodes to run on the NumPy reference, ``notes`` what earlier rewrites did (for the plan)."""
    return Lowering(graph, params, dtype, tf32, original, fallback, notes).run()
