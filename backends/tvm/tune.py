"""MetaSchedule tuning and tuning databases: open (checked), tune into, prune for shipping, find shipped ones.

A database is a directory holding MetaSchedule's two JSON-lines tables (``database_workload.json``,
``database_tuning_record.json``) and our ``manifest.json`` (target, TVM version, model, trials, tuning time,
how it was produced). Shipped databases live under ``backends/tvm/data/<target key>/<model>/``; the backend
uses one automatically when the compile target has the same key.

Nothing here crashes on a bad database: a missing or corrupt table, or a manifest for another target, comes
back as a warning, and the caller compiles untuned. The tables are parsed in Python first because TVM's
loader aborts the process on some malformed input instead of raising.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .target import import_tensor_intrin, target_key

DATA = Path(__file__).resolve().parent / "data"
WORKLOADS = "database_workload.json"
UNTUNED = "compiled untuned (hand-written schedules on CPU, see tvm.schedule)"  # how a warning ends
RECORDS = "database_tuning_record.json"
MANIFEST = "manifest.json"
TARGET_FIELDS = ("kind", "mcpu", "num-cores", "arch")  # what a tuned schedule's validity and speed depend on


HAND = "hand"  # subfolder: a database of the hand-written schedules' measured records (see seed_hand_schedules)
# The evolutionary search's population (MetaSchedule's default): it samples and evolves this many candidates per
# task and round through the cost model whatever the trials, the fixed part of a round (budget.FIXED_SHARE); a
# test that tunes a trial or two to check the workflow, not the search, makes it smaller.
POPULATION = 512


@dataclass
class OpenedDatabase:
    database: Any | None  # tvm.s_tir.meta_schedule.Database, or None when unusable
    path: Path | None
    manifest: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    hand: Any | None = None  # the hand-written schedules' records, kept apart: the search must not replay them

    @property
    def for_compile(self) -> Any | None:
        """What a compile queries: per workload, the faster of the tuned and the hand-written record."""
        if self.database is None or self.hand is None or len(self.hand) == 0:
            return self.database
        from tvm.s_tir import meta_schedule as ms

        return ms.database.UnionDatabase(self.database, self.hand)


def shipped_path(target: dict[str, Any], model: str) -> Path:
    return DATA / target_key(target) / model


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


def target_mismatch(manifest: dict[str, Any], target: dict[str, Any]) -> str | None:
    """Why a database tuned for ``manifest["target"]`` does not fit ``target``, or None."""
    tuned = manifest.get("target")
    if not isinstance(tuned, dict):
        return None
    diffs = [f"{k} {tuned.get(k)!r} ≠ {target.get(k)!r}" for k in TARGET_FIELDS if tuned.get(k) != target.get(k)]
    return "; ".join(diffs) or None


def check_tables(path: Path) -> str | None:
    """Why the two JSON-lines tables at ``path`` cannot be loaded, or None.

    A workload line is ``[structural hash (str), module (JSON)]``; a record line is ``[workload index (int),
    record (list)]`` whose index must name a workload line.
    """
    tables = {}
    for name in (WORKLOADS, RECORDS):
        try:
            text = (path / name).read_text()
        except OSError as e:
            return f"cannot read {path / name}: {e.strerror or e}"
        rows = []
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError as e:
                return f"{path / name} line {i} is not JSON ({e.msg})"
        tables[name] = rows
    for i, row in enumerate(tables[WORKLOADS], 1):
        if not (isinstance(row, list) and len(row) == 2 and isinstance(row[0], str)):
            return f"{path / WORKLOADS} line {i} is not a [hash, module] pair"
    n = len(tables[WORKLOADS])
    for i, row in enumerate(tables[RECORDS], 1):
        if not (isinstance(row, list) and len(row) == 2 and isinstance(row[0], int) and 0 <= row[0] < n
                and isinstance(row[1], list)):
            return f"{path / RECORDS} line {i} is not a [workload index < {n}, record] pair"
    return None


def open_database(path: str | Path, target: dict[str, Any], *, create: bool = False) -> OpenedDatabase:
    """Open the database at ``path`` for ``target``; problems become warnings and ``database=None``.

    ``create=True`` (tuning) makes the directory and empty tables when they are missing. The hand-written
    schedules' records, in the subfolder ``hand/`` when there is one, open as ``hand``.
    """
    path = Path(path)
    opened = OpenedDatabase(None, path, read_manifest(path))
    if create:
        path.mkdir(parents=True, exist_ok=True)
        for name in (WORKLOADS, RECORDS):
            (path / name).touch()
    if why := target_mismatch(opened.manifest, target):
        opened.warnings.append(f"tuning database {path} was tuned for another target ({why}); {UNTUNED}")
        return opened
    if why := check_tables(path):
        opened.warnings.append(f"tuning database {path} is unusable ({why}); {UNTUNED}")
        return opened
    opened.database, why = _load(path)
    if why:
        opened.warnings.append(f"tuning database {path} failed to load ({why}); {UNTUNED}")
        return opened
    hand = path / HAND
    if create:
        hand.mkdir(exist_ok=True)
        for name in (WORKLOADS, RECORDS):
            (hand / name).touch()
    if hand.is_dir():
        opened.hand, why = _load(hand) if (why := check_tables(hand)) is None else (None, why)
        if why:
            opened.warnings.append(f"the hand-written schedules' records in {hand} are unusable ({why}); ignored")
    return opened


def _load(path: Path) -> tuple[Any | None, str | None]:
    from tvm.s_tir import meta_schedule as ms

    try:
        return ms.database.JSONDatabase(work_dir=str(path), allow_missing=False), None
    except Exception as e:  # TVM raises its own error types for content it cannot parse
        return None, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def tune(mod: Any, target: dict[str, Any], database: Any, work_dir: Path, *, trials: int | None = None,
         trials_per_task: int | None = None, trials_per_iter: int = 64, seed: int = 0,
         build_timeout_s: float = 120.0, run_timeout_s: float = 60.0, hand_database: Any = None) -> dict[str, Any]:
    """Tune every task of ``mod`` with MetaSchedule into ``database``; returns what was spent.

    ``trials`` is the total budget (default 64 per task); ``trials_per_task`` caps each task (default: the
    budget shared evenly, rounded up), so the gradient scheduler cannot leave a task untuned. Each search
    round measures ``trials_per_iter`` candidates per task and then retrains the cost model.
    The measurement workers inherit TVM_NUM_THREADS (set it first), so they measure at the run's threads.
    ``hand_database``: first measure the hand-written schedules into it (``seed_hand_schedules``; not counted
    in ``trials``), so that a compile with both databases never picks a tuned record slower than them.
    """
    from tvm.s_tir import meta_schedule as ms

    from .compile import extract_tasks

    import_tensor_intrin()
    start = time.perf_counter()
    tasks = extract_tasks(mod, target)
    if not tasks:
        return {"tasks": 0, "trials": 0, "tuning_s": 0.0}
    per_task = trials_per_task if trials_per_task is not None else (math.ceil(trials / len(tasks)) if trials else 64)
    total = trials or per_task * len(tasks)
    _drop_unnamed_log_handlers()
    strategy = ms.search_strategy.EvolutionarySearch(population_size=POPULATION,
                                                     init_min_unmeasured=min(50, POPULATION))
    contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(tasks, str(work_dir),
                                                                              strategy=strategy, seed=seed)
    builder, runner = _workers(build_timeout_s, run_timeout_s)
    seeded = 0 if hand_database is None else seed_hand_schedules(contexts, target, hand_database, builder, runner)
    before = len(database)
    if per_task == 0:  # measure the hand-written schedules only
        return {"tasks": len(tasks), "trials": 0, "trials_per_task": 0, "seeded": seeded,
                "tuning_s": time.perf_counter() - start}
    ms.tune.tune_tasks(
        tasks=contexts, task_weights=weights, work_dir=str(work_dir), max_trials_global=total,
        max_trials_per_task=per_task, num_trials_per_iter=min(trials_per_iter, per_task),
        builder=builder, runner=runner, database=database, cost_model="xgb", task_scheduler="gradient",
    )
    return {"tasks": len(tasks), "trials": len(database) - before, "trials_per_task": per_task,
            "seeded": seeded, "tuning_s": time.perf_counter() - start}


def _drop_unnamed_log_handlers() -> None:
    """MetaSchedule's logging set-up re-lists the handlers already on its logger by name, and fails (AttributeError
    inside logging.py) on one without a name, which a second tuning run in the same process can meet (seen under
    pytest). Such a handler is not MetaSchedule's own: drop it before the set-up runs."""
    logger = logging.getLogger("tvm.s_tir.meta_schedule")
    for handler in [h for h in logger.handlers if h.get_name() is None]:
        logger.removeHandler(handler)


