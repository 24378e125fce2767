"""The report's plots (matplotlib, Agg): one PNG each, one row of panels per machine, one colour per backend
throughout. ``make_all`` returns {file name: caption} for the report to embed."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

MARKERS = "osD^v<>pP*hX"
FILES = ("throughput.png", "speedup.png", "latency.png", "memory.png", "roofline.png",
         "accuracy.png", "train_step.png")  # every plot make_all draws
KL_FLOOR = 1e-16  # a log axis has no zero: an exact match is drawn here



def save_figure(fig, path: Path) -> None:
    """Every report figure is written the same way: laid out, 110 dpi, then closed (pyplot keeps figures alive)."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

def _colors(backends: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10")
    return {b: cmap(i % 10) for i, b in enumerate(backends)}


def _panels(df: pd.DataFrame, height: float, width: float = 11.0):
    machines = list(dict.fromkeys(df.machine_id))
    fig, axes = plt.subplots(len(machines), 1, figsize=(width, height * len(machines)), squeeze=False)
    return fig, [(axes[i][0], df[df.machine_id == m], m) for i, m in enumerate(machines)]


def _title(ax, sub: pd.DataFrame, text: str) -> None:
    ax.set_title(f"{text} — {sub.machine.iloc[0]}", fontsize=10)


def _label(df: pd.DataFrame, backend: str) -> str:
    """A backend's legend entry: peer engines (report.backend_kind) are marked as such."""
    kinds = set(df.kind[df.backend == backend]) if "kind" in df else set()
    return f"{backend} (peer engine)" if "peer engine" in kinds else backend


def _grouped_bars(ax, sub: pd.DataFrame, value: str, colors: dict[str, tuple], backends: list[str],
                  base: float = 0.0) -> list[str]:
    """One group of bars per case, one bar per backend; with ``base`` the bars grow up or down from it."""
    cats = list(dict.fromkeys(f"{r.workload} b{r.batch} {r.dtype}" for r in sub.sort_values(
        ["model", "image_size", "batch", "dtype"]).itertuples()))
    width = 0.8 / max(1, len(backends))
    for k, b in enumerate(backends):
        rows = sub[sub.backend == b]
        values = {f"{r.workload} b{r.batch} {r.dtype}": getattr(r, value) for r in rows.itertuples()}
        ys = [values.get(c) for c in cats]
        xs = [i + (k - (len(backends) - 1) / 2) * width for i in range(len(cats))]
        heights = [np.nan if y is None or pd.isna(y) else float(y) - base for y in ys]
        ax.bar(xs, heights, width, bottom=base or None, label=_label(sub, b), color=colors[b])
    ax.set_xticks(range(len(cats)), cats, rotation=35, ha="right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return cats


def _log_bars(ok: pd.DataFrame, path: Path, colors: dict[str, tuple], column: str, ylabel: str, title: str) -> None:
    """One panel per workload group: ``column`` per backend as grouped bars on a log axis."""
    fig, panels = _panels(ok, 4.5)
    for ax, sub, _ in panels:
        _grouped_bars(ax, sub, column, colors, [b for b in colors if b in set(sub.backend)])
        ax.set_yscale("log")
        ax.set_ylabel(ylabel)
        _title(ax, sub, title)
        ax.legend(fontsize=8)
    save_figure(fig, path)


def throughput(df: pd.DataFrame, path: Path, colors: dict[str, tuple]) -> None:
    _log_bars(df[df.status == "ok"], path, colors, "throughput_ips", "images / s (log)", "Throughput")


def speedup(df: pd.DataFrame, path: Path, colors: dict[str, tuple], reference: str) -> None:
    ok = df[(df.status == "ok") & df.speedup.notna()]
    fig, panels = _panels(ok, 4.5)
    for ax, sub, _ in panels:
        _grouped_bars(ax, sub, "speedup", colors, [b for b in colors if b in set(sub.backend) and b != reference],
                      base=1.0)
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}×"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}×"))
        ax.set_ylabel(f"speed-up over {reference} (log)")
        _title(ax, sub, f"Speed-up against the {reference} reference, same machine and case")
        ax.legend(fontsize=8)
    save_figure(fig, path)


