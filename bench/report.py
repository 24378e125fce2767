"""Reports: results JSONL files → pandas tables → ``report.md``, a self-contained ``index.html`` (plots embedded
as data URIs) and the plots as PNGs. Several files from several machines merge into one report; every table
and plot is grouped by machine, and speed-ups are only ever taken against the reference on the same machine.

Names and messages come from the results files as they are: every Markdown cell and heading is escaped (a ``|``
or a newline in a message would otherwise break its table, ``<`` would be HTML). A report written into a
folder that holds an older one removes the older one's plots that this one does not draw, so the folder never
shows a plot of other data; `ReportFiles` lists exactly what was written and removed.
"""

from __future__ import annotations

import base64
import functools
import html
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import lecture, plots, report_train
from .errors import BenchError
from .machine import label
from .record import Memory, Record, load_records

REFERENCE = "numpy"
_ITEMSIZE_VS_F32 = {"float64": 2.0, "float32": 1.0, "tf32": 1.0, "float16": 0.5, "bfloat16": 0.5}


def load(paths: Sequence[str | os.PathLike]) -> tuple[pd.DataFrame, dict[str, dict]]:
    """One row per case (the last record of a case per machine wins), and the machines by id."""
    rows, machines = [], {}
    for path in results_files(paths):
        for r in load_records(path):  # schema 1 and 2
            machines[r.machine.get("machine_id", "?")] = r.machine
            rows.append(_flatten(r, str(path)))
    if not rows:
        raise BenchError(f"no results in {', '.join(map(str, paths))}")
    df = pd.DataFrame(rows)
    dup = df.duplicated(["machine_id", "case_id"], keep="last")
    if dup.any():
        warnings.warn(f"{int(dup.sum())} case(s) appear more than once on one machine; the last result is used",
                      stacklevel=2)
        df = df[~dup]
    return _derive(df.reset_index(drop=True)), machines


