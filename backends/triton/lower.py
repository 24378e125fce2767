"""Lowering for the Triton backend: a (pass-optimised) IR graph becomes a list of kernel launches, planned once.

Each `Step` is one launch (or a view: flatten, dropout) producing one IR value. On top of what the pass pipeline
did (BN folded into conv/linear weights, conv → add → activation chains fused into ``fused_conv2d``/
``fused_linear``), lowering:

- absorbs an activation into the launch that produces its only input (an unfolded batch_norm, an add, a conv
  or linear whose activation the fuse pass does not take, such as leaky_relu or elu);
- lays concats out before lowering anything (`plan.layout_concats`): inputs written in place into the
  concat's output, concats of concats as views of it; each step is then built once with that decision;
- packs every weight once (`kernels.triton.conv2d.pack_weight`, `linear.pack_weight`) in the compute dtype;
- in the "nhwc" layout (the default) keeps every 4-D activation channels-last: each step's output is allocated
  so, convs read it with the channels-last GEMM (weights packed (O, KH, KW, C/groups)), the stem reads the
  NCHW network input with the NCHW kernel and writes NHWC; a flatten of an NHWC map into a linear is a view, the
  linear's weight columns permuted to (h, w, c) at packing; elementwise readers of an NCHW graph input get a
  channels-last copy of it. "nchw" is the plain layout, the oracle the other is tested against;
- chooses each conv/linear launch's configuration at plan time: the tuned table's entry for its shape, else
  `gemm.default_config` (split-K from the device's SM count).

``LOWERINGS`` is the one list of what the backend runs. This module loads without torch and triton (the table
and the op sets only: coverage and ``supports`` read them); lowering itself needs both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import numpy as np

from ...ir import ops as ir_ops
from ...ir.graph import Graph, Node
from ...ir.ops.batch_norm import scale_shift
from ...ir.ops.clip import ClipAttrs
from ...kernels.triton.activations import ACTIVATIONS as KERNEL_ACTIVATIONS
from ..base import BackendError
from .quant_rules import QUANT_RULES, Int8Conv, int8_rule

try:  # optional: without them the backend is unavailable (it says why), yet its table still loads
    import torch

    from ...kernels.triton import concat as k_concat
    from ...kernels.triton import configs as k_configs
    from ...kernels.triton import conv2d as k_conv
    from ...kernels.triton import elementwise as k_elem
    from ...kernels.triton import gemm as k_gemm
    from ...kernels.triton import linear as k_linear
    from ...kernels.triton import lrn as k_lrn
    from ...kernels.triton import pad as k_pad
    from ...kernels.triton import pool as k_pool
    from ...kernels.triton import runtime
    from ...kernels.triton import softmax as k_softmax
    from .plan import ConcatLayout, Env, Plan, Step, covers, flatten_views, layout_concats, nchw_values, weight_reader
except ImportError as _e:
    IMPORT_ERROR = f"{type(_e).__name__}: {_e}"
else:
    IMPORT_ERROR = ""

ACTIVATION_OPS = ir_ops.with_trait("activation")
# launches that take an activation epilogue: the conv/linear kernels, add, and channel_affine (an unfolded BN)
EPILOGUE_OPS = ir_ops.with_trait("contraction") | {"add", "batch_norm"}


class Lowering:
    def __init__(self, graph: Graph, params: Mapping[str, np.ndarray], dtype: torch.dtype, tf32: bool,
                 original: Graph | None = None, fallback: tuple[str, ...] = (),
                 notes: Mapping[str, str] | None = None, layout: str = "nhwc",
                 table: k_configs.ConfigTable | None = None, sm_count: int | None = None,
                 int8: Mapping[str, Int8Conv] | None = None):
        self.graph, self.params, self.dtype, self.tf32 = graph, params, dtype, tf32
        self.int8 = dict(int8 or {})  # conv/linear -> its int8 kernel's operands (int8_convs, int8_linears)
        self.int8_inputs = {q.dequantize: node for node, q in self.int8.items()}  # absorbed: it reads the codes
        self.nhwc = layout == "nhwc"
        self.table, self.sm_count = table, sm_count or runtime.sm_count()
        self.dtype_name = str(dtype).removeprefix("torch.")
        self.original = original or graph
        self.fallback = set(fallback)
        self.notes = notes or {}  # per node, what an earlier rewrite did to it (shown in the plan)
        self.constants: Env = {}
        self.activation_of: dict[str, Node] = self._absorbable_activations()
        self.absorbed = {a.name for a in self.activation_of.values()}  # activations computed by their producer
        self.layout: ConcatLayout = layout_concats(graph, self._writers())
        self.nchw = nchw_values(graph, self.fallback)  # 4-D values that are NCHW at run time whatever the layout
        # flattens of NHWC maps into a linear: (h, w, c)-ordered views, the linear's weight permuted to match
        self.flatten_views = flatten_views(graph, self.nchw, self.fallback) if self.nhwc else set()

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
                if n.name not in self.absorbed and n.name not in self.fallback and n.name not in self.int8_inputs}

    # -- helpers --------------------------------------------------------------------------------------------
    def tensor(self, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.params[name])).to(runtime.DEVICE, dtype or self.dtype)

    def value(self, name: str, dense: bool = False) -> Callable[[Env], torch.Tensor]:
        """How a step reads input ``name``: from the environment, or a parameter converted once. ``dense``: the
        reader walks memory flat, so in the nhwc layout an NCHW 4-D value is handed over as a channels-last
        copy."""
        if name in self.graph.params:
            self.constants.setdefault(name, self.tensor(name))
        if dense and self.nhwc and name in self.nchw and self.graph.types[name].rank == 4:
            shape, dtype = self.graph.types[name].shape, self.dtype
            return lambda env: k_concat.copy(env[name], torch.empty(shape, dtype=dtype, device=runtime.DEVICE,
                                                                    memory_format=torch.channels_last))
        return lambda env: env[name]

    def logical(self, name: str) -> Callable[[Env], torch.Tensor]:
        """Input ``name`` as a contiguous (logically ordered) tensor, for readers that reshape it: an NHWC 4-D
        value is copied to NCHW first (a launch of the copy kernel)."""
        x = self.value(name)
        if not (self.nhwc and self.graph.types[name].rank == 4 and name not in self.nchw):
            return x
        shape, dtype = self.graph.types[name].shape, self.dtype

        def read(env: Env) -> torch.Tensor:
            t = x(env)
            return t if t.is_contiguous() else k_concat.copy(t, torch.empty(shape, dtype=dtype, device=runtime.DEVICE))

        return read

    def gemm_config(self, m: int, n: int, c_per_g: int, kernel: tuple[int, int], stride: tuple[int, int],
                    padding: tuple[int, int], dilation: tuple[int, int], groups: int) -> k_gemm.GemmConfig:
        """The launch configuration of one channels-last GEMM: the tuned entry for this shape, else the default."""
        key = k_configs.layer_key(self.dtype_name, m, n, c_per_g, kernel, stride, padding, dilation, groups)
        tuned = self.table.get(key) if self.table is not None and not runtime.INTERPRET else None
        return tuned or k_gemm.default_config(m, n, c_per_g, kernel[0] * kernel[1], groups, self.sm_count)

    def step(self, output: str, kernel: str, run: Callable[[Env, torch.Tensor | None], torch.Tensor], text: str,
             covers: tuple[str, ...], split_k: int = 1) -> Step:
        """The step, writing into its slice of a concat's output where the layout placed ``output`` there."""
        into = self.layout.into.get(output)
        if into is not None:
            text += f"  → into {into[0]}[{into[1]}]"
        t = self.graph.types[output]
        alloc = t.shape if self.nhwc and t.rank == 4 and into is None and kernel not in ("view", "numpy") else None
        return Step(output, kernel, run, text, covers, into, alloc, split_k)

    def epilogue(self, node: Node) -> tuple[str, str | None, tuple[float, float]]:
        """(output name, activation, its (alpha, beta)) of ``node``'s launch, counting an absorbed activation."""
        act = self.activation_of.get(node.name)
        if act is None:
            return node.name, getattr(node.attrs, "activation", None), (0.0, math.inf)
        return act.name, act.op, scalars(act.attrs)

    def covers(self, output: str, head: str) -> tuple[str, ...]:
        """The original graph's nodes one launch computes (`plan.covers`)."""
        return covers(self.original, self.graph, output, head)

    # -- the walk -------------------------------------------------------------------------------------------
    def run(self) -> Plan:
        launched = [k for k, n in enumerate(self.graph.nodes)
                    if n.name not in self.absorbed and n.name not in self.int8_inputs]
        nodes = [self.graph.nodes[k] for k in launched]
        steps = tuple((_reference if n.name in self.fallback else int8_rule if n.name in self.int8
                       else LOWERINGS[n.op])(self, n) for n in nodes)  # int8: quant_rules' conv/linear kernels
        # The graph's liveness holds for the plan. An absorbed activation has no step: what the graph frees after
        # it is its producer's own output, which that launch never materialised (it writes the activation's).
        # Views share storage with what they view (a value written into a concat, a concat that is a view of
        # another), so releasing one name frees memory only with its last alias; and a view's owner is the
        # concat its inputs were placed into, the latest holding them: later in the schedule, so alive then.
        # An int8 conv's (linear's) absorbed dequantize never makes its output; the codes it read live until it.
        step_of = {n.name: k for k, n in enumerate(self.graph.nodes)}
        moved = {step_of[conv]: self.graph.frees[step_of[dq]] for dq, conv in self.int8_inputs.items()}
        frees = tuple(tuple(v for v in self.graph.frees[k] if v not in self.int8_inputs) + moved.get(k, ())
                      for k in launched)
        fmt = torch.channels_last if self.nhwc else torch.contiguous_format
        return Plan(steps, self.constants, self.dtype, self.graph.outputs, self.layout, frees, fmt)


