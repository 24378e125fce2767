"""The pass ablation study: what each pipeline does to a model's graph (static figures, computed here) and to
its latency on each backend, as tables and plots.

Latency is measured one of two ways. "paired" (default; `ablation_paired`): all pipelines of one model ×
backend in one child process, called in rotation, the speed-up the median of per-cycle ratios — robust to the
load drifting on a shared machine. "sweep": the harness's own cases, the pipeline as a backend option
(``numpy:passes=default``), run in rounds; a speed-up is a ratio of medians within a round, then the median
over rounds. The static figures are what the pipeline leaves for that backend (``fuse`` only makes the fused
nodes the backend's ``supports`` accepts): node count, FLOPs, and activation memory — the naive sum (one buffer
per value), the liveness peak (buffers freed after their last reader, no sharing) and the planned arena
(`plan_memory`: reuse, views and in-place) — whether or not the backend runs out of an arena (numpy does under
``all``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .. import models
from ..backends import get
from ..ir.analysis import summarize
from ..ir.graph import Graph
from ..ir.passes import plan_memory, resolve, run_pipeline
from .output import write_atomic
from .report import load, markdown_table
from .schema import Case
from .specs import parse_backend_spec

BASELINE = "none"


def backend_spec(backend: str, pipeline: str) -> str:
    """``torch:compile=true`` + ``default`` → ``torch:compile=true:passes=default``."""
    return f"{backend}:passes={resolve(pipeline)[0]}"


def placeholder_params(graph: Graph) -> dict[str, np.ndarray]:
    """Weights for the static figures: no pass's structure depends on the values, so broadcast views will do
    (BN statistics get a variance of one, so folding stays finite)."""
    return {name: np.broadcast_to(np.float32(1.0), t.shape) for name, t in graph.params.items()}


def static_row(model: str, image_size: int, batch: int, backend: str, pipeline: str) -> dict:
    """Node count, FLOPs and activation memory of ``model`` after ``pipeline`` as ``backend`` would run it."""
    graph = models.build(model, batch=batch, image_size=image_size)
    name, _ = parse_backend_spec(backend)
    result = run_pipeline(graph, placeholder_params(graph), pipeline, supports=get(name).supports)
    s = summarize(result.graph)
    plan = result.plan or plan_memory(result.graph)
    ops = [n.op for n in result.graph.nodes]
    return {
        "model": model, "image_size": image_size, "batch": batch, "backend": backend,
        "pipeline": result.pipeline, "nodes": len(result.graph),
        "fused_nodes": sum(o.startswith("fused_") for o in ops), "batch_norms": ops.count("batch_norm"),
        "flops": s.flops, "naive_bytes": s.activation_sum_bytes, "live_peak_bytes": s.activation_peak_bytes,
        "arena_bytes": plan.arena_bytes, "inplace_nodes": len(plan.inplace_nodes),
        "pass_s": sum(r.seconds for r in result.records),
    }


def pass_rows(model: str, image_size: int, batch: int, backend: str, pipeline: str = "all") -> list[dict]:
    """What each pass of ``pipeline`` did: nodes before → after and its compile-time cost."""
    graph = models.build(model, batch=batch, image_size=image_size)
    name, _ = parse_backend_spec(backend)
    result = run_pipeline(graph, placeholder_params(graph), pipeline, supports=get(name).supports)
    return [{"model": model, "backend": backend, "pass": r.name, "nodes before": r.nodes_before,
             "nodes after": r.nodes_after, "ms": round(r.seconds * 1e3, 1)} for r in result.records]


def _round(path: str | os.PathLike) -> pd.DataFrame:
    """One results file (one round of the sweep): the pipeline split off the backend spec, and each case's
    speed-up over the same backend's baseline in that same round."""
    df, _ = load([path])
    specs = [parse_backend_spec(b) for b in df.backend]
    df["pipeline"] = [str(opts.get("passes", BASELINE)) for _, opts in specs]
    df["backend"] = [":".join([name, *(f"{k}={v}" for k, v in opts.items() if k != "passes")])
                     for name, opts in specs]
    base = df[(df.pipeline == BASELINE) & (df.status == "ok")].set_index(
        ["machine_id", "model", "image_size", "batch", "backend"]).median_s
    df["speedup"] = [base.get((r.machine_id, r.model, r.image_size, r.batch, r.backend), np.nan) / r.median_s
                     if r.status == "ok" else np.nan for r in df.itertuples()]
    return df


