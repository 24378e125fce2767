"""Build a lowered Relax module for a target, applying a MetaSchedule database when there is one.

The pipeline is the one ``meta_schedule.relax_integration.compile_relax`` runs, spelled out so that the
database hits can be counted on the very functions that get compiled:

1. library dispatch, LegalizeOps, AnnotateTIROpPattern, FoldConstant, FuseOps, FuseTIR, then
   AttachAttrLayoutFreeBuffers: the weights (Relax constants) are marked layout-free, so a tuned schedule may
   also choose the weights' memory layout (MetaSchedule's RewriteLayout; TVM's "CPU weight prepack"). These
   are the functions tuning works on (`fuse`), so the tuned workloads' structural hashes match;
2. MetaScheduleApplyDatabase replaces each fused TIR function found in the database by its tuned schedule
   (`select_records`: where the best record is the hand-written schedule's own, the rule runs as it is now);
   the others get a hand-written schedule on CPU (``tvm.schedule``: register-tiled direct conv and matmul,
   parallel loops for the rest; TVM alone would run them as plain single-threaded loops) and DLight's generic
   rules on CUDA (which needs every loop bound to threads). SplitLayoutRewritePreproc then moves each weight
   re-layout, tuned or hand-written, into a function of its own, which FoldConstant runs once, at compile time,
   on the constant weights;
3. dataflow lowering and finalization for the VM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import tvm
from tvm import relax
from tvm.relax.backend.cpu_generic import pipeline as cpu_pipeline
from tvm.relax.backend.cuda import pipeline as cuda_pipeline
from tvm.s_tir import dlight
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.meta_schedule.tune_context import _normalize_mod  # how ApplyDatabase keys a function

from .schedule import HandWritten


@dataclass
class Built:
    executable: Any  # relax.VMExecutable
    tasks: int  # fused TIR functions: what tuning would work on
    hits: int  # of those, how many the database had a schedule for
    hand_scheduled: dict[str, int]  # of the rest, how many each hand-written rule scheduled (schedule.RULES)
    hand_hits: int = 0  # of the hits, how many were the hand-written schedule's measured record (it was faster)
    stale_hand: int = 0  # the database's hand-written records measured with an older rule (`is_current`)


def _passes(target: tvm.target.Target) -> Any:
    """The backend's pass lists (its module, not relax.pipeline, whose dispatcher misses an export in 0.27)."""
    return cuda_pipeline if target.kind.name == "cuda" else cpu_pipeline


def _fuse_passes(target: tvm.target.Target) -> list:
    return [*_passes(target).library_dispatch_passes(target),
            relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(),
            relax.transform.FoldConstant(), relax.transform.FuseOps(), relax.transform.FuseTIR(),
            relax.transform.AttachAttrLayoutFreeBuffers()]


def tir_functions(mod: tvm.IRModule) -> list[tuple[str, Any]]:
    return [(gv.name_hint, f) for gv, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]


@dataclass
class Selection:
    """What a compile takes from a database (`select_records`)."""

    replay: Any  # the records MetaScheduleApplyDatabase replays (a MemoryDatabase), None without a database
    hits: int  # fused TIR functions the database has a record for …
    tasks: int  # … out of all of them
    hand: int  # of the hits, how many are the hand-written schedule's own measured record (faster than tuned ones)
    stale: int = 0  # hand-written records that are not the trace of the rule as it is now (`is_current`)


def same_trace(a: Any, b: Any) -> bool:
    """Two schedules or tuning records are the same schedule: TVM's traces have no equality, their printed forms
    (the instructions with their decisions) do."""
    return str(a.trace) == str(b.trace)


def is_current(record: Any, mod: tvm.IRModule, target: tvm.target.Target) -> bool:
    """``record`` (a hand-written schedule's measured record) is the trace of the rule as it is now: the rule is
    deterministic, so a trace that differs was measured with an older rule, and the tuned records chosen against
    its time were chosen against the old rule."""
    sch = HandWritten().apply(mod["main"], target, False)
    return sch is not None and same_trace(sch, record)


