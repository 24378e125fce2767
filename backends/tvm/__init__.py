"""The Apache TVM backend: lower the graph to Relax, compile it for the CPU (or a CUDA GPU), optionally tune it
with MetaSchedule, and run it on Relax's virtual machine. NumPy in, NumPy out.

TVM 0.27 alone legalizes each op into plain single-threaded loops on CPU (ResNet-50: seconds per image). Every
function that has no tuning record gets a hand-written schedule instead (``tvm.schedule``: a register-tiled
direct convolution and matmul with weights prepacked at compile time and the epilogue fused, parallel loops for
the rest), which puts an untuned compile near torch eager's speed. MetaSchedule tuning searches for better
schedules per function; it takes minutes per task, so the result is kept in a database (``tvm.database``):

- ``tune=True`` first measures the hand-written schedules, then tunes every task of the graph (``trials`` in
  total, default 64 per task) into ``tuning_db`` (default: a per-target, per-graph folder under
  ~/.cache/convbench/tvm) and compiles with it; per function the faster of the two, as measured, is used;
- ``tuning_db=PATH`` without ``tune`` compiles with that database;
- neither: the database shipped for this model and target (``backends/tvm/data/<target key>/<model>/``), if
  any, is used automatically; with none, or one for another target, the compile is untuned (hand-written
  schedules) and says so in ``exe.report.warnings``.

A database that is corrupt or tuned for another target never fails the compile: it gives a warning and an
untuned build. ``exe.report.details`` (`TvmDetails`) records the target, tuning time and trials, the database
hits (fused functions that got a database record, out of all of them: ``db_hits``/``db_tasks``, of which
``db_hand_hits`` were the hand-written schedule's record, measured faster than any tuned one: those run the
hand-written rule as it is now, not the record's trace of it) and ``hand_scheduled`` (functions without a tuned
record, per hand-written rule). The options are `TvmOptions`;
``fallback="numpy"`` makes unsupported nodes call back their NumPy reference from inside the compiled module.
``exe.artifact`` is the Relax VirtualMachine.

``supports`` answers from the lowering table (``tvm.lower.RULES``) without importing TVM, which takes seconds
and imports torch: only ``build`` does.
"""

from __future__ import annotations

import os
import time
import weakref
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from ...ir import ops
from ...ir.graph import Node
from ..base import BackendUnavailableError, Options, option
from ..template import Built, Prepared, TemplateBackend, int8_graph
from . import database, lower, precision, train
from .target import available as _available


@dataclass(frozen=True)
class TvmOptions(Options):
    device: Literal["cpu", "cuda", "auto"] = option(
        "cpu", "where it runs: the host CPU, a CUDA GPU, or 'auto' (the GPU when one is visible)")
    tune: bool = option(False, "tune every task with MetaSchedule into tuning_db before compiling (minutes a task)")
    trials: int | None = option(None, "tuning: total trials, shared by the tasks (None: trials_per_task × tasks)")
    trials_per_task: int | None = option(
        None, "tuning: the most trials a task gets (None: the total shared evenly, or 64 with neither given)")
    # (ruff cannot tell that a None default is immutable once the hint names a class it does not know)
    tuning_db: str | os.PathLike | None = option(  # noqa: RUF009
        None, "a MetaSchedule database folder to compile with (tune: to tune into; None: a per-graph cache folder)")
    use_shipped_db: bool = option(True, "without tuning_db, use the database shipped for the model and this target")
    hand_schedules: bool = option(
        True, "functions without a database record get the hand-written CPU schedules (False: TVM's plain loops)")
    bind_weights: bool = option(True, "weights as Relax constants, folded at compile time (False: VM arguments)")
    seed: int = option(0, "MetaSchedule's search seed")

    def __post_init__(self) -> None:
        for name in ("trials", "trials_per_task"):
            if (value := getattr(self, name)) is not None and value < 0:
                raise ValueError(f"option {name} must be ≥ 0, got {value}")
        if self.tuning_db is not None:  # a Path is accepted; the report keeps the JSON-friendly string
            object.__setattr__(self, "tuning_db", os.fspath(self.tuning_db))


