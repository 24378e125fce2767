"""The TVM backend's train step: the step's forward lowered to Relax in train mode and differentiated by TVM's own
autodiff, ``relax.transform.Gradient``.

Why TVM's autodiff rather than lowering the IR's ``vjp`` nodes one by one: Relax registers a gradient
(``FPrimalGradient``) for the ops the forward lowers to, so ``Gradient`` builds the whole backward as Relax
bindings that FuseOps, the hand-written schedules and MetaSchedule then treat like the forward; a per-vjp lowering
would need a Relax rule per (op, input) — conv2d's data gradient as conv2d_transpose with output padding, max-pool's
argmax mask… — duplicating what TVM already has. The IR's per-op rules stay the oracle the result is checked
against (`convbench check --mode train -b tvm`).

The compile takes ``step.graph`` as every backend does. Its forward part (the nodes that are not ``vjp`` and read
no gradient) is lowered with `lower.RULES` plus `TRAIN_RULES`: the train-step ops, and train-mode forms of the ops
whose Relax op has no gradient in TVM 0.27 — ``batch_norm_train`` as mean/variance/normalise (``relax.nn.batch_norm``
has none), ``adaptive_avg_pool2d`` as ``mean`` (1×1) or ``avg_pool2d`` (an exact tiling), ``relu6``/``clip``/
``hardsigmoid``/``hardswish`` through maximum/minimum (``relax.clip`` has none), ``leaky_relu`` as ``where``, and
``max_pool2d`` padded so that TOPI's gradient of it reads no window past the output (`_max_pool2d`). The
trained parameters are the function's arguments ``Gradient`` differentiates by; its other parameters (BN buffers,
frozen weights) are constants. The backward nodes of ``step.graph`` are not lowered: the outputs they name are
``Gradient``'s, matched by `ir.autodiff.grad_name` (the names the step returns gradients under, which no pass
renames: they are graph outputs). What does not train is declared by `vjp_gap` (``TvmBackend.supports``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...ir import ops as ir_ops
from ...ir.autodiff import grad_name
from ...ir.graph import Graph, Node
from ...ir.ops.dropout_train import scaled_mask
from ..base import BackendError
from . import lower
from .lower import Expr, Unary, _hint, _Lowering, relax

# Relax ops (as the forward lowers them) without an FPrimalGradient in TVM 0.27, and no train-mode rewrite here.
NO_GRADIENT = {
    "pad": "relax.nn.pad has no gradient in TVM 0.27 (FPrimalGradient not registered)",
    "lrn": "its window sum is an avg_pool2d over a padded channel axis whose gradient TVM 0.27 lowers only for "
           "2-D spatial pools of NCHW layout: not verified for this view, so not offered",
    "batch_norm": "an inference batch_norm in a train step (train_step makes it batch_norm_train)",
}


def is_train_step(graph: Graph) -> bool:
    return any(n.op == "vjp" for n in graph.nodes)


def vjp_gap(node: Node, types: Mapping[str, Any] | None = None) -> str | None:
    """Why a ``vjp`` node of ``node.attrs.op`` cannot be trained by the TVM backend, or None if it can."""
    op, attrs = node.attrs.op, node.attrs.attrs
    if op in NO_GRADIENT:
        return NO_GRADIENT[op]
    if op == "max_pool2d" and tuple(attrs.dilation) != (1, 1):
        return ("max_pool2d with dilation: TOPI's pool_grad (relax.grad.max_pool2d_backward's legalization) has no "
                "dilation in TVM 0.27")
    if op == "adaptive_avg_pool2d":
        (h, w), out = node.attrs.shapes[0][2:], tuple(attrs.output_size)
        if h % out[0] or w % out[1]:
            return (f"adaptive_avg_pool2d {h}×{w} → {out[0]}×{out[1]} is no exact tiling: relax.nn."
                    "adaptive_avg_pool2d has no gradient in TVM 0.27 and no avg_pool2d equals it")
    return None


def _forward_nodes(graph: Graph) -> list[Node]:
    """The step's forward: the nodes that are not vjp nodes and read nothing the backward computed."""
    backward: set[str] = set()
    nodes = []
    for node in graph.nodes:
        if node.op == "vjp" or any(i in backward for i in node.inputs):
            backward.add(node.name)
        else:
            nodes.append(node)
    return nodes