def results_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The files to read: a directory (a cluster sweep's, one file per machine) stands for its ``*.jsonl``."""
    out: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(path.glob("*.jsonl"))
            if not found:
                raise BenchError(f"{path} is a directory without results files (*.jsonl)")
            out.extend(found)
        else:
            out.append(path)
    return out


def _flatten(r: Record, source: str) -> dict:
    c, t, mem = r.case, r.timing or {}, r.memory or Memory()
    # a train case's correctness is its first step against the float64 reference trainer (record.TrainInfo)
    train = r.train.to_dict() if r.train else {}
    info, corr, calib, m = r.model_info or {}, r.correctness or train.get("gradients") or {}, r.calibration, r.machine
    acc = r.accuracy or {}
    return {
        "source": source, "machine_id": m.get("machine_id", "?"), "machine": label(m) if m else "?",
        "case_id": r.case_id, "model": c.model, "image_size": c.image_size, "backend": c.backend,
        "backend_name": c.backend_name, "batch": c.batch, "dtype": c.dtype,
        "threads": c.threads, "status": r.status, "message": r.message,
        "median_s": t.get("median"), "min_s": t.get("min"), "mean_s": t.get("mean"), "p90_s": t.get("p90"),
        "p99_s": t.get("p99"), "iqr_rel": t.get("iqr_rel"), "n": t.get("n"), "converged": t.get("converged"),
        "samples": t.get("samples") or [], "throughput_ips": r.throughput_ips, "gflops": r.gflops,
        "peak_fraction": r.peak_fraction, "compile_s": r.compile.compile_s if r.compile else None,
        "fallback_nodes": len(r.compile.fallback_nodes) if r.compile else 0,
        "rss_run_delta": mem.run_rss_peak_delta_bytes, "rss_compile_delta": mem.compile_rss_peak_delta_bytes,
        "device_peak": mem.device_peak_bytes, "static_activation_peak": mem.static_activation_peak_bytes,
        "static_params": mem.static_param_bytes, "correct": corr.get("ok"), "max_abs": corr.get("max_abs"),
        "max_rel": corr.get("max_rel"), "top1": corr.get("top1"), "macs": info.get("macs"), "flops": info.get("flops"),
        "params": info.get("params"), "param_bytes": info.get("param_bytes"),
        "activation_sum_bytes": info.get("activation_sum_bytes"), "gemm_gflops": calib.get("gemm_gflops"),
        "gemm_source": calib.get("gemm_source"), "bandwidth_gbs": calib.get("bandwidth_gbs"),
        "loadavg": r.worker.loadavg_1min if r.worker else None, "input": c.input,
        "cores": m.get("cores_logical"), "interpreted": bool(r.compile and r.compile.interpreted),
        "loaded": r.interleave.loaded if r.interleave else None,  # an interleaved case: a round ran loaded
        "top1_labels": acc.get("top1"), "top1_agree": acc.get("top1_agreement"), "kl": acc.get("kl"),
        "mode": c.mode, **report_train.flatten(train),
    }


def _derive(df: pd.DataFrame) -> pd.DataFrame:
    real = df.input.map(lambda i: "" if i == "random" else f" ({i} input)")  # random and real never share a row
    df["workload"] = df.model + "@" + df.image_size.astype(str) + real
    df["kind"] = df.backend_name.map(backend_kind)
    # Minimum memory traffic of a whole forward pass: every parameter read once, every activation written once
    # and read once. FLOPs over that is the model's arithmetic intensity on the roofline.
    scale = df.dtype.map(_ITEMSIZE_VS_F32).fillna(1.0)
    traffic = (df.param_bytes.astype(float) + 2 * df.activation_sum_bytes.astype(float)) * scale
    df["intensity"] = df.flops.astype(float) / traffic
    # An interpreter's run (Triton without a GPU) is checked, not timed: no time, rate or rank of it is reported
    if df.interpreted.any():
        df.loc[df.interpreted, _TIMED] = None
        df.loc[df.interpreted, "samples"] = pd.Series([[] for _ in range(int(df.interpreted.sum()))],
                                                      index=df.index[df.interpreted], dtype=object)
    keys = ["machine_id", "model", "image_size", "batch", "threads", "input", "mode"]  # a train step vs numpy's
    ref = df[(df.backend == REFERENCE) & (df.status == "ok")]
    same = ref.set_index([*keys, "dtype"]).median_s
    f32 = ref[ref.dtype == "float32"].set_index(keys).median_s
    speedups = []
    for row in df.itertuples():
        key = (row.machine_id, row.model, row.image_size, row.batch, row.threads, row.input, row.mode)
        base = same.get((*key, row.dtype))
        if base is None:
            base = f32.get(key)
        speedups.append(base / row.median_s if base is not None and row.status == "ok" else None)
    df["speedup"] = pd.array(speedups, dtype="Float64")
    return df


_TIMED = ["median_s", "min_s", "mean_s", "p90_s", "p99_s", "iqr_rel", "throughput_ips", "gflops", "peak_fraction"]


def _status_cell(r) -> str:
    if r.status != "ok":
        return f"{r.status}: {r.message[:80]}"
    if r.interpreted:
        return "ok: checked under an interpreter, not timed"
    if pd.notna(r.loadavg) and pd.notna(r.cores) and r.loadavg > r.cores:
        return f"ok (load {r.loadavg:.1f} on {int(r.cores)} cores at start)"
    return "ok"


def _peak_cell(r) -> str:
    if pd.notna(r.peak_fraction) and r.peak_fraction > 1:  # the calibration, not the case, is what is off
        return "above peak: calibration low"
    return _fmt(r.peak_fraction, ".1%")


def _fmt(v: object, spec: str, scale: float = 1.0) -> str:
    return "—" if v is None or pd.isna(v) else format(float(v) * scale, spec)


def backend_kind(name: str) -> str:
    """"peer engine" for a backend that declares ``peer = True`` (onnxruntime, openvino: another project's
    compiler), "convbench" for one of convbench's own lowerings, "?" for a backend not registered here."""
    return _backend_kinds().get(name, "?")


@functools.cache
def _backend_kinds() -> dict[str, str]:
    from ..backends import registry

    kinds = {}
    for name in registry.names():
        try:
            kinds[name] = "peer engine" if getattr(registry.get(name), "peer", False) else "convbench"
        except Exception:  # a plugin that does not import: its kind is unknown, the report still renders
            continue
    return kinds


def results_table(df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    with_accuracy = df.top1_agree.notna().any()
    for r in df.sort_values(["model", "image_size", "batch", "dtype", "backend"]).itertuples():
        ok = r.status == "ok"
        accuracy = {"top-1 labels": _fmt(r.top1_labels, ".0%"), "top-1 agree": _fmt(r.top1_agree, ".0%"),
                    "KL": _fmt(r.kl, ".1e")} if with_accuracy else {}
        rows.append({
            "model": r.workload, "backend": r.backend, "kind": r.kind, "batch": r.batch, "dtype": r.dtype,
            "status": _status_cell(r),
            "median ms": _fmt(r.median_s, ".3f", 1e3), "p90 ms": _fmt(r.p90_s, ".3f", 1e3),
            "IQR/med": _fmt(r.iqr_rel, ".1%"), "n": r.n if ok and not r.interpreted else "—",
            "img/s": _fmt(r.throughput_ips, ".1f"),
            "GFLOP/s": _fmt(r.gflops, ".1f"), "% peak": _peak_cell(r),
            f"× {REFERENCE}": _fmt(r.speedup, ".2f"), "compile s": _fmt(r.compile_s, ".2f"),
            "RSS Δ MiB": _fmt(r.rss_run_delta, ".1f", 2**-20),
            "correct": _correct_cell(r) if ok else "—", **accuracy,
        })
    return pd.DataFrame(rows)


def _correct_cell(r) -> str:
    if r.correct is None or pd.isna(r.correct):
        return "no reference"
    return f"{'✓' if r.correct else '✗'} {_fmt(r.max_rel, '.1e')}"  # max_rel is null where it was infinite


def scenario_tables(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """MLPerf-style views: SingleStream (batch 1, p90 latency) and Offline (largest batch, images/s)."""
    ok = df[df.status == "ok"].sort_values(["model", "image_size"])
    out = {}
    b1 = ok[ok.batch == 1]
    if not b1.empty:
        out["latency: batch 1, p90 ms"] = (b1.pivot_table(index=["workload", "dtype"], columns="backend",
                                                          values="p90_s", aggfunc="first", sort=False)
                                           * 1e3).round(3).reset_index()
    if not ok.empty:
        largest = ok[ok.batch == ok.groupby("workload").batch.transform("max")]
        out["throughput: largest batch, images/s"] = largest.pivot_table(
            index=["workload", "batch", "dtype"], columns="backend", values="throughput_ips",
            aggfunc="first", sort=False).round(1).reset_index()
    return out


def machine_table(machines: dict[str, dict], df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for mid, m in machines.items():
        sub = df[df.machine_id == mid]
        v = m.get("versions") or {}
        rows.append({
            "machine": label(m), "id": mid, "os": m.get("os"), "RAM GiB": _fmt(m.get("ram_bytes"), ".0f", 2**-30),
            "GPUs": ", ".join(m.get("gpus") or []) or "none", "flags": " ".join(m.get("cpu_flags") or []),
            "versions": ", ".join(f"{k} {x}" for k, x in v.items() if x),
            "commit": f"{(m.get('git_commit') or '?')[:10]}{' (dirty)' if m.get('git_dirty') else ''}",
            "GEMM peak GFLOP/s": _fmt(sub.gemm_gflops.max(), ".1f") + f" ({sub.gemm_source.dropna().iloc[0]})"
            if sub.gemm_source.notna().any() else "—",
            "copy GB/s": _fmt(sub.bandwidth_gbs.max(), ".1f"),
            "load avg (1 min) at case start": _load(sub.loadavg, m.get("cores_logical")),
        })
    return pd.DataFrame(rows)


def _load(values: pd.Series, cores: int | None) -> str:
    v = values.dropna().astype(float)
    if v.empty:
        return "—"
    return f"median {v.median():.1f}, max {v.max():.1f}" + (f" on {cores} cores" if cores else "")


@dataclass(frozen=True)
class ReportFiles:
    """What `write_report` did: the directory, the files it wrote, and an older report's files it removed."""

    directory: Path
    written: tuple[str, ...]
    removed: tuple[str, ...] = ()


def write_report(paths: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                 title: str | None = None) -> ReportFiles:
    """Write report.md, index.html and the PNGs into ``out_dir``; an older report's plots that this one does not
    draw are removed (files of other names are left alone)."""
    df, machines = load(paths)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise BenchError(f"report output {out} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BenchError(f"cannot create {out}: {e.strerror or e}") from None
    title = title or f"convbench report: {out.name}"
    figures = plots.make_all(df, out)
    sections: list[tuple[str, object]] = [
        ("Machines", machine_table(machines, df)),
        ("How to read this", _method_text(df)),
    ]
    if df["loaded"].eq(True).any():  # interleave.loaded: a round began overloaded or shared the CPU
        sections.append(("Loaded run", f"{int(df['loaded'].eq(True).sum())} interleaved case(s) had a round that "
                         "began with a load average above the machine's cores or during which other work kept "
                         "more than a quarter of a core busy: ratios within a round still compare, absolute times "
                         "do not."))
    df, train = df[df["mode"] == "inference"], df[df["mode"] == "train"]  # train steps: their own sections
    for mid, sub in df.groupby("machine_id", sort=False):
        name = label(machines.get(mid, {})) if len(machines) > 1 else "Results"
        sections.append((name if len(machines) > 1 else "Results", results_table(sub)))
        for scen, table in scenario_tables(sub).items():
            sections.append((f"Scenario — {scen}" + (f" ({mid})" if len(machines) > 1 else ""), table))
    sections.extend(report_train.sections(train, {mid: label(m) for mid, m in machines.items()}))
    bad = pd.concat([df[df.status != "ok"], train[train.status != "ok"]])
    if not bad.empty:
        sections.append(("Cases that did not run", bad[["machine_id", "case_id", "status", "message"]]))
    sections.append(("Comparison of CNN architectures (lecture table, regenerated)", lecture.comparison_table(df)))
    sections.append(("VGG19 vs ResNet50 (lecture table, corrected)", lecture.vgg_resnet_table(df)))
    sections.append(("", lecture.SWAP_NOTE))
    _write(out / "report.md", _markdown(title, sections, figures))
    _write(out / "index.html", _html(title, sections, figures, out))
    removed = []
    for name in plots.FILES:
        if name not in figures and (out / name).is_file():
            (out / name).unlink()
            removed.append(name)
    return ReportFiles(out, ("report.md", "index.html", *figures), tuple(removed))


def _method_text(df: pd.DataFrame) -> str:
    return ("Latency is per call of the whole batch (seconds → ms), the median of adaptive repeats (stopped when "
            "IQR/median < 5 % or at the time cap; IQR/med shows where it was not reached). img/s = batch / median. "
            "GFLOP/s counts the IR's FLOPs (2×MAC for conv/linear, stated rules for the rest); % peak is against "
            "the GEMM peak calibrated in the same sweep (its fastest call of the best BLAS present). "
            f"× {REFERENCE} is the speed-up over the NumPy reference on the same machine and case. RSS Δ is the "
            "measured peak resident memory of the case's process while running, above its level before compile. "
            "correct: max |y − ref| / max |ref| against the float64 reference, within the dtype's tolerance (✓). "
            "kind: convbench's own lowering, or a peer engine (another project's compiler). "
            + (_ACCURACY_TEXT if df.top1_agree.notna().any() else "")
            + (report_train.METHOD if (df["mode"] == "train").any() else "") +
            f"{len(df)} cases, {int((df.status == 'ok').sum())} ok.")


_ACCURACY_TEXT = ("Real-input cases (pretrained weights on the bundled photographs): top-1 labels is the share "
                  "classified into an acceptable class, top-1 agree the share whose class is the float64 reference's, "
                  "KL the mean softmax KL divergence from the reference (nats). ")


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def md_text(value: object) -> str:
    """One Markdown table cell or heading: HTML escaped, ``|`` and ``\\`` escaped, line breaks as ``<br>``."""
    text = html.escape(str(value), quote=False).replace("\\", "\\\\").replace("|", "\\|")
    return "<br>".join(text.splitlines())


def markdown_table(body: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table whose every cell (header and index too) is escaped; missing is "—"."""
    shown = body.astype(object).where(body.notna(), "—").map(md_text)
    shown.columns = [md_text(c) for c in shown.columns]
    keep_index = not isinstance(body.index, pd.RangeIndex)
    if keep_index:
        shown.index = [md_text(i) for i in shown.index]
    return shown.to_markdown(index=keep_index, disable_numparse=True)


def _markdown(title: str, sections: list[tuple[str, object]], figures: dict[str, str]) -> str:
    parts = [f"# {md_text(title)}\n"]
    for name, body in sections:
        if name:
            parts.append(f"## {md_text(name)}\n")
        if isinstance(body, pd.DataFrame):
            parts.append(markdown_table(body) + "\n")
        else:
            parts.append(f"{body}\n")
    parts.append("## Plots\n")
    parts.extend(f"### {caption}\n\n![{caption}]({file})\n" for file, caption in figures.items())
    return "\n".join(parts)


_CSS = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;"
        "font-size:13px;margin-bottom:1.5em}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
        "th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}")


def _html(title: str, sections: list[tuple[str, object]], figures: dict[str, str], out: Path) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    for name, body in sections:
        if name:
            parts.append(f"<h2>{html.escape(name)}</h2>")
        if isinstance(body, pd.DataFrame):
            parts.append(body.to_html(index=not isinstance(body.index, pd.RangeIndex), border=0, na_rep="—"))
        else:
            parts.append(f"<p>{html.escape(str(body))}</p>")
    parts.append("<h2>Plots</h2>")
    for file, caption in figures.items():
        data = base64.b64encode((out / file).read_bytes()).decode()
        parts.append(f"<h3>{html.escape(caption)}</h3><img alt='{html.escape(caption)}' "
                     f"src='data:image/png;base64,{data}'>")
    parts.append("</body></html>\n")
    return "".join(parts)