@dataclass(frozen=True)
class TvmDetails:
    """What ``exe.report.details`` says about a TVM compile (the template's report has dtype, device, threads,
    compile_s, which includes tuning, and the warnings)."""

    target: dict[str, Any]  # the TVM target compiled for (LLVM's name for the host CPU, its physical cores)
    target_key: str  # the folder a shipped database for that target lives under
    tvm: str | None  # the apache-tvm version
    folded_batch_norms: int  # batch_norm nodes folded into the conv/linear before them while lowering
    db: str | None  # the tuning database applied (None: untuned)
    db_source: str | None  # "tuned", "given", "user" (convbench tune) or "shipped"
    db_hits: int  # fused TIR functions the database had a record for …
    db_tasks: int  # … out of all of them (what tuning works on)
    db_hand_hits: int  # of the hits, how many were the hand-written schedule's record (measured faster)
    hand_scheduled: dict[str, int]  # functions without a tuned record, per hand-written rule (tvm.schedule)
    db_tuning: dict[str, Any] | None  # what the database's tuning of this input shape cost (its manifest)
    build_s: float  # TVM's build alone: fusion, schedules, code generation
    tuning_s: float = 0.0  # this compile's tuning (tune=True)
    trials: int = 0  # candidates this compile's tuning measured
    seeded: int = 0  # hand-written schedules it measured into the database's hand/ folder first


class _Runner:
    """Calls the VM's ``main`` with NumPy arrays. It holds the VM (the executable's artifact), whose lifetime
    the reference callbacks of the fallback nodes are tied to."""

    def __init__(self, vm: Any, dev: Any, weights: list[Any], dtype: str, threads: int):
        self.vm, self.dev, self.weights, self.dtype, self.threads = vm, dev, weights, dtype, threads
        self.main = vm["main"]

    def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        import tvm

        from .target import use_threads

        use_threads(self.threads)  # the pool is process-wide: another executable may have changed it
        args = [tvm.runtime.tensor(np.ascontiguousarray(x, dtype=self.dtype), self.dev) for x in inputs]
        out = self.main(*args, *self.weights)
        outs = [out] if isinstance(out, tvm.runtime.Tensor) else list(out)  # a tuple comes back as an Array
        return [o.numpy() for o in outs]