def _reduce_axes(rank: int) -> list[int]:
    return [d for d in range(rank) if d != 1]  # BN's statistics: over every axis but the channel axis


def _channel(lo: _Lowering, expr: Expr, rank: int) -> Expr:
    return relax.op.reshape(expr, (1, -1) + (1,) * (rank - 2))


def _batch_norm_train(lo: _Lowering, node: Node) -> Expr:
    """(x − mean) / sqrt(var + eps) · γ + β with the batch's biased statistics (ir/ops/batch_norm_train.py)."""
    x = lo.arg(node.inputs[0])
    rank = lo.g.types[node.inputs[0]].rank
    axes = _reduce_axes(rank)
    mean = lo.bb.emit(relax.op.mean(x, axes, keepdims=True))
    var = lo.bb.emit(relax.op.variance(x, axes, keepdims=True))
    std = lo.bb.emit(relax.op.sqrt(relax.op.add(var, relax.const(node.attrs.eps, lo.dtype))))  # rsqrt: no gradient
    y = lo.bb.emit(relax.op.divide(relax.op.subtract(x, mean), std))
    y = lo.bb.emit(relax.op.multiply(y, _channel(lo, lo.arg(node.inputs[1]), rank)))
    return relax.op.add(y, _channel(lo, lo.arg(node.inputs[2]), rank))


def _running_stat(lo: _Lowering, node: Node) -> Expr:
    """(1 − momentum)·running + momentum·batch statistic (the variance unbiased: torch's update)."""
    x, running = lo.arg(node.inputs[0]), lo.arg(node.inputs[1])
    shape = lo.g.types[node.inputs[0]].shape
    axes = _reduce_axes(len(shape))
    if node.attrs.stat == "mean":
        batch = relax.op.mean(x, axes)
    else:
        n = int(np.prod([shape[d] for d in axes]))
        batch = relax.op.multiply(relax.op.variance(x, axes), relax.const(n / (n - 1), lo.dtype))
    m = node.attrs.momentum
    return relax.op.add(relax.op.multiply(running, relax.const(1 - m, lo.dtype)),
                        relax.op.multiply(lo.bb.emit(batch), relax.const(m, lo.dtype)))


def _dropout_train(lo: _Lowering, node: Node) -> Expr:
    """x · the IR's scaled mask, a constant (a function of seed and shape): the reference's mask bit for bit."""
    mask = scaled_mask(node.attrs, lo.g.types[node.name].shape, np.float64)
    return relax.op.multiply(lo.arg(node.inputs[0]), relax.const(mask.astype(lo.dtype), lo.dtype))


def _cross_entropy(lo: _Lowering, node: Node) -> Expr:
    """mean over the batch of −log softmax(z)[label], with label smoothing ε: (1 − ε)·nll − ε·mean_k log p."""
    logp = lo.bb.emit(relax.op.nn.log_softmax(lo.arg(node.inputs[0]), axis=1))
    nll = relax.op.nn.nll_loss(logp, lo.arg(node.inputs[1]), reduction="mean")
    eps = node.attrs.label_smoothing
    if not eps:
        return nll
    smooth = relax.op.multiply(relax.op.mean(logp), relax.const(eps, lo.dtype))
    return relax.op.subtract(relax.op.multiply(lo.bb.emit(nll), relax.const(1 - eps, lo.dtype)), smooth)


