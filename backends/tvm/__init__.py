"""The Apache TVM backend: lower the graph to Relax, compile it for the CPU (or a CUDA GPU), optionally tune it
with MetaSchedule, and run it on Relax's virtual machine. NumPy in, NumPy out.

TVM 0.27 alone legalizes each op into plain single-threaded loops on CPU (ResNet-50: seconds per image). Every
function that has no tuning record gets a hand-written schedule instead (``tvm.schedule``: a register-tiled
direct convolution and matmul with weights prepacked at compile time and the epilogue fused, parallel loops for
the rest), which puts an untuned compile near torch eager's speed. MetaSchedule tuning searches for better
schedules per function; it takes minutes per task, so the result is kept in a database:

- ``tune=True`` first measures the hand-written schedules, then tunes every task of the graph (``trials`` in
  total, default 64 per task) into ``tuning_db`` (default: a per-target, per-graph folder under
  ~/.cache/convbench/tvm) and compiles with it; per function the faster of the two, as measured, is used;
- ``tuning_db=PATH`` without ``tune`` compiles with that database;
- neither: the database shipped for this model and target (``backends/tvm/data/<target key>/<model>/``), if
  any, is used automatically; with none, or one for another target, the compile is untuned (hand-written
  schedules) and says so in ``exe.info["warnings"]``.

A database that is corrupt or tuned for another target never fails the compile: it gives a warning and an
untuned build. ``exe.info`` records the target, threads, compile and tuning time, trials, the database hits
(fused functions that got a database record, out of all of them: ``db_hits``/``db_tasks``, of which
``db_hand_hits`` were the hand-written schedule's record, measured faster than any tuned one) and
``hand_scheduled`` (functions without a record, per hand-written rule).

Options: ``dtype`` ("float32", "float64"), ``threads`` (TVM's CPU thread pool), ``device`` ("cpu", "cuda",
"auto"), ``tune``, ``trials``, ``trials_per_task``, ``tuning_db``, ``use_shipped_db`` (default True),
``hand_schedules`` (default True; False leaves untuned functions as TVM's plain loops), ``bind_weights``
(weights as constants, default True, or as VM arguments), ``passes`` (a pipeline of ``convbench.ir.passes``
run first; "none" by default, since TVM fuses and folds on its own), ``fallback="numpy"`` (unsupported nodes
call back their NumPy reference from inside the compiled module; ``exe.fallback_nodes``).
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ...ir.graph import Graph, Node
from ...ir.passes import run_pipeline
from ...ir.verify import verify
from ..base import BackendError, BackendUnavailableError, Executable, check_supported
from ..template import cast_params
from .target import available as _available

SUPPORTED_OPS = frozenset({
    "conv2d", "fused_conv2d", "linear", "fused_linear", "batch_norm", "max_pool2d", "avg_pool2d",
    "adaptive_avg_pool2d", "lrn", "relu", "relu6", "leaky_relu", "elu", "sigmoid", "tanh", "softmax", "add",
    "concat", "flatten", "dropout",
})  # the keys of tvm.lower.RULES, listed here so supports() does not import TVM
OPTIONS = frozenset({"dtype", "threads", "device", "tune", "trials", "trials_per_task", "tuning_db",
                     "use_shipped_db", "hand_schedules", "bind_weights", "fallback", "passes", "seed"})
DEVICES = ("cpu", "cuda", "auto")


class TvmBackend:
    name = "tvm"
    dtypes = ("float32", "float64")

    def available(self) -> tuple[bool, str]:
        return _available()

    def version(self) -> str:
        from .target import versions

        return versions()[0] or "not installed"

    def device(self) -> str:
        return "cpu"

    def supports(self, node: Node) -> bool:
        return node.op in SUPPORTED_OPS

    def compile(self, graph: Graph, params: Mapping[str, np.ndarray], dtype: str = "float32",
                **options: Any) -> Executable:
        unknown = set(options) - OPTIONS
        if unknown:
            raise BackendError(f"tvm backend: unknown option(s) {sorted(unknown)}; known: {sorted(OPTIONS)}")
        if dtype not in self.dtypes:
            raise BackendError(f"tvm backend: dtype {dtype!r} is not supported; use one of {self.dtypes}")
        device = options.get("device", "cpu")
        if device not in DEVICES:
            raise BackendError(f"tvm backend: device must be one of {DEVICES}, got {device!r}")
        ok, why = self.available()
        if not ok:
            raise BackendUnavailableError(f"tvm backend: {why}")
        pipeline = run_pipeline(graph, params, options.get("passes"), self.supports)
        graph = pipeline.graph
        fallback = check_supported(self, graph, options.get("fallback"))
        verify(graph)
        exe = _compile(graph, cast_params(graph, pipeline.params, dtype), dtype, device, fallback, options)
        exe.info.update(passes=pipeline.pipeline, pipeline=pipeline.describe())
        return exe


def _compile(graph: Graph, params: dict[str, np.ndarray], dtype: str, device: str, fallback: tuple[str, ...],
             options: Mapping[str, Any]) -> Executable:
    import tvm
    from tvm import relax

    from . import compile as tvm_compile
    from . import lower as tvm_lower
    from . import tune as tvm_tune
    from .target import cuda_available, set_threads, target_dict, target_key, use_threads, versions

    if device == "auto":
        device = "cuda" if cuda_available() else "cpu"
    elif device == "cuda" and not cuda_available():
        raise BackendUnavailableError("tvm backend: device='cuda' asked for, but no GPU is visible or this TVM "
                                      "build has no CUDA runtime")
    start = time.perf_counter()
    threads = set_threads(options.get("threads"))
    target = target_dict(device)
    info: dict[str, Any] = {"dtype": dtype, "device": device, "target": target, "target_key": target_key(target),
                            "threads": threads, "tvm": versions()[0], "tuning_s": 0.0, "trials": 0, "warnings": []}
    lowered = tvm_lower.lower(graph, params, dtype, options.get("bind_weights", True), fallback)
    info["folded_batch_norms"] = len(lowered.folded_bn)
    opened = _database(graph, target, dtype, options, info)
    hand = options.get("hand_schedules", True)
    if options.get("tune") and opened.database is not None:
        stats = tvm_tune.tune(lowered.mod, target, opened.database, opened.path, trials=options.get("trials"),
                              trials_per_task=options.get("trials_per_task"), seed=options.get("seed", 0),
                              hand_database=opened.hand if hand else None)
        info.update(tuning_s=stats["tuning_s"], trials=stats["trials"], seeded=stats.get("seeded", 0))
        _record_tuning(opened, graph, target, stats)
    compile_start = time.perf_counter()
    try:
        built = tvm_compile.build(lowered.mod, target, opened.for_compile, hand, opened.hand)
    except Exception as e:  # a record whose schedule no longer applies: TVM raises while applying it
        if opened.database is None:
            raise
        info["warnings"].append(f"compiling with tuning database {opened.path} failed ({type(e).__name__}: "
                                f"{_first_line(e)}); {tvm_tune.UNTUNED}")
        info.update(db=None, db_source=None)
        built = tvm_compile.build(lowered.mod, target, None, hand)
    info.update(db_hits=built.hits, db_tasks=built.tasks, db_hand_hits=built.hand_hits,
                hand_scheduled=built.hand_scheduled,
                build_s=time.perf_counter() - compile_start)
    if info["db"] is not None:  # what the database's tuning of this input shape cost, from its manifest
        shape = _input_shape(graph)
        entry = next((w for w in tvm_tune.read_manifest(opened.path).get("workloads", [])
                      if w.get("input_shape") == shape), {})
        info["db_tuning"] = {k: entry.get(k) for k in ("trials", "trials_per_task", "tuning_s")} if entry else None
    if info["db"] is not None and built.hits < built.tasks:
        info["warnings"].append(f"tuning database {opened.path} has schedules for {built.hits} of the graph's "
                                f"{built.tasks} fused functions; the rest run untuned")
    dev = tvm.cuda(0) if device == "cuda" else tvm.cpu(0)
    vm = relax.VirtualMachine(built.executable, dev)
    main = vm["main"]
    weights = [tvm.runtime.tensor(lowered.weight_values[k], dev) for k in lowered.weight_order]
    info["compile_s"] = time.perf_counter() - start  # includes tuning when it ran

    def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
        use_threads(threads)  # the pool is process-wide: another executable may have changed it
        args = [tvm.runtime.tensor(np.ascontiguousarray(x, dtype=dtype), dev) for x in inputs]
        out = main(*args, *weights)
        outs = [out] if isinstance(out, tvm.runtime.Tensor) else list(out)  # a tuple comes back as an Array
        return [o.numpy() for o in outs]

    exe = Executable(graph, "tvm", run, info, fallback)
    if lowered.fallback_keys:  # the reference callbacks live as long as the executable
        weakref.finalize(exe, tvm_lower.release_fallbacks, lowered.fallback_keys)
    return exe


def _database(graph: Graph, target: dict[str, Any], dtype: str, options: Mapping[str, Any],
              info: dict[str, Any]) -> Any:
    """Open the database this compile should use (tune: create it) and record which in ``info``."""
    from . import tune as tvm_tune
    from .target import target_key

    path = options.get("tuning_db")
    if options.get("tune"):
        if path is None:
            cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "convbench" / "tvm"
            path = cache / target_key(target) / _workload_name(graph, dtype)
        opened = tvm_tune.open_database(path, target, create=True)
        if opened.database is None:
            raise BackendError(f"tvm backend: cannot tune into {path}: {'; '.join(opened.warnings)}")
        info.update(db=str(path), db_source="tuned")
        return opened
    if path is not None:
        opened = tvm_tune.open_database(path, target)
        source = "given"
    else:
        shipped = tvm_tune.shipped_path(target, graph.name)
        if not options.get("use_shipped_db", True) or not shipped.is_dir():
            if options.get("use_shipped_db", True):
                info["warnings"].append(f"no tuning database shipped for {graph.name} on {target_key(target)}; "
                                        f"{tvm_tune.UNTUNED}")
            info.update(db=None, db_source=None)
            return tvm_tune.OpenedDatabase(None, None)
        opened = tvm_tune.open_database(shipped, target)
        source = "shipped"
    info["warnings"].extend(opened.warnings)
    info.update(db=str(opened.path) if opened.database is not None else None,
                db_source=source if opened.database is not None else None)
    return opened


def _record_tuning(opened: Any, graph: Graph, target: dict[str, Any], stats: dict[str, Any]) -> None:
    from . import tune as tvm_tune

    tvm_tune.record_workload(opened.path, target, graph.name, _input_shape(graph), tasks=stats["tasks"],
                             trials=stats["trials"], tuning_s=stats["tuning_s"],
                             threads=int(os.environ.get("TVM_NUM_THREADS", "0")) or None)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""


def _input_shape(graph: Graph) -> list[list[int]]:
    return [list(t.shape) for t in graph.inputs.values()]


def _workload_name(graph: Graph, dtype: str) -> str:
    shape = "x".join("x".join(map(str, t.shape)) for t in graph.inputs.values())
    return f"{graph.name}-{shape}" + ("" if dtype == "float32" else f"-{dtype}")


BACKEND = TvmBackend()