# -- per-op lowerings -------------------------------------------------------------------------------------------
def _operands(lw: Lowering, node: Node, bias_default: bool):
    """A conv/linear node's weight, bias and residual names, whether weight and bias are parameters (packed
    once; else packed per call from activations) and, if not, how to read them."""
    a = node.attrs
    w, b = node.inputs[1], node.inputs[2] if getattr(a, "bias", bias_default) and len(node.inputs) > 2 else None
    residual = node.inputs[-1] if getattr(a, "residual", False) else None
    static = w in lw.graph.params and (b is None or b in lw.graph.params)
    return w, b, residual, static, (None, None) if static else (lw.value(w), lw.value(b) if b else None)


def _conv2d(lw: Lowering, node: Node) -> Step:
    a = node.attrs
    w, b, residual, static, (wv, bv) = _operands(lw, node, len(node.inputs) > 2)
    x = lw.value(node.inputs[0])
    # the channels-last GEMM where the input is NHWC; the NCHW kernel for the stem (the network's NCHW input)
    layout = "nhwc" if lw.nhwc and node.inputs[0] not in lw.nchw else "nchw"
    packed = k_conv.pack_weight(lw.tensor(w, torch.float32), lw.tensor(b, torch.float32) if b else None, a.groups,
                                lw.dtype, layout) if static else None
    rv = lw.value(residual, dense=layout == "nhwc") if residual else None
    output, act, (alpha, beta) = lw.epilogue(node)
    o, cg, kh, kw = lw.graph.types[w].shape
    _, _, oh, ow = lw.graph.types[node.name].shape
    config = lw.gemm_config(lw.graph.types[node.name].shape[0] * oh * ow, o // a.groups, cg, (kh, kw), a.stride,
                            a.padding, a.dilation, a.groups)

    def run(env: Env, out: torch.Tensor | None) -> torch.Tensor:
        weight = packed or k_conv.pack_weight(wv(env), bv(env) if bv else None, a.groups, lw.dtype, layout)
        return k_conv.conv2d(x(env), weight, stride=a.stride, padding=a.padding, dilation=a.dilation,
                             residual=rv(env) if rv else None, activation=act, alpha=alpha, beta=beta, out=out,
                             tf32=lw.tf32, config=config)

    head = weight_reader(lw.original, w)
    text = (f"{output}: conv2d {kh}×{kw}/s{_pair(a.stride)}/p{_pair(a.padding)}"
            + (f"/d{_pair(a.dilation)}" if a.dilation != (1, 1) else "")
            + (("/depthwise" if cg == 1 else f"/g{a.groups}") if a.groups > 1 else "")
            + f" {cg * a.groups}→{o}" + (" +bias" if b else "") + (f" +residual({residual})" if residual else "")
            + (f" {act}" if act else "") + f"  [{', '.join(lw.covers(output, head))}]")
    depthwise = cg == 1 and a.groups > 1  # the direct kernel: no GEMM, no split
    return lw.step(output, "conv2d", run, text, lw.covers(output, head), 1 if depthwise else config.split_k)