def _adaptive_avg_pool2d(lo: _Lowering, node: Node) -> Expr:
    """A mean over H, W (1×1) or an avg_pool2d with the tile as window and stride (an exact tiling): both have
    gradients, relax.nn.adaptive_avg_pool2d has none (`vjp_gap` refuses the rest)."""
    x = lo.arg(node.inputs[0])
    (h, w), (oh, ow) = lo.g.types[node.inputs[0]].shape[2:], tuple(node.attrs.output_size)
    if (oh, ow) == (1, 1):
        return relax.op.mean(x, [2, 3], keepdims=True)
    if h % oh or w % ow:
        raise BackendError(f"tvm backend: node {node.name!r}: adaptive_avg_pool2d {h}×{w} → {oh}×{ow} in a train "
                           f"step: no exact tiling (relax.nn.adaptive_avg_pool2d has no gradient)")
    return relax.op.nn.avg_pool2d(x, (h // oh, w // ow), (h // oh, w // ow))


def _covering_padding(size: int, out: int, k: int, s: int, before: int, after: int) -> tuple[int, int]:
    """(windows, bottom/right padding) so that every input row lies before the last window's start + s: TOPI's
    max-pool gradient reads window ``(i + pad_before) // s`` for input row i without checking it is < the output
    size (`_max_pool2d`)."""
    need = max(out, (size - 1 + before) // s + 1)
    return need, max(after, (need - 1) * s + k - size - before)


def _max_pool2d(lo: _Lowering, node: Node) -> Expr:
    """max_pool2d with enough extra bottom/right padding that Relax's gradient stays in bounds, cut back to the
    IR's output size by ``split`` (``strided_slice`` has no gradient in TVM 0.27; the cut windows get gradient 0).

    Why: TOPI's ``pool_grad_impl`` (include/tvm/topi/nn/pooling.h, the max branch, which
    ``relax.grad.max_pool2d_backward`` legalizes to) sums, for input position i, over the windows
    ``(i + pad_top) // stride − w`` bounded below only; its avg branch also checks ``< out_height``/``< out_width``.
    An input row or column past the last window's stride therefore reads the argmax and dY of a window beyond the
    output: flattened, the next output row's first window (or the next channel's, or past the buffer), so an input
    that is also that window's argmax gets its dY twice. It happens when the output is narrow: a 3×3/1 pad-1 pool
    on a map of width ≤ 2 (GoogLeNet's inception4a–5b branch pools at 32 px), a 3×3/2 pool to width 1. Padding the
    forward so that every such row has its window keeps every read in bounds; each extra window starts inside the
    input (`_covering_padding`), and they are cut off, so the forward values are the IR's."""
    a = node.attrs
    if tuple(a.dilation) != (1, 1):  # forward only: a dilated pool's vjp is refused (`vjp_gap`)
        return lower._max_pool2d(lo, node)
    x = lo.arg(node.inputs[0])
    top, left, bottom, right = lower._pool_padding(lo, node)
    (h, w), (oh, ow) = lo.g.types[node.inputs[0]].shape[2:], lo.g.types[node.name].shape[2:]
    nh, bottom = _covering_padding(h, oh, a.kernel_size[0], a.stride[0], top, bottom)
    nw, right = _covering_padding(w, ow, a.kernel_size[1], a.stride[1], left, right)
    y = relax.op.nn.max_pool2d(x, a.kernel_size, a.stride, (top, left, bottom, right), a.dilation, ceil_mode=False)
    for axis, (keep, windows) in ((2, (oh, nh)), (3, (ow, nw))):
        if windows > keep:
            y = relax.TupleGetItem(lo.bb.emit(relax.op.split(lo.bb.emit(y), [keep], axis)), 0)
    return y


def _clamp(lo: _Lowering, x: Expr, low: float | None, high: float | None) -> Expr:
    if low is not None:
        x = lo.bb.emit(relax.op.maximum(x, relax.const(low, lo.dtype)))
    return x if high is None else relax.op.minimum(x, relax.const(high, lo.dtype))


def _hard(lo: _Lowering, x: Expr, times_x: bool) -> Expr:
    """hardsigmoid relu6(x + 3) / 6 (hardswish: x · that, multiplied first as torch does), clamp by min/max."""
    shifted = lo.bb.emit(_clamp(lo, lo.bb.emit(relax.op.add(x, relax.const(3.0, lo.dtype))), 0.0, 6.0))
    return relax.op.divide(relax.op.multiply(x, shifted) if times_x else shifted, relax.const(6.0, lo.dtype))


TRAIN_RULES: dict[str, Callable[[_Lowering, Node], Expr]] = {
    "batch_norm_train": _batch_norm_train, "running_stat": _running_stat, "dropout_train": _dropout_train,
    "softmax_cross_entropy": _cross_entropy, "adaptive_avg_pool2d": _adaptive_avg_pool2d, "max_pool2d": _max_pool2d,
    "relu6": Unary(lambda lo, x, attrs: _clamp(lo, x, 0.0, 6.0)),
    "clip": Unary(lambda lo, x, attrs: _clamp(lo, x, attrs.min, attrs.max)),
    "hardsigmoid": Unary(lambda lo, x, attrs: _hard(lo, x, False)),
    "hardswish": Unary(lambda lo, x, attrs: _hard(lo, x, True)),
    "leaky_relu": Unary(lambda lo, x, attrs: relax.op.where(
        relax.op.greater(x, relax.const(0.0, lo.dtype)), x,
        relax.op.multiply(x, relax.const(attrs.negative_slope, lo.dtype)))),
}


def train_ops() -> frozenset[str]:
    """The train-step ops this module lowers (``vjp`` through Gradient): a function, the registry decides."""
    return frozenset(ir_ops.with_trait("training"))


@dataclass(frozen=True)
class LoweredStep:
    mod: Any  # IRModule with "main_adjoint": (inputs, labels, trained params) -> ((loss, buffers…), (grads…))
    trained: tuple[str, ...]  # the parameters differentiated by, in argument order
    weight_values: dict[str, np.ndarray]
    outputs: tuple[tuple[str, int], ...]  # per graph output: ("value", k) of the tuple, or ("grad", k)


class _TrainLowering(_Lowering):
    """`lower._Lowering` for a step's forward: trained parameters are function arguments (`arg`), integer
    inputs (labels) keep their dtype, the function returns (loss, next buffers…)."""

    def __init__(self, graph: Graph, params: Mapping[str, np.ndarray], dtype: str, trained: tuple[str, ...]):
        super().__init__(graph, {k: v for k, v in params.items() if k not in trained}, dtype, bind_weights=True)
        self.trained = trained

    def lower_step(self, nodes: list[Node], outputs: tuple[str, ...]) -> tuple[Any, list[Any]]:
        def var(name: str, t: Any) -> Any:
            return relax.Var(_hint(name), relax.TensorType(t.shape, t.dtype if t.dtype == "int64" else self.dtype))

        inputs = [var(n, t) for n, t in self.g.inputs.items()]
        grads = [var(p, self.g.params[p]) for p in self.trained]
        self.values.update(zip((*self.g.inputs, *self.trained), (*inputs, *grads), strict=True))
        rules = {**lower.RULES, **TRAIN_RULES}
        with self.bb.function("main", params=None, pure=True, private=False):
            with self.bb.dataflow():
                for node in nodes:
                    if node.op not in rules:
                        raise BackendError(f"tvm backend: node {node.name!r}: op {node.op!r} has no lowering")
                    expr = rules[node.op](self, node)
                    is_value = isinstance(expr, relax.Var)
                    self.values[node.name] = expr if is_value else self.bb.emit(expr, name_hint=_hint(node.name))
                # Gradient's target: the lone scalar, or the first of a tuple of vars (not a var bound to a tuple)
                outs = [self.bb.emit_output(self.values[o]) for o in outputs]
            self.bb.emit_func_output(outs[0] if len(outs) == 1 else relax.Tuple(outs), params=[*inputs, *grads])
        return self.bb.get(), grads

    def conv_weights(self, node: Node, bias: bool) -> tuple[Expr, Expr | None]:
        """A trained weight is an argument, read as the graph's other computed weights are (not folded: a
        train step has no inference BN to fold)."""
        linear = not ir_ops.get(node.op).has("window")
        w = self.arg(node.inputs[1])
        b = None if not bias else relax.op.reshape(self.arg(node.inputs[2]), (-1,) if linear else (1, -1, 1, 1))
        return (relax.op.permute_dims(w) if linear else w), b


def lower_step(graph: Graph, params: Mapping[str, np.ndarray], dtype: str) -> LoweredStep:
    """``graph`` (a train step) as a Relax module whose ``main_adjoint`` computes its outputs."""
    forward = _forward_nodes(graph)
    produced = {n.name for n in forward}
    by_grad = {grad_name(p): p for p in graph.params}
    trained = tuple(p for p in graph.params if grad_name(p) in graph.outputs)
    values = [o for o in graph.outputs if o in produced]
    layout: list[tuple[str, int]] = []
    for o in graph.outputs:
        if o in produced:
            layout.append(("value", values.index(o)))
        elif o in by_grad:
            layout.append(("grad", trained.index(by_grad[o])))
        else:
            raise BackendError(f"tvm backend: train step output {o!r} is neither a forward value nor a parameter's "
                               f"gradient ({grad_name('<param>')!r})")
    if not values or graph.outputs[0] != values[0] or graph.types[values[0]].numel != 1:
        raise BackendError(f"tvm backend: a train step's first output must be its scalar loss, got "
                           f"{graph.outputs[0]!r}")
    lowering = _TrainLowering(graph, params, dtype, trained)
    mod, grads = lowering.lower_step(forward, tuple(values))
    try:
        mod = relax.transform.Gradient("main", require_grads=grads, target_index=0)(mod)
    except Exception as e:  # an op whose Relax form has no FPrimalGradient (vjp_gap should have refused it)
        text = str(e).strip().splitlines()
        raise BackendError(f"tvm backend: relax.transform.Gradient failed on {graph.name!r}: "
                           f"{text[-1] if text else type(e).__name__}") from None
    mod = type(mod)({"main_adjoint": mod["main_adjoint"]})  # only the adjoint runs: do not compile main too
    weights = {p: np.ascontiguousarray(params[p], dtype=dtype) for p in trained}
    return LoweredStep(mod, trained, weights, tuple(layout))


class StepRunner:
    """Calls ``main_adjoint`` with NumPy arrays and returns the step graph's outputs in its order."""

    def __init__(self, vm: Any, dev: Any, step: LoweredStep, dtype: str, threads: int):
        import tvm

        self.vm, self.dev, self.step, self.dtype, self.threads = vm, dev, step, dtype, threads
        self.fn = vm["main_adjoint"]
        self.weights = [tvm.runtime.tensor(step.weight_values[p], dev) for p in step.trained]

    def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        import tvm

        from .target import use_threads

        use_threads(self.threads)
        args = [tvm.runtime.tensor(np.ascontiguousarray(x, dtype="int64" if np.asarray(x).dtype.kind in "iu"
                                                        else self.dtype), self.dev) for x in inputs]
        values, grads = self.fn(*args, *self.weights)
        values = [values] if isinstance(values, tvm.runtime.Tensor) else values  # the loss alone: no tuple
        parts = {"value": [v.numpy() for v in values], "grad": [g.numpy() for g in grads]}
        return [parts[kind][k] for kind, k in self.step.outputs]


def build(prepared: Any, target: dict[str, Any], device: str, threads: int) -> Any:
    """The template's ``build`` for a train step: lower, differentiate, compile (hand-written schedules where
    they apply, no tuning database: MetaSchedule records are keyed by the inference functions), the VM."""
    import time

    import tvm

    from ..template import Built
    from . import TvmDetails
    from . import compile as tvm_compile
    from .target import target_key, versions

    opts = prepared.options
    if opts.dtype not in ("float32", "float64"):
        raise BackendError(f"tvm backend: a train step runs in float32 or float64, not {opts.dtype!r} (mixed "
                           f"precision is lowered for inference only)")
    if opts.tune or opts.tuning_db is not None:
        raise BackendError("tvm backend: tune/tuning_db are not supported for a train step (its backward functions "
                           "have no tuning records); compile it untuned")
    step = lower_step(prepared.graph, prepared.params, opts.dtype)
    start = time.perf_counter()
    built = tvm_compile.build(step.mod, target, None, opts.hand_schedules)
    build_s = time.perf_counter() - start
    dev = tvm.cuda(0) if device == "cuda" else tvm.cpu(0)
    vm = relax.VirtualMachine(built.executable, dev)
    details = TvmDetails(target=target, target_key=target_key(target), tvm=versions()[0], folded_batch_norms=0,
                         db=None, db_source=None, db_hits=0, db_tasks=built.tasks, db_hand_hits=0,
                         hand_scheduled=built.hand_scheduled, db_tuning=None, build_s=build_s)
    return Built(StepRunner(vm, dev, step, opts.dtype, threads), artifact=vm, details=details, device=device,
                 threads=threads)
