"""Correctness in one place: the per-dtype tolerance table and the comparison against the float64 reference.

Errors are measured on the scale of the reference output, not element by element (an elementwise relative
error is meaningless near zero): ``max_rel = max|y − ref| / max|ref|``. A result passes when
``max_abs ≤ atol + rtol · max|ref|``. Top-1/top-5 agreement is reported for logits (rank-2 outputs).

`accuracy` is what classification on real photographs is judged by: top-1/top-5 against each photograph's
acceptable labels, and top-1 agreement, top-5 overlap, softmax KL divergence and logit cosine similarity
against the float64 reference.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    rtol: float  # relative to max|reference|
    atol: float

    def bound(self, scale: float) -> float:
        return self.atol + self.rtol * scale


# The one table. float32: every zoo model but ResNet-152 stays below 6e-5 of max|logit|; ResNet-152 with the
# calibrated random init amplifies float32 rounding steadily through its 36 layer3 blocks (measured: NumPy
# float32 6.5e-4, torch 8.5e-4 at 32×32 batch 2; 3.9e-4 / 3.1e-4 at 224), hence rtol 2e-3, not 1e-4.
# the 16-bit types keep 8 (bf16) or 11 (fp16) mantissa bits, so deep nets drift by percents.
# "tf32" is float32 storage with 10-bit-mantissa matmuls (Triton/cuBLAS on NVIDIA GPUs).
TOLERANCES: dict[str, Tolerance] = {
    "float64": Tolerance(rtol=1e-10, atol=1e-12),
    "float32": Tolerance(rtol=2e-3, atol=1e-5),
    "tf32": Tolerance(rtol=5e-3, atol=1e-4),
    "float16": Tolerance(rtol=2e-2, atol=1e-3),
    "bfloat16": Tolerance(rtol=8e-2, atol=1e-2),
    # int8: an int8 backend against the float64 NumPy reference of the *same* QDQ graph (testing/quantized.py).
    # Engines requantize with float32 multipliers, so a code at a rounding boundary flips by one step and the flip
    # propagates: measured ≤ 3e-7 on single QDQ convs, 0.9–1.4 % of max|logit| on efficientnet_lite0 with its
    # real weights on the photographs (ORT 1.31); 2× that. Random-weight deep nets amplify flips (lite0 at 64 px,
    # random init: 12 %), so their whole-network int8 runs are reported, not judged by this row.
    "int8": Tolerance(rtol=3e-2, atol=1e-3),
}

# The precisions (what ran: a report's accuracy_dtype) whose whole-network runs on random weights the harness
# reports, not judges: rounding differences compound layer after layer (ResNet-50 bf16: max rel 0.13 against the
# 0.08 bound, on AMX and on Zen 4 alike; int8 above). Each precision's arithmetic is judged op by op, and a whole
# network on real weights and photographs (--input real; tests/test_precision_real.py).
NOT_JUDGED_ON_RANDOM_WEIGHTS = ("bfloat16", "float16", "int8")


def tolerance(dtype: str, mode: str = "inference") -> Tolerance:
    """The tolerance of ``dtype`` for an inference output, or (``mode="train"``) for a train step's tensors
    (`TRAIN_TOLERANCES`, below)."""
    if mode not in ("inference", "train"):
        raise ValueError(f"mode must be 'inference' or 'train', got {mode!r}")
    table = TRAIN_TOLERANCES if mode == "train" else TOLERANCES
    try:
        return table[dtype]
    except KeyError:
        what = "training tolerance" if mode == "train" else "tolerance"
        raise KeyError(f"no {what} for dtype {dtype!r}; known: {', '.join(table)}") from None


@dataclass(frozen=True)
class Agreement:
    """How one output compares with the float64 reference."""

    ok: bool
    max_abs: float
    max_rel: float
    bound: float
    dtype: str
    top1: float | None = None  # fraction of rows whose argmax agrees
    top5: float | None = None  # fraction of rows whose reference top-1 is in the candidate's top 5
    reason: str = ""
    worst_index: tuple[int, ...] | None = None  # where |y − ref| is largest
    on_border: bool | None = None  # NCHW outputs: whether that element is in the first/last row or column

    def to_dict(self) -> dict:
        return asdict(self)


def topk_agreement(y: np.ndarray, ref: np.ndarray, k: int) -> float:
    """Fraction of rows where the reference's top-1 class is among the candidate's top ``k``."""
    k = min(k, y.shape[-1])
    top = np.argpartition(-y, k - 1, axis=-1)[:, :k]
    return float(np.mean([r in t for r, t in zip(ref.argmax(-1), top, strict=True)]))


def compare(y: np.ndarray, ref: np.ndarray, dtype: str = "float32", nonfinite_expected: bool = False) -> Agreement:
    """Compare a backend's output with the float64 reference under ``dtype``'s tolerance.

    A non-finite value passes only where the reference has the same one, and only when something finite is left
    to compare as well: an output that is NaN or infinite everywhere, like its reference, says nothing about the
    backend (both may be broken the same way) and fails with that reason, unless ``nonfinite_expected`` says the
    op is known to produce it (a max pool whose windows lie wholly in the padding).
    """
    tol = tolerance(dtype)
    y64 = np.asarray(y, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if y64.shape != ref.shape:
        return Agreement(False, float("inf"), float("inf"), 0.0, dtype,
                         reason=f"shape {y64.shape} differs from the reference's {ref.shape}")
    # A non-finite value agrees only with the same value in the reference (a max-pool window that lies wholly in
    # the padding is −inf in torch and in the reference alike); everything else is compared where both are finite.
    finite = np.isfinite(ref)
    same = (y64 == ref) | (np.isnan(y64) & np.isnan(ref))
    bad = int(np.sum(~np.isfinite(y64) & finite) + np.sum(~finite & ~same))
    if bad:
        return Agreement(False, float("inf"), float("inf"), 0.0, dtype,
                         reason=f"{bad} non-finite values where the reference differs")
    if ref.size and not finite.any() and not nonfinite_expected:
        kinds = "NaN" if np.isnan(ref).all() else "NaN or infinite"
        return Agreement(False, float("inf"), float("inf"), 0.0, dtype,
                         reason=f"all {ref.size} values are {kinds} in the output and in the reference alike: "
                                f"nothing finite to compare (the reference itself is broken for this input)")
    diff = np.where(finite, np.abs(y64 - np.where(finite, ref, 0.0)), 0.0)
    worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), diff.shape)) if diff.size else None
    border = None
    if worst is not None and ref.ndim == 4:
        (_, _, h, w), (_, _, hh, ww) = worst, ref.shape
        border = h in (0, hh - 1) or w in (0, ww - 1)
    if not finite.all():
        y64, ref = y64[finite], ref[finite]
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    bound = tol.bound(scale)
    top1 = top5 = None
    if ref.ndim == 2 and ref.shape[1] > 1:
        top1 = float(np.mean(y64.argmax(-1) == ref.argmax(-1)))
        top5 = topk_agreement(y64, ref, 5)
    ok = max_abs <= bound
    where = "" if worst is None else f" at index {worst}" + (
        "" if border is None else (" (on the border)" if border else " (interior)"))
    reason = "" if ok else (f"max abs error {max_abs:.3g}{where} > {bound:.3g} "
                            f"(rtol {tol.rtol:g} · max|ref| {scale:.3g} + atol {tol.atol:g})")
    return Agreement(ok, max_abs, max_rel, bound, dtype, top1, top5, reason, worst, border)


@dataclass(frozen=True)
class Accuracy:
    """How a batch of logits classifies: against each row's acceptable labels (None without labels) and against the
    float64 reference's logits. Every value is a mean over the ``n`` rows."""

    n: int
    top1: float | None  # fraction of rows whose argmax is an acceptable label
    top5: float | None  # fraction of rows with an acceptable label among the top 5
    top1_agreement: float  # fraction of rows whose argmax is the reference's
    top5_overlap: float  # |top-5 ∩ reference top-5| / 5 (k = classes when fewer than 5)
    kl: float  # mean KL(softmax(reference) ‖ softmax(candidate)), nats
    cosine: float  # mean cosine similarity of a row's logits with the reference's

    def to_dict(self) -> dict:
        return asdict(self)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _topk(x: np.ndarray, k: int) -> np.ndarray:
    # ties broken by index (a stable sort), so a hand-made case has one answer
    return np.argsort(-x, axis=-1, kind="stable")[:, :k]