class TvmBackend(TemplateBackend):
    name = "tvm"
    Options = TvmOptions
    # float16: mixed precision, int8: a QDQ graph's arithmetic (precision.py, which also says why not bfloat16)
    dtypes = ("float32", "float64", "float16", "int8")
    table = "backends/tvm/lower.py: RULES"
    gaps: ClassVar[dict[str, str]] = {}  # every registered op lowers: QDQ in quant.py, the train-step ops in train.py

    def available(self) -> tuple[bool, str]:
        return _available()

    def version(self) -> str:
        from .target import versions

        return versions()[0] or "not installed"

    def lowered_ops(self) -> frozenset[str]:
        return frozenset(lower.RULES) | train.train_ops()  # train steps: train.py (vjp through relax Gradient)

    def supports(self, node: Node) -> bool:
        if node.op not in self.lowered_ops():
            return False
        if node.op == "vjp":  # its forward op's Relax form must have a gradient (train.vjp_gap says why not)
            return train.vjp_gap(node) is None
        # a fused node's epilogue lowers its activation through that op's rule: it needs one
        activation = getattr(node.attrs, "activation", None) if ops.get(node.op).has("fused") else None
        return activation is None or activation in lower.activations()

    def param_dtype(self, options: TvmOptions) -> str:
        # BN folds in the compute dtype (a float64 compile folds in float64); int8 codes are exact in float32
        return "float32" if options.dtype == "int8" else options.dtype

    def build(self, prepared: Prepared) -> Built:
        import tvm
        from tvm import relax

        from . import compile as tvm_compile
        from . import tune as tvm_tune
        from .target import cuda_available, set_threads, target_dict, target_key, versions

        graph, opts = prepared.graph, prepared.options
        device = opts.device
        if device == "auto":
            device = "cuda" if cuda_available() else "cpu"
        elif device == "cuda" and not cuda_available():
            raise BackendUnavailableError("tvm backend: device='cuda' asked for, but no GPU is visible or this TVM "
                                          "build has no CUDA runtime")
        threads = set_threads(opts.threads)
        target = target_dict(device)
        compute = precision.compute_dtype(opts.dtype)  # float16 lowers at float32, then ToMixedPrecision
        quantized = int8_graph(self.name, graph, opts.dtype)  # codes and float ops in float32 (quant.py)
        if train.is_train_step(graph):  # differentiated by relax.transform.Gradient, untuned (train.py)
            return train.build(prepared, target, device, threads)
        lowered = lower.lower(graph, prepared.params, compute, opts.bind_weights, prepared.fallback_nodes)
        mod = precision.convert(lowered.mod, opts.dtype)
        chosen = database.choose(graph, target, opts.dtype, tune=opts.tune, path=opts.tuning_db,
                                 use_shipped=opts.use_shipped_db)
        opened, tuning = chosen.opened, {}
        if opts.tune:  # choose() has raised if the database cannot be tuned into
            stats = tvm_tune.tune(mod, target, opened.database, opened.path, trials=opts.trials,
                                  trials_per_task=opts.trials_per_task, seed=opts.seed,
                                  hand_database=opened.hand if opts.hand_schedules else None)
            tuning = {"tuning_s": stats["tuning_s"], "trials": stats["trials"], "seeded": stats.get("seeded", 0)}
            database.record_tuning(opened, graph, target, stats)
        build_start = time.perf_counter()
        try:
            built = tvm_compile.build(mod, target, opened.for_compile, opts.hand_schedules, opened.hand)
        except Exception as e:  # a record whose schedule no longer applies: TVM raises while applying it
            if opened.database is None:
                raise
            chosen.drop(f"compiling with tuning database {opened.path} failed ({type(e).__name__}: "
                        f"{_first_line(e)}); {tvm_tune.UNTUNED}")
            built = tvm_compile.build(mod, target, None, opts.hand_schedules)
        build_s = time.perf_counter() - build_start
        if chosen.db is not None and built.hits < built.tasks:
            chosen.warnings.append(f"tuning database {opened.path} has schedules for {built.hits} of the graph's "
                                   f"{built.tasks} fused functions; the rest run untuned")
        if built.stale_hand:
            chosen.warnings.append(f"tuning database {opened.path}: {built.stale_hand} of its hand-written schedules' "
                                   "records were measured with an older version of them (backends/tvm/schedule.py), "
                                   "so its tuned records were chosen against those times; tuning again (`convbench "
                                   "tune`) measures them again")
        dev = tvm.cuda(0) if device == "cuda" else tvm.cpu(0)
        vm = relax.VirtualMachine(built.executable, dev)
        if lowered.fallback_keys:  # the reference callbacks live as long as the VM that calls them
            weakref.finalize(vm, lower.release_fallbacks, lowered.fallback_keys)
        weights = [tvm.runtime.tensor(lowered.weight_values[k], dev) for k in lowered.weight_order]
        details = TvmDetails(
            target=target, target_key=target_key(target), tvm=versions()[0],
            folded_batch_norms=len(lowered.folded_bn), db=chosen.db, db_source=chosen.source, db_hits=built.hits,
            db_tasks=built.tasks, db_hand_hits=built.hand_hits, hand_scheduled=built.hand_scheduled,
            db_tuning=database.tuning_cost(chosen.db, graph) if chosen.db is not None else None, build_s=build_s,
            **tuning)
        return Built(_Runner(vm, dev, weights, compute, threads), artifact=vm, details=details, device=device,
                     threads=threads, accuracy_dtype="int8" if quantized else None,
                     warnings=chosen.warnings + precision.warnings(opts.dtype, device))


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""


BACKEND = TvmBackend()