def latency(df: pd.DataFrame, path: Path, colors: dict[str, tuple]) -> None:
    ok = df[(df.status == "ok") & (df.samples.map(len) > 0)].sort_values(
        ["machine_id", "model", "image_size", "batch", "dtype", "backend"])
    n_max = max(1, int(ok.groupby("machine_id").size().max()) if len(ok) else 1)
    fig, panels = _panels(ok, max(2.5, 0.28 * n_max + 1))
    for ax, sub, _ in panels:
        data = [np.asarray(s) * 1e3 for s in sub.samples]
        box = ax.boxplot(data, orientation="horizontal", whis=(1, 99), showfliers=False, patch_artist=True, widths=0.6)
        for patch, b in zip(box["boxes"], sub.backend, strict=True):
            patch.set_facecolor(colors[b])
        ax.scatter(sub.p99_s * 1e3, range(1, len(sub) + 1), marker="|", color="black", s=60, label="p99")
        ax.set_yticks(range(1, len(sub) + 1),
                      [f"{r.workload} b{r.batch} {r.dtype} {r.backend}" for r in sub.itertuples()], fontsize=7)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("latency per call, ms (log); box = quartiles, whiskers = p1–p99")
        ax.grid(axis="x", alpha=0.3)
        _title(ax, sub, "Latency distributions (raw samples)")
    save_figure(fig, path)