def _workers(build_timeout_s: float = 120.0, run_timeout_s: float = 60.0) -> tuple[Any, Any]:
    """MetaSchedule's local builder and runner. Workers are fresh processes: give them the fast tensor_intrin
    import and room for LLVM on 2 cores."""
    from tvm.s_tir import meta_schedule as ms

    return (ms.builder.LocalBuilder(timeout_sec=build_timeout_s, initializer=import_tensor_intrin),
            ms.runner.LocalRunner(timeout_sec=run_timeout_s, initializer=import_tensor_intrin))


def _measure(schedules: list, tgt: Any, builder: Any, runner: Any) -> list[tuple[list[float] | None, list]]:
    """Build and run each schedule the way MetaSchedule measures a candidate (weights already in the layout the
    schedule rewrites them to); per schedule, (run seconds or None where building or running failed, args_info)."""
    from tvm.s_tir import meta_schedule as ms

    args = [ms.arg_info.ArgInfo.from_entry_func(sch.mod, remove_preproc=True) for sch in schedules]
    built = builder.build([ms.builder.BuilderInput(sch.mod, tgt) for sch in schedules])
    ok = [i for i, b in enumerate(built) if b.error_msg is None]
    futures = runner.run([ms.runner.RunnerInput(built[i].artifact_path, "cpu", args[i]) for i in ok])
    times: list[list[float] | None] = [None] * len(schedules)
    for i, future in zip(ok, futures, strict=True):
        result = future.result()
        if result.error_msg is None and result.run_secs:
            times[i] = [float(t) for t in result.run_secs]
    return list(zip(times, args, strict=True))