def select_records(fused: tvm.IRModule, target: tvm.target.Target, database: Any,
                   hand_database: Any = None, rule_runs: bool = True) -> Selection:
    """The records the compile replays, and how many functions the database covers.

    A hand-written record is not replayed: its function is left to the hand-written rule (``tvm.schedule``) as
    it is now. The record is the trace of the rule as it was when the database was tuned, so replaying it would
    keep a database's users on the old rule after the rule improves (e.g. a conv's padding copy, since inlined).
    Hand-written records of an older rule are counted (``stale``): the compile warns that the database wants
    re-measuring. ``rule_runs=False`` (the hand-written schedules turned off): every record is replayed, the
    hand-written one too, since nothing else would schedule its function."""
    funcs = tir_functions(fused)
    if database is None:
        return Selection(None, 0, len(funcs), 0)
    replay = ms.database.MemoryDatabase()
    hits = hand = stale = 0
    for name, func in funcs:
        mod = _normalize_mod(func)
        record = database.query_tuning_record(mod, target, name)
        if record is None:
            continue
        hits += 1
        mine = hand_database.query_tuning_record(mod, target, name) if hand_database is not None else None
        stale += mine is not None and not is_current(mine, mod, target)
        if mine is not None and same_trace(mine, record):
            hand += 1
            if rule_runs:
                continue
        replay.commit_tuning_record(ms.database.TuningRecord(
            record.trace, replay.commit_workload(mod), record.run_secs, record.target, record.args_info))
    return Selection(replay, hits, len(funcs), hand, stale)


def build(mod: tvm.IRModule, target: dict[str, Any], database: Any = None, hand_schedules: bool = True,
          hand_database: Any = None) -> Built:
    """Compile ``mod`` for ``target`` (a target dict), with ``database`` (a MetaSchedule Database) or none;
    ``hand_schedules``: on CPU, functions without a database record get ``tvm.schedule``'s hand-written
    schedules instead of TVM's plain single-threaded loops; ``hand_database`` (the hand-written schedules'
    records, part of ``database``) only serves to count how many functions got those rather than tuned ones."""
    tgt = tvm.target.Target(target)
    hand = HandWritten()
    stats: dict[str, int] = {}
    is_gpu = relax.backend.utils.BackendDispatcher.is_gpu_target(tgt)

    @tvm.transform.module_pass(opt_level=0)
    def pipeline(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        with tgt:
            mod = tvm.transform.Sequential(_fuse_passes(tgt))(mod)
            chosen = select_records(mod, tgt, database, hand_database, rule_runs=not is_gpu and hand_schedules)
            stats.update(hits=chosen.hits, tasks=chosen.tasks, hand_hits=chosen.hand, stale_hand=chosen.stale)
            if chosen.replay is not None:
                with chosen.replay:
                    mod = relax.transform.MetaScheduleApplyDatabase()(mod)
            if not is_gpu and hand_schedules:  # the functions the database left unscheduled
                mod = dlight.ApplyDefaultSchedule(hand)(mod)
            mod = tvm.transform.Sequential([relax.transform.SplitLayoutRewritePreproc(),
                                            relax.transform.FoldConstant()])(mod)
            if is_gpu:
                mod = dlight.ApplyDefaultSchedule(dlight.gpu.Matmul(), dlight.gpu.GEMV(), dlight.gpu.Reduction(),
                                                  dlight.gpu.GeneralReduction(), dlight.gpu.Fallback())(mod)
            return tvm.transform.Sequential([*_passes(tgt).dataflow_lower_passes(tgt),
                                             *_passes(tgt).finalize_passes(tgt)])(mod)

    with tvm.transform.PassContext(opt_level=3):
        executable = tvm.compile(mod, target=tgt, relax_pipeline=pipeline)
    return Built(executable, stats["tasks"], stats["hits"], dict(hand.applied), stats["hand_hits"],
                 stats["stale_hand"])


def fuse(mod: tvm.IRModule, target: dict[str, Any]) -> tvm.IRModule:
    """Step 1 of the pipeline alone: the module whose TIR functions are the tuning tasks."""
    tgt = tvm.target.Target(target)
    with tgt, tvm.transform.PassContext(opt_level=3):
        return tvm.transform.Sequential(_fuse_passes(tgt))(mod)


def extract_tasks(mod: tvm.IRModule, target: dict[str, Any]) -> list:
    """MetaSchedule's tuning tasks: one per distinct fused TIR function, weighted by its call count.
    (MetaSchedule's extractor only collects TIR functions: it must see the module after fusion.)"""
    return ms.relax_integration.extract_tasks(fuse(mod, target), tvm.target.Target(target))