def memory(df: pd.DataFrame, path: Path) -> None:
    ok = df[df.status == "ok"].sort_values(["machine_id", "model", "image_size", "batch", "dtype", "backend"])
    fig, panels = _panels(ok, 4.5)
    series = [("static: params", "static_params", "#bbbbbb"),
              ("static: activation peak", "static_activation_peak", "#888888"),
              ("measured: compile RSS Δ", "rss_compile_delta", "#1f77b4"),
              ("measured: run RSS Δ", "rss_run_delta", "#d62728")]
    for ax, sub, _ in panels:
        labels = [f"{r.workload} b{r.batch} {r.dtype} {r.backend}" for r in sub.itertuples()]
        width = 0.2
        for k, (name, col, color) in enumerate(series):
            ys = sub[col].astype(float).to_numpy() / 2**20
            ys[ys <= 0] = np.nan  # no growth above the baseline: no bar (a log axis has no zero)
            ax.bar(np.arange(len(sub)) + (k - 1.5) * width, ys, width, label=name, color=color)
        ax.set_xticks(range(len(sub)), labels, rotation=40, ha="right", fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel("MiB (log)")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
        _title(ax, sub, "Memory: static (IR) and measured (peak RSS above baseline; no bar = no growth)")
    save_figure(fig, path)


def roofline(df: pd.DataFrame, path: Path, colors: dict[str, tuple]) -> None:
    ok = df[(df.status == "ok") & df.gflops.notna()]
    fig, panels = _panels(ok, 5.5, 9.0)
    models = list(dict.fromkeys(ok.model))
    for ax, sub, _ in panels:
        peak, bw = sub.gemm_gflops.max(), sub.bandwidth_gbs.max()
        lo, hi = max(1e-2, float(sub.intensity.min()) / 3), float(sub.intensity.max()) * 3
        ai = np.logspace(np.log10(lo), np.log10(hi), 200)
        if pd.notna(peak) and pd.notna(bw):
            ax.plot(ai, np.minimum(peak, bw * ai), color="black", lw=1.2,
                    label=f"roof: GEMM {peak:.0f} GFLOP/s, copy {bw:.1f} GB/s")
        for r in sub.itertuples():
            ax.scatter(r.intensity, r.gflops, color=colors[r.backend], marker=MARKERS[models.index(r.model) % 12],
                       s=20 + 8 * np.log2(r.batch), edgecolors="black", linewidths=0.4)
        for b in dict.fromkeys(sub.backend):
            ax.scatter([], [], color=colors[b], label=_label(sub, b))
        for m in dict.fromkeys(sub.model):
            ax.scatter([], [], color="white", edgecolors="black", marker=MARKERS[models.index(m) % 12], label=m)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("arithmetic intensity, FLOP / byte (params read once, activations written + read once)")
        ax.set_ylabel("achieved GFLOP/s (log)")
        ax.grid(which="both", alpha=0.2)
        ax.legend(fontsize=7, loc="lower right")
        _title(ax, sub, "Roofline (marker size grows with batch)")
    save_figure(fig, path)


def accuracy(df: pd.DataFrame, path: Path, colors: dict[str, tuple]) -> None:
    """Real-input cases: throughput against top-1 agreement with the float64 reference and against the softmax
    KL divergence from it, one point per case (marker: model)."""
    ok = df[(df.status == "ok") & df.top1_agree.notna()]
    machines = list(dict.fromkeys(ok.machine_id))
    fig, axes = plt.subplots(len(machines), 2, figsize=(12, 4.5 * len(machines)), squeeze=False)
    models = list(dict.fromkeys(ok.model))
    for i, mid in enumerate(machines):
        sub = ok[ok.machine_id == mid]
        for ax, col, name in ((axes[i][0], "top1_agree", "top-1 agreement with the float64 reference"),
                              (axes[i][1], "kl", "softmax KL divergence from the reference (log)")):
            for r in sub.itertuples():
                y = float(getattr(r, col))
                ax.scatter(r.throughput_ips, max(y, KL_FLOOR) if col == "kl" else y, color=colors[r.backend],
                           marker=MARKERS[models.index(r.model) % 12], s=40, edgecolors="black", linewidths=0.4)
            for b in dict.fromkeys(sub.backend):
                ax.scatter([], [], color=colors[b], label=_label(sub, b))
            for m in dict.fromkeys(sub.model):
                ax.scatter([], [], color="white", edgecolors="black", marker=MARKERS[models.index(m) % 12], label=m)
            ax.set_xscale("log")
            if col == "kl":
                ax.set_yscale("log")
            else:
                ax.set_ylim(-0.05, 1.05)
            ax.set_xlabel("images / s (log)")
            ax.set_ylabel(name)
            ax.grid(which="both", alpha=0.2)
            ax.legend(fontsize=7)
            _title(ax, sub, "Accuracy against speed (real photographs)")
    save_figure(fig, path)


def train_steps(df: pd.DataFrame, path: Path, colors: dict[str, tuple]) -> None:
    """Train-mode cases: the median step time per backend."""
    ok = df[df.status == "ok"].assign(step_ms=lambda d: d.median_s * 1e3)
    _log_bars(ok, path, colors, "step_ms", "ms per train step (log)",
              "Train step (forward, loss, backward, SGD update)")


def make_all(df: pd.DataFrame, out: Path, reference: str = "numpy") -> dict[str, str]:
    """Draw every plot the data supports into ``out``; returns {file: caption}. Train-mode cases get their own
    plot and stay out of the inference plots (a step is not a forward call)."""
    colors = _colors(sorted(dict.fromkeys(df.backend), key=lambda b: (b != reference, b)))
    figures: dict[str, str] = {}
    if "mode" in df:
        train, df = df[df["mode"] == "train"], df[df["mode"] != "train"]
        if (train.status == "ok").any():
            train_steps(train, out / "train_step.png", colors)
            figures["train_step.png"] = "Train step time by model and backend (ms)"
    ok = df[df.status == "ok"]
    if ok.empty:
        return figures
    throughput(df, out / "throughput.png", colors)
    figures["throughput.png"] = "Throughput by model and backend (images/s)"
    if (ok.speedup.notna() & (ok.backend != reference)).any():  # the reference alone has no speed-up to draw
        speedup(df, out / "speedup.png", colors, reference)
        figures["speedup.png"] = f"Speed-up against the {reference} reference"
    if (ok.samples.map(len) > 0).any():  # a record may come without its raw samples
        latency(df, out / "latency.png", colors)
        figures["latency.png"] = "Latency distributions"
    memory(df, out / "memory.png")
    figures["memory.png"] = "Memory: static and measured"
    if ok.gflops.notna().any():  # no FLOP count (a hand-made or foreign record): no point to place
        roofline(df, out / "roofline.png", colors)
        figures["roofline.png"] = "Roofline: achieved GFLOP/s against the measured GEMM peak and copy bandwidth"
    if "top1_agree" in ok and ok.top1_agree.notna().any():  # real-input cases carry accuracy
        accuracy(df, out / "accuracy.png", colors)
        figures["accuracy.png"] = "Accuracy against speed: top-1 agreement and KL divergence vs images/s"
    return figures