def measured(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Sweep cases measured in one or more rounds (one results file each). Rounds run every pipeline back to
    back, so a speed-up is taken within a round (the machine's load drifts between rounds) and the median over
    rounds is reported, with its min–max (``speedup_lo``, ``speedup_hi``) and the number of rounds."""
    rounds = pd.concat([_round(p).assign(round=k) for k, p in enumerate(paths)], ignore_index=True)
    keys = ["model", "image_size", "batch", "backend", "pipeline"]
    ok = rounds[rounds.status == "ok"]
    agg = ok.groupby(keys).agg(median_s=("median_s", "median"), iqr_rel=("iqr_rel", "median"),
                               speedup=("speedup", "median"), speedup_lo=("speedup", "min"),
                               speedup_hi=("speedup", "max"), correct=("correct", "all"),
                               max_rel=("max_rel", "max"), samples=("round", "nunique")).reset_index()
    status = rounds.groupby(keys).status.agg(lambda s: "ok" if (s == "ok").all() else
                                              next(x for x in s if x != "ok")).reset_index()
    return status.merge(agg, on=keys, how="left")


def ablation_table(static: pd.DataFrame, timed: pd.DataFrame | None) -> pd.DataFrame:
    """One row per model × backend × pipeline: static figures, and the measurement where there is one."""
    keys = ["model", "image_size", "batch", "backend", "pipeline"]
    table = static.copy()
    if timed is not None and not timed.empty:
        cols = [*keys, "status", "median_s", "iqr_rel", "speedup", "speedup_lo", "speedup_hi", "samples",
                "correct", "max_rel"]
        table = table.merge(timed.reindex(columns=cols), on=keys, how="left")
    table["arena_vs_naive"] = table.naive_bytes / table.arena_bytes
    return table


def _fmt(v: object, spec: str, scale: float = 1.0) -> str:
    return "—" if v is None or pd.isna(v) else format(float(v) * scale, spec)


def display(table: pd.DataFrame) -> pd.DataFrame:
    """The table as the report prints it."""
    rows = []
    for r in table.itertuples():
        timed = "median_s" in table.columns
        row = {
            "model": f"{r.model}@{r.image_size}", "batch": r.batch, "backend": r.backend, "pipeline": r.pipeline,
            "nodes": r.nodes, "fused": r.fused_nodes, "BN": r.batch_norms, "GFLOPs": _fmt(r.flops, ".3f", 1e-9),
            "naive MiB": _fmt(r.naive_bytes, ".1f", 2**-20), "live peak MiB": _fmt(r.live_peak_bytes, ".2f", 2**-20),
            "arena MiB": _fmt(r.arena_bytes, ".2f", 2**-20), "naive ÷ arena": _fmt(r.arena_vs_naive, ".1f"),
        }
        if timed:
            ok = r.status == "ok"
            row.update({
                "median ms": _fmt(r.median_s, ".2f", 1e3), "IQR/med": _fmt(r.iqr_rel, ".1%"),
                f"× {BASELINE}": _fmt(r.speedup, ".3f"),
                "interval (n)": (f"{_fmt(r.speedup_lo, '.3f')}–{_fmt(r.speedup_hi, '.3f')} ({r.samples:.0f})"
                                 if ok and not pd.isna(r.speedup_lo) else "—"),
                "correct": "—" if not ok else (f"✓ {r.max_rel:.1e}" if r.correct else f"✗ {r.max_rel:.1e}"),
            })
            if isinstance(r.status, str) and not ok:
                row["correct"] = r.status
        rows.append(row)
    return pd.DataFrame(rows)


def plot(table: pd.DataFrame, out: Path) -> dict[str, str]:
    """speedup.png (× none per model, one bar per backend × pipeline) and memory.png (MiB per model and
    pipeline: naive sum, liveness peak, planned arena). Returns file → caption."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plots import save_figure

    figures = {}
    workloads = list(dict.fromkeys(f"{m}@{s}" for m, s in zip(table.model, table.image_size, strict=True)))
    table = table.assign(workload=[f"{m}@{s}" for m, s in zip(table.model, table.image_size, strict=True)])
    if "speedup" in table.columns and table.speedup.notna().any():
        series = [(b, p) for b, p in dict.fromkeys(zip(table.backend, table.pipeline, strict=True)) if p != BASELINE]
        fig, ax = plt.subplots(figsize=(max(7.0, 1.8 * len(workloads) + 2), 4.8))
        width = 0.8 / max(1, len(series))
        palette = plt.get_cmap("tab20")  # more series than the default cycle's 10 colours
        for k, (b, p) in enumerate(series):
            sub = table[(table.backend == b) & (table.pipeline == p)].set_index("workload")
            mid = np.array([sub.speedup.get(w, np.nan) for w in workloads], dtype=float)
            lo = np.array([sub.speedup_lo.get(w, np.nan) for w in workloads], dtype=float)
            hi = np.array([sub.speedup_hi.get(w, np.nan) for w in workloads], dtype=float)
            x = np.arange(len(workloads)) + k * width
            # bars start at 1×: above the line is faster than 'none', below is slower
            ax.bar(x, mid - 1, width, bottom=1, label=f"{b} · {p}", color=palette(k % palette.N))
            ax.errorbar(x, mid, yerr=[mid - lo, hi - mid], fmt="none", ecolor="black", elinewidth=0.7, capsize=1.5)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks(np.arange(len(workloads)) + width * (len(series) - 1) / 2, workloads)
        ax.set_ylabel(f"speed-up over '{BASELINE}' (whiskers: interval)")
        ax.legend(fontsize=7, ncol=len(dict.fromkeys(b for b, _ in series)), loc="upper center",
                  bbox_to_anchor=(0.5, -0.08))
        ax.set_title("What the pass pipelines buy in latency")
        save_figure(fig, out / "speedup.png")
        figures["speedup.png"] = "Speed-up of each pipeline over 'none', per backend (same run)"
    first = table.drop_duplicates(["workload", "pipeline"])
    pipelines = list(dict.fromkeys(first.pipeline))
    fig, ax = plt.subplots(figsize=(max(7.0, 1.8 * len(workloads) + 2), 4.8))
    measures = [("naive_bytes", "naive sum", "///"), ("live_peak_bytes", "liveness peak", ""),
                ("arena_bytes", "planned arena", "..")]
    width = 0.8 / max(1, len(pipelines) * len(measures))
    for i, p in enumerate(pipelines):
        sub = first[first.pipeline == p].set_index("workload")
        for j, (col, label, hatch) in enumerate(measures):
            k = i * len(measures) + j
            ax.bar(np.arange(len(workloads)) + k * width, [sub[col].get(w, np.nan) / 2**20 for w in workloads],
                   width, color=f"C{i}", hatch=hatch, edgecolor="white", label=f"{p}: {label}")
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(workloads)) + width * (len(pipelines) * len(measures) - 1) / 2, workloads)
    ax.set_ylabel("activation memory, MiB (log)")
    ax.legend(fontsize=7, ncol=len(pipelines), loc="upper center", bbox_to_anchor=(0.5, -0.08))
    ax.set_title("Activation memory per pipeline (static)")
    save_figure(fig, out / "memory.png")
    figures["memory.png"] = "Activation memory: naive sum, liveness peak and planned arena, per pipeline"
    return figures


