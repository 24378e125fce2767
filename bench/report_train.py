"""The report's training sections (``convbench run --mode train`` records, bench/train_case.py), kept apart from
the inference tables: a step is forward + loss + backward + optimizer, so its time, img/s and GFLOP/s are not
comparable with a forward call's.

Per machine one table, one row per case: step latency (median, p90, spread, n), img/s, train GFLOP/s (the step's
FLOPs by `ir.train_counts`) and its fraction of the calibrated GEMM peak, the speed-up over the NumPy reference's
step on the same case, the optimizer update's share of the step, the train/inference FLOP ratio, the static step
memory next to the measured peak RSS, and the gradient agreement with the float64 reference trainer (✓/✗ with
the worst tensor's relative error, and which tensor it is).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

METHOD = ("Train-mode cases (their own section) time whole steps: forward in train mode, softmax cross-entropy, "
          "backward for every parameter and the SGD update (momentum 0.9, weight decay 1e-4), on one fixed seeded "
          "batch; GFLOP/s counts the step's FLOPs (forward + backward + optimizer, ir/train_counts.py), and "
          "gradients compares the first step's loss, gradients and updated parameters with the float64 reference "
          "trainer, each tensor on its own scale. ")

_KEYS = ("total_flops", "ratio_to_inference", "step_peak_bytes", "saved_activation_bytes", "update_median_s",
         "loss", "optimizer")


def flatten(train: dict[str, Any]) -> dict[str, Any]:
    """A record's ``train`` part (`record.TrainInfo.to_dict()`, or {}) as report columns ``train_<key>``."""
    grads = train.get("gradients") or {}
    return {**{f"train_{k}": train.get(k) for k in _KEYS}, "train_worst": grads.get("reason")}


def _fmt(v: object, spec: str, scale: float = 1.0) -> str:
    return "—" if v is None or pd.isna(v) else format(float(v) * scale, spec)


def _gradients(r: Any) -> str:
    if r.correct is None or pd.isna(r.correct):
        return "no reference"
    worst = str(r.train_worst or "").removeprefix("worst tensor: ").split(":")[0]
    return f"{'✓' if r.correct else '✗'} {_fmt(r.max_rel, '.1e')}" + (f" ({worst})" if worst else "")


def training_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per train-mode case (``df`` holds only those)."""
    rows = []
    for r in df.sort_values(["model", "image_size", "batch", "dtype", "backend"]).itertuples():
        ok = r.status == "ok"
        rows.append({
            "model": r.workload, "backend": r.backend, "batch": r.batch, "dtype": r.dtype,
            "status": r.status if ok else f"{r.status}: {r.message[:80]}",
            "step ms": _fmt(r.median_s, ".2f", 1e3), "p90 ms": _fmt(r.p90_s, ".2f", 1e3),
            "IQR/med": _fmt(r.iqr_rel, ".1%"), "n": int(r.n) if ok else "—", "img/s": _fmt(r.throughput_ips, ".1f"),
            "train GFLOP/s": _fmt(r.gflops, ".2f"), "% peak": _fmt(r.peak_fraction, ".1%"),
            "× numpy": _fmt(r.speedup, ".2f"),
            "update %": _fmt(r.train_update_median_s / r.median_s if ok and r.median_s else None, ".1%"),
            "FLOPs × inference": _fmt(r.train_ratio_to_inference, ".2f"),
            "static step MiB": _fmt(r.train_step_peak_bytes, ".1f", 2**-20),
            "RSS Δ MiB": _fmt(r.rss_run_delta, ".1f", 2**-20),
            "gradients": _gradients(r) if ok else "—",
        })
    return pd.DataFrame(rows)


def sections(df: pd.DataFrame, machine_labels: dict[str, str]) -> list[tuple[str, object]]:
    """The report's training sections: one table per machine (none without train-mode records)."""
    out: list[tuple[str, object]] = []
    for mid, sub in df.groupby("machine_id", sort=False):
        name = "Training steps" + (f" — {machine_labels.get(mid, mid)}" if len(machine_labels) > 1 else "")
        out.append((name, training_table(sub)))
    return out