def _linear(lw: Lowering, node: Node) -> Step:
    w, b, residual, static, (wv, bv) = _operands(lw, node, True)
    x = lw.logical(node.inputs[0])
    wt = lw.tensor(w, torch.float32) if static else None
    if static and node.inputs[0] in lw.flatten_views:  # the input is the NHWC map flattened in (h, w, c) order
        _, c, h, wd = lw.graph.types[lw.graph.node_by_name[node.inputs[0]].inputs[0]].shape
        wt = wt.reshape(-1, c, h, wd).permute(0, 2, 3, 1).reshape(wt.shape[0], -1)
    packed = k_linear.pack_weight(wt, lw.tensor(b, torch.float32) if b else None, lw.dtype) if static else None
    rv = lw.logical(residual) if residual else None
    output, act, (alpha, beta) = lw.epilogue(node)
    n_out, n_in = lw.graph.types[w].shape
    out_shape = lw.graph.types[node.name].shape
    config = lw.gemm_config(int(np.prod(out_shape[:-1])), n_out, n_in, (1, 1), (1, 1), (0, 0), (1, 1), 1)

    def run(env: Env, out: torch.Tensor | None) -> torch.Tensor:
        weight = packed or k_linear.pack_weight(wv(env), bv(env) if bv else None, lw.dtype)
        return k_linear.linear(x(env), weight, residual=rv(env) if rv else None, activation=act, alpha=alpha,
                               beta=beta, out=out, tf32=lw.tf32, config=config)

    head = weight_reader(lw.original, w)
    text = (f"{output}: linear {n_in}→{n_out}" + (" +bias" if b else "")
            + (f" +residual({residual})" if residual else "") + (f" {act}" if act else "")
            + f"  [{', '.join(lw.covers(output, head))}]"
            + (f"  ({lw.notes[node.name]})" if node.name in lw.notes else ""))
    return lw.step(output, "linear", run, text, lw.covers(output, head), config.split_k)