def seed_hand_schedules(contexts: list, target: dict[str, Any], database: Any, builder: Any, runner: Any) -> int:
    """Measure the hand-written schedule of every task it applies to (``tvm.schedule``), with the tuner's own
    builder and runner, and commit it as a tuning record into ``database``: a database of its own, queried with
    the tuned one through a UnionDatabase (the faster record wins), because MetaSchedule's search replays the
    records of the database it tunes into, and its layout-rewrite postprocessor fails on a trace that has
    already rewritten the weights. A workload whose best record is the rule as it is now is left alone; one
    measured with an older rule is measured again (the database keeps both; the faster answers, which is the
    new one unless the rule got slower on that workload).
    Returns the records committed."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from .compile import same_trace
    from .schedule import HandWritten

    tgt = tvm.target.Target(target)
    rule, candidates = HandWritten(), []
    for ctx in contexts:
        workload = database.commit_workload(ctx.mod)
        sch = rule.apply(ctx.mod["main"], tgt, False)
        best = database.get_top_k(workload, 1)
        if sch is not None and not (best and same_trace(best[0], sch)):  # none, or an older rule's
            candidates.append((workload, sch))
    committed = 0
    measured = _measure([sch for _, sch in candidates], tgt, builder, runner) if candidates else []
    for (workload, sch), (run_secs, args_info) in zip(candidates, measured, strict=True):
        if run_secs:
            database.commit_tuning_record(ms.database.TuningRecord(sch.trace, workload, run_secs, tgt, args_info))
            committed += 1
    return committed


def seed(mod: Any, target: dict[str, Any], database: Any, work_dir: Path) -> int:
    """`seed_hand_schedules` for every task of ``mod``, outside a tuning run (the tuning-curve study)."""
    from tvm.s_tir import meta_schedule as ms

    from .compile import extract_tasks

    import_tensor_intrin()
    _drop_unnamed_log_handlers()
    contexts, _ = ms.relax_integration.extracted_tasks_to_tune_contexts(extract_tasks(mod, target), str(work_dir))
    return seed_hand_schedules(contexts, target, database, *_workers())


def prune(src: Any, dst_dir: Path, hand: Any = None, target: dict[str, Any] | None = None) -> Any:
    """Add the best record of every workload of database ``src`` to the database at ``dst_dir`` (created when
    missing), and those of ``hand`` to its ``hand/``: what gets shipped, a few KB per task instead of every
    measured candidate.

    With ``target``, each workload's best tuned record and its hand-written record are measured again, back to
    back, and shipped with those times. Each was first measured during its own run, under whatever else the
    machine was doing then, and the compile's union of the two databases picks the faster by these numbers.
    """
    from tvm.s_tir import meta_schedule as ms

    dsts = []
    for source, folder in ((src, dst_dir), (hand, dst_dir / HAND)):
        if source is None:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        for name in (WORKLOADS, RECORDS):
            (folder / name).touch()
        dsts.append((source, ms.database.JSONDatabase(work_dir=str(folder), allow_missing=False)))
    if target is None:
        for source, dst in dsts:
            source.dump_pruned(dst)
    else:
        _remeasure(dsts, target)
    return ms.database.JSONDatabase(work_dir=str(dst_dir), allow_missing=False)


def _remeasure(pairs: list[tuple[Any, Any]], target: dict[str, Any]) -> None:
    """Measure the best record per workload of every (source, destination) database pair, a workload's records
    back to back, and commit them to the destinations with the new times."""
    import tvm
    import tvm_ffi
    from tvm import s_tir
    from tvm.s_tir import meta_schedule as ms

    tgt = tvm.target.Target(target)
    best: dict[int, list[tuple[Any, Any]]] = {}  # workload hash -> [(destination, record)]
    for source, dst in pairs:
        seen = set()
        for record in source.get_all_tuning_records():
            key = tvm_ffi.structural_hash(record.workload.mod)
            if key not in seen:
                seen.add(key)
                top = source.get_top_k(record.workload, 1)
                if top:
                    best.setdefault(key, []).append((dst, top[0]))
    jobs = []
    for entries in best.values():
        for dst, record in entries:
            sch = s_tir.Schedule(record.workload.mod)
            record.trace.apply_to_schedule(sch, remove_postproc=False)
            jobs.append((dst, record, sch))
    measured = _measure([sch for _, _, sch in jobs], tgt, *_workers())
    for (dst, record, _), (run_secs, _) in zip(jobs, measured, strict=True):
        # A record that failed to build or run again keeps its first time.
        dst.commit_tuning_record(ms.database.TuningRecord(
            record.trace, dst.commit_workload(record.workload.mod),
            run_secs or [float(t) for t in record.run_secs], tgt, record.args_info))


def record_workload(path: Path, target: dict[str, Any], model: str, input_shape: list[list[int]],
                    accumulate: bool = True, **stats: Any) -> dict[str, Any]:
    """Record in the manifest at ``path`` what was tuned for one input shape (``stats``: trials, tuning_s …).

    With ``accumulate``, trials, trials_per_task and tuning_s add to an earlier entry for the same shape (tuning
    more into an existing database); otherwise the entry is replaced.
    """
    from .target import versions

    manifest = read_manifest(path)
    manifest.update(target=target, tvm=versions()[0], model=model)
    entries = [w for w in manifest.get("workloads", []) if w.get("input_shape") != input_shape]
    old = next((w for w in manifest.get("workloads", []) if w.get("input_shape") == input_shape), {})
    entry = {**old, **stats, "input_shape": input_shape}
    if accumulate:
        for key in ("trials", "trials_per_task", "tuning_s"):
            if key in stats:
                entry[key] = round(old.get(key, 0) + stats[key], 1)
    manifest["workloads"] = [*entries, entry]
    (path / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest
