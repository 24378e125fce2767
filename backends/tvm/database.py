"""Which MetaSchedule database a TVM compile uses, and what the compile records about it.

In order: ``tune=True`` tunes into ``tuning_db`` (default: a per-target, per-graph folder under
``~/.cache/convbench/tvm``), created when missing; ``tuning_db`` alone is used as given; otherwise, unless
``use_shipped_db=False``, the database ``convbench tune`` made for the graph's model on this target
(`budget.user_path`: ``~/.cache/convbench/tvm/<target key>/<model>/``), else the one shipped for them
(``backends/tvm/data/<target key>/<model>/``). A database that cannot be used (corrupt, tuned for another
target) is a warning and an untuned compile, never an error; only a database that cannot be tuned into fails
the compile.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...ir.graph import Graph
from ..base import BackendError
from . import budget
from . import tune as tvm_tune
from .target import target_key


@dataclass
class Chosen:
    """The database a compile opened, and how the compile reports it (``db``/``db_source`` of `TvmDetails`)."""

    opened: tvm_tune.OpenedDatabase
    db: str | None = None  # the folder applied (None: untuned)
    source: str | None = None  # "tuned", "given" or "shipped"
    warnings: list[str] = field(default_factory=list)

    def drop(self, warning: str) -> None:
        """The database turned out unusable while compiling: say so, and compile untuned."""
        self.warnings.append(warning)
        self.db = self.source = None


def choose(graph: Graph, target: dict[str, Any], dtype: str, *, tune: bool, path: str | os.PathLike | None,
           use_shipped: bool) -> Chosen:
    """Open the database this compile should use (``tune``: create it)."""
    if tune:
        if path is None:
            path = budget.cache_root() / target_key(target) / workload_name(graph, dtype)
        opened = tvm_tune.open_database(path, target, create=True)
        if opened.database is None:
            raise BackendError(f"tvm backend: cannot tune into {path}: {'; '.join(opened.warnings)}")
        return Chosen(opened, str(path), "tuned")
    if path is not None:
        opened, source = tvm_tune.open_database(path, target), "given"
    elif use_shipped and (user := budget.user_path(target, graph.name)).is_dir():  # `convbench tune` made it here
        opened, source = tvm_tune.open_database(user, target), "user"
    else:
        shipped = tvm_tune.shipped_path(target, graph.name)
        if not use_shipped or not shipped.is_dir():
            warnings = [f"no tuning database shipped for {graph.name} on {target_key(target)}; {tvm_tune.UNTUNED}"]
            return Chosen(tvm_tune.OpenedDatabase(None, None), warnings=warnings if use_shipped else [])
        opened, source = tvm_tune.open_database(shipped, target), "shipped"
    if opened.database is None:
        return Chosen(opened, warnings=list(opened.warnings))
    return Chosen(opened, str(opened.path), source, list(opened.warnings))


def record_tuning(opened: tvm_tune.OpenedDatabase, graph: Graph, target: dict[str, Any],
                  stats: dict[str, Any]) -> None:
    """Add what this compile's tuning spent to the database's manifest, under the graph's input shape."""
    tvm_tune.record_workload(opened.path, target, graph.name, input_shape(graph), tasks=stats["tasks"],
                             trials=stats["trials"], tuning_s=stats["tuning_s"],
                             threads=int(os.environ.get("TVM_NUM_THREADS", "0")) or None)


def tuning_cost(path: str | os.PathLike, graph: Graph) -> dict[str, Any] | None:
    """What the database's tuning of the graph's input shape cost (trials, trials_per_task, tuning_s), from its
    manifest; None when the manifest has no entry for that shape."""
    shape = input_shape(graph)
    entry = next((w for w in tvm_tune.read_manifest(Path(path)).get("workloads", [])
                  if w.get("input_shape") == shape), {})
    return {k: entry.get(k) for k in ("trials", "trials_per_task", "tuning_s")} if entry else None


def input_shape(graph: Graph) -> list[list[int]]:
    return [list(t.shape) for t in graph.inputs.values()]


def workload_name(graph: Graph, dtype: str) -> str:
    """The cache folder of a tuning run: model, input shapes, and the dtype unless float32."""
    shape = "x".join("x".join(map(str, t.shape)) for t in graph.inputs.values())
    return f"{graph.name}-{shape}" + ("" if dtype == "float32" else f"-{dtype}")