def _batch_norm(lw: Lowering, node: Node) -> Step:
    stats = node.inputs[1:]
    if not all(s in lw.graph.params for s in stats):
        raise BackendError(f"triton backend: node {node.name!r} (batch_norm): its statistics must be parameters")
    scale, shift = scale_shift(node.attrs.eps, *(lw.params[s].astype(np.float64) for s in stats))
    scale_t = torch.from_numpy(scale.astype(np.float32)).to(runtime.DEVICE)
    shift_t = torch.from_numpy(shift.astype(np.float32)).to(runtime.DEVICE)
    x = lw.value(node.inputs[0], dense=True)
    output, act, (alpha, beta) = lw.epilogue(node)
    text = f"{output}: batch_norm as per-channel affine" + (f" {act}" if act else "")
    return lw.step(output, "channel_affine",
                   lambda env, out: k_elem.channel_affine(x(env), scale_t, shift_t, act, alpha, beta, out=out), text,
                   lw.covers(output, node.name))


def _add(lw: Lowering, node: Node) -> Step:
    xs = [lw.value(i, dense=True) for i in node.inputs]
    output, act, (alpha, beta) = lw.epilogue(node)
    return lw.step(output, "add", lambda env, out: k_elem.add(*(x(env) for x in xs), activation=act, alpha=alpha,
                                                              beta=beta, out=out),
                   f"{output}: add ×{len(xs)}" + (f" {act}" if act else ""), lw.covers(output, node.name))


def scalars(attrs: Any) -> tuple[float, float]:
    """An activation's attributes as the kernels' (alpha, beta) (kernels/triton/activations.py): leaky_relu's
    slope or elu's alpha; clip's min and max, ±inf where absent."""
    if isinstance(attrs, ClipAttrs):
        return (-math.inf if attrs.min is None else attrs.min, math.inf if attrs.max is None else attrs.max)
    return float(getattr(attrs, "negative_slope", getattr(attrs, "alpha", 0.0))), math.inf


def _activation(lw: Lowering, node: Node) -> Step:
    x = lw.value(node.inputs[0], dense=True)
    alpha, beta = scalars(node.attrs)
    return lw.step(node.name, node.op, lambda env, out: k_elem.activation(x(env), node.op, alpha, beta, out=out),
                   f"{node.name}: {node.op}", (node.name,))


def _mul(lw: Lowering, node: Node) -> Step:
    gate = lw.graph.types[node.inputs[1]].shape != lw.graph.types[node.name].shape
    x, y = lw.value(node.inputs[0], dense=True), (lw.logical if gate else partial(lw.value, dense=True))(node.inputs[1])
    return lw.step(node.name, "mul", lambda env, out: k_elem.mul(x(env), y(env), out=out),
                   f"{node.name}: mul" + (" by a per-channel gate" if gate else ""), (node.name,))


def _pad(lw: Lowering, node: Node) -> Step:
    x, a = lw.value(node.inputs[0]), node.attrs
    return lw.step(node.name, "pad", lambda env, out: k_pad.pad(x(env), a.pads, a.value, out=out),
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
    x, axis = lw.value(node.inputs[0], dense=True), node.attrs.axis
    return lw.step(node.name, "softmax", lambda env, out: k_softmax.softmax(x(env), axis, out=out),
                   f"{node.name}: softmax axis {axis}", (node.name,))


def _view(lw: Lowering, node: Node) -> Step:
    """flatten, reshape and dropout: no launch, a view of the input. Dropout keeps the layout; a reshape reads
    the logical (NCHW) order, so an NHWC map is copied to NCHW first, except a flatten into a linear whose
    weight was permuted to the map's (h, w, c) order (`Lowering.flatten_views`)."""
    shape = lw.graph.types[node.name].shape
    if node.name in lw.flatten_views:
        x = lw.value(node.inputs[0])
        return lw.step(node.name, "view", lambda env, out: x(env).permute(0, 2, 3, 1).reshape(shape),
                       f"{node.name}: {node.op} (an NHWC view, no launch; the linear's weight is permuted)",
                       (node.name,))
    same = node.op == "dropout" or shape == lw.graph.types[node.inputs[0]].shape
    x = lw.value(node.inputs[0]) if same else lw.logical(node.inputs[0])
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
        buffer = env[node.name] if node.name in env else torch.empty(
            shape, dtype=lw.dtype, device=runtime.DEVICE,
            memory_format=torch.channels_last if lw.nhwc and len(shape) == 4 else torch.contiguous_format)
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


def _pair(p: tuple[int, int]) -> str:
    return str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"


# The one list of what the backend runs (`TritonBackend.lowered_ops`); an op added to the IR needs a row here.
LOWERINGS: dict[str, Callable[[Lowering, Node], Step]] = {
    "conv2d": _conv2d, "fused_conv2d": _conv2d, "linear": _linear, "fused_linear": _linear,
    "batch_norm": _batch_norm, "add": _add, "max_pool2d": _pool, "avg_pool2d": _pool,
    "adaptive_avg_pool2d": _adaptive, "lrn": _lrn, "softmax": _softmax, "concat": _concat,
    "flatten": _view, "reshape": _view, "dropout": _view, "mul": _mul, "pad": _pad,
    **{op: _activation for op in KERNEL_ACTIVATIONS},  # what the kernels compute: an IR activation needs a branch
    **QUANT_RULES,  # quantize_linear, dequantize_linear (quant_rules.py)
}


def supported(node: Node) -> bool:
    # the table, narrowed where the kernels refuse an attribute: a fused node's activation they lack
    act = getattr(node.attrs, "activation", None)
    return node.op in LOWERINGS and (act is None or act in KERNEL_ACTIVATIONS)


def lower(graph: Graph, params: Mapping[str, np.ndarray], dtype: torch.dtype, tf32: bool,
          original: Graph | None = None, fallback: tuple[str, ...] = (),
          notes: Mapping[str, str] | None = None, layout: str = "nhwc",
          table: k_configs.ConfigTable | None = None, sm_count: int | None = None,
          int8: Mapping[str, Int8Conv] | None = None) -> Plan:
    """The launch plan of ``graph``; ``original`` (the graph before passes) names what each launch covers,
    ``fallback`` the nodes to run on the NumPy reference, ``notes`` what earlier rewrites did (for the plan),
    ``layout`` the activations' ("nhwc" or "nchw"), ``table`` tuned GEMM configurations, ``sm_count`` the SMs
    split-K plans for (default: the device's), ``int8`` the convs and linears to run as int8 kernels."""
    return Lowering(graph, params, dtype, tf32, original, fallback, notes, layout, table, sm_count, int8).run()