def accuracy(y: np.ndarray, ref: np.ndarray, labels: Sequence[Collection[int]] | None = None) -> Accuracy:
    """Classification metrics of logits ``y`` (N, classes) against the reference's logits and, when given, each
    row's set of acceptable class indices. Computed in float64; a shape mismatch or non-finite logits raise
    ValueError (the max-error comparison, `compare`, is what reports those as a failed case)."""
    y64, r64 = np.asarray(y, np.float64), np.asarray(ref, np.float64)
    if y64.ndim != 2 or y64.shape != r64.shape or y64.shape[0] == 0:
        raise ValueError(f"accuracy needs logits (N, classes) shaped like the reference's, got {y64.shape} and "
                         f"{r64.shape}")
    if not (np.isfinite(y64).all() and np.isfinite(r64).all()):
        raise ValueError("accuracy needs finite logits")
    if labels is not None and len(labels) != len(y64):
        raise ValueError(f"{len(labels)} label sets for {len(y64)} rows")
    n, k = len(y64), min(5, y64.shape[1])
    top_y, top_r = _topk(y64, k), _topk(r64, k)
    top1 = top5 = None
    if labels is not None:
        top1 = float(np.mean([int(t[0]) in set(a) for t, a in zip(top_y, labels, strict=True)]))
        top5 = float(np.mean([bool(set(map(int, t)) & set(a)) for t, a in zip(top_y, labels, strict=True)]))
    agree = float(np.mean(top_y[:, 0] == top_r[:, 0]))
    overlap = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(top_y, top_r, strict=True)]))
    log_p, log_q = _log_softmax(r64), _log_softmax(y64)
    kl = float(np.mean(np.sum(np.exp(log_p) * (log_p - log_q), axis=-1)))
    norms = np.linalg.norm(y64, axis=-1) * np.linalg.norm(r64, axis=-1)
    cos = np.where(norms > 0, np.sum(y64 * r64, axis=-1) / np.where(norms > 0, norms, 1.0),
                   np.all(y64 == r64, axis=-1).astype(np.float64))  # two zero rows are the same direction
    return Accuracy(n, top1, top5, agree, overlap, max(kl, 0.0), float(np.mean(cos)))


# The training column: one train step (loss, gradients, parameters after it) per tensor on its own scale (rtol),
# plus ``atol`` × the model's largest gradient for every gradient: a gradient that is 0 in exact arithmetic is
# rounding noise of that scale. float32 is looser than inference: BN in train mode divides by batch statistics of
# few values per channel at the small sizes check runs (MobileNetV2 at 64 px, batch 2: 8 per channel in its last
# stage), so float32 rounding is amplified through the backward (measured: torch 7e-3 of the model's gradient
# scale, NumPy float32 6e-2 on MobileNetV2; 2e-5 on ResNet-18 at 64 px).
TRAIN_TOLERANCES: dict[str, Tolerance] = {
    "float64": Tolerance(rtol=1e-8, atol=1e-12),
    "float32": Tolerance(rtol=1e-2, atol=1e-2),
}