def cases(model_names: Sequence[str], backends: Sequence[str], pipelines: Sequence[str], batch: int,
          image_sizes: Sequence[str], threads: int) -> list[Case]:
    from .runner import plan

    specs = [backend_spec(b, p) for b in backends for p in pipelines]
    return plan(model_names, specs, [batch], ["float32"], image_sizes, threads)


STATIC_METHOD = (
    "Each row is one model × backend × pipeline. Static columns are computed from the graph the pipeline leaves "
    "for that backend: IR nodes, fused nodes, batch_norm nodes left, FLOPs (the IR's stated rules: fusion moves "
    "no arithmetic, BN folding removes 2 per element and adds the conv bias), and activation memory — the naive "
    "sum (every value its own buffer), the liveness peak (each value freed after its last reader) and the planned "
    "arena (reuse, views and in-place relu/add/residual; greedy by size). The numpy backend runs out of the "
    "planned arena under 'all'; other backends record the plan but keep their own allocator."
)
TIMING_METHOD = {
    "paired": (
        "Timing is paired: every pipeline of one model × backend is compiled in one child process and called in "
        "rotation, so each cycle compares calls made moments apart; × none is the median over cycles of "
        "t(none) / t(pipeline), the interval its distribution-free 95 % confidence interval and n the cycles. "
        "median ms is the latency per call of the whole batch. correct: max |y − ref| / max |ref| against the "
        "float64 reference, within the float32 tolerance."
    ),
    "sweep": (
        "Timing comes from the sweep harness (one child process per case, adaptive repeats), run in rounds with "
        "every pipeline back to back in each; × none is the ratio of medians within a round, the median over "
        "rounds, the interval its min–max and n the rounds. correct: max |y − ref| / max |ref| against the "
        "float64 reference, within the float32 tolerance."
    ),
}


def write_report(table: pd.DataFrame, passes: pd.DataFrame, out: Path, title: str, notes: Sequence[str] = (),
                 results: Sequence[str] = (), timing: str | None = None, train: pd.DataFrame | None = None) -> Path:
    """report.md, speedup.png and memory.png in ``out``; ``timing`` is "paired", "sweep" or None (static);
    ``train``: which passes still apply to the train step (`ablation_train.train_table`), its own section."""
    out.mkdir(parents=True, exist_ok=True)
    figures = plot(table, out)
    parts = [f"# {title}\n", STATIC_METHOD + (" " + TIMING_METHOD[timing] if timing else "") + "\n"]
    if results:
        links = ", ".join(f"[{r}]({r})" for r in results)
        parts.append(f"Raw results: {links}.\n")
    parts += [f"- {' '.join(n.splitlines())}" for n in notes]  # a newline would end the list item
    parts += ["", "## Ablation\n", markdown_table(display(table)) + "\n"]
    if not passes.empty:
        parts += ["## What each pass of 'all' did (nodes, compile-time cost)\n", markdown_table(passes) + "\n"]
    if train is not None:
        from .ablation_train import TRAIN_METHOD

        parts += ["## Passes in train mode\n", TRAIN_METHOD + "\n", markdown_table(train) + "\n"]
    parts += [f"## {caption}\n\n![{caption}]({file})\n" for file, caption in figures.items()]
    for name in ("speedup.png", "memory.png"):  # an older study's plot that this one does not draw
        if name not in figures and (out / name).is_file():
            (out / name).unlink()
    write_atomic(out / "report.md", "\n".join(parts))
    return out / "report.md"
