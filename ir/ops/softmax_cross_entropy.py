"""softmax_cross_entropy: the mean over the batch of −log softmax(logits)[label] (torch.nn.functional.cross_entropy
with integer targets, reduction="mean"); with ``label_smoothing`` ε the target is (1 − ε)·one-hot + ε/K, as torch.

Inputs: logits (N, K) float, labels (N,) int64 class indices in [0, K). Output: a scalar (shape ()), the loss a
train step differentiates. Computed max-shifted (log-sum-exp), so large logits neither overflow nor lose digits.
Bad labels are refused with the offending values named: a label outside [0, K) or a batch that is not the
logits' (the shape rule). An integral float array (what a caller that casts every input to float passes) is read
as its integers; a fractional one is refused.

FLOPs: 4 per logit (max, subtract, exp, sum) + 3 per sample (log, subtract the label's logit, add to the mean)
+ 1 (divide by N); label smoothing adds 2 per logit (the log-probabilities summed).
VJP (logits): (softmax(logits) − target)·dy/N; labels have no gradient. Backward: 6 per logit (softmax recomputed:
max, subtract, exp, sum, divide; subtract the target) + 1 per logit (scale by dy/N).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import IRError, ShapeError
from ..graph import TensorType
from ._base import OpDef, Types


@dataclass(frozen=True)
class CrossEntropyAttrs:
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "label_smoothing", float(self.label_smoothing))
        if not 0.0 <= self.label_smoothing <= 1.0:
            raise IRError(f"softmax_cross_entropy: label_smoothing must be in [0, 1], got {self.label_smoothing}")


def infer(attrs: CrossEntropyAttrs, ins: Types) -> TensorType:
    logits, labels = ins
    if logits.rank != 2:
        raise ShapeError(f"logits must be (batch, classes), got shape {logits.shape}")
    if labels.dtype != "int64":
        raise ShapeError(f"labels must be int64 class indices, got {labels.dtype}")
    if labels.shape != (logits.shape[0],):
        raise ShapeError(f"labels must have shape ({logits.shape[0]},): one class index per sample of the logits' "
                         f"batch {logits.shape[0]}, got shape {labels.shape}")
    return TensorType((), logits.dtype)


def check_labels(labels: np.ndarray, batch: int, classes: int) -> np.ndarray:
    """``labels`` as int64 class indices for a (batch, classes) logits array, or an `IRError` saying what is wrong."""
    labels = np.asarray(labels)
    if labels.shape != (batch,):
        raise IRError(f"labels must have shape ({batch},) (one per sample of the batch), got shape {labels.shape}")
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or not np.array_equal(labels, np.round(labels)):
            raise IRError(f"labels must be integer class indices, got non-integral values {labels[:5]}")
    elif labels.dtype.kind not in "iu":
        raise IRError(f"labels must be integer class indices, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    bad = np.flatnonzero((labels < 0) | (labels >= classes))
    if bad.size:
        raise IRError(f"labels must be in [0, {classes}) (the logits have {classes} classes): sample(s) "
                      f"{bad[:5].tolist()} have label(s) {labels[bad[:5]].tolist()}")
    return labels


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _target(attrs: CrossEntropyAttrs, labels: np.ndarray, shape: tuple[int, int], dtype) -> np.ndarray:
    eps = attrs.label_smoothing
    target = np.full(shape, eps / shape[1], dtype=dtype)
    target[np.arange(shape[0]), labels] += 1 - eps
    return target


def reference(attrs: CrossEntropyAttrs, logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    n, k = logits.shape
    labels = check_labels(labels, n, k)
    logp = _log_softmax(logits)
    nll = -logp[np.arange(n), labels]
    if attrs.label_smoothing:
        eps = logits.dtype.type(attrs.label_smoothing)
        nll = (1 - eps) * nll - eps * logp.mean(axis=1)
    return np.asarray(nll.mean(), dtype=logits.dtype)


def vjp(attrs: CrossEntropyAttrs, ins, out, dy: np.ndarray, wrt: int) -> np.ndarray:
    logits, labels = ins
    n, k = logits.shape
    labels = check_labels(labels, n, k)
    p = np.exp(_log_softmax(logits))
    return (p - _target(attrs, labels, (n, k), logits.dtype)) * (dy / logits.dtype.type(n))


def flops(attrs: CrossEntropyAttrs, ins: Types, out: TensorType) -> int:
    n, k = ins[0].shape
    return (4 + 2 * (attrs.label_smoothing > 0)) * n * k + 3 * n + 1


OP = OpDef(name="softmax_cross_entropy", attrs_type=CrossEntropyAttrs, inputs=("logits", "labels"),
           traits={"training"}, infer=infer, flops=flops, reference=reference,
           flop_rule="4 per logit (max, subtract, exp, sum) + 3 per sample (log, pick, mean) + 1; label smoothing "
                     "+ 2 per logit",
           vjp=vjp, saves=lambda attrs, wrt, n: (0, 1),
           backward_flops=lambda attrs, ins, out, wrt: 7 * ins[0].numel,
           backward_flop_rule="7 per logit (softmax recomputed: 5, subtract the target, scale by dy/N)")
