"""Model metrics from predictions, as weighted sums: one code path for estimates and bootstraps.

Every vectorised metric takes a ``counts`` matrix (resamples x rows: how often each row
is drawn in each resample; a row of ones is the test set itself) and returns one value
per resample. `evaluate` and `validate` share it, so a gate compares exactly the numbers
an evaluation reports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from conveyor.errors import ValidationError

__all__ = [
    "GREATER_IS_BETTER",
    "Scores",
    "metric_values",
    "paired_bootstrap",
    "point_metrics",
    "vectorised_metrics",
]

Task = Literal["binary", "multiclass", "regression"]

# Higher is better for these; the error metrics (log_loss, ece, rmse, mae) are lower-is-better.
GREATER_IS_BETTER: Mapping[str, bool] = {
    "accuracy": True,
    "precision": True,
    "recall": True,
    "f1": True,
    "roc_auc": True,
    "log_loss": False,
    "ece": False,
    "rmse": False,
    "mae": False,
    "r2": True,
}
ECE_BINS = 10
_PROBA_METRICS = frozenset({"roc_auc", "log_loss", "ece"})
_MAX_CELLS = 2_000_000  # resamples x rows per chunk of the bootstrap (16 MB of int64 counts)


@dataclass(frozen=True)
class Scores:
    """One model's predictions on one test set, coded the way the metrics need them.

    Attributes:
        task: ``binary``, ``multiclass`` or ``regression``.
        y: the truth: 0/1 (binary), class codes (multiclass) or values (regression).
        pred: the predictions, coded like ``y``.
        proba: P(positive class) per row (binary), the class probabilities (multiclass),
            or None (regression, or a classifier without probabilities).
        classes: the class labels the codes stand for (classification).
    """

    task: Task
    y: np.ndarray
    pred: np.ndarray
    proba: np.ndarray | None = None
    classes: tuple[Any, ...] = ()

    def __len__(self) -> int:
        return len(self.y)

    def take(self, rows: np.ndarray) -> Scores:
        """The same predictions for a subset of rows (a slice)."""
        proba = None if self.proba is None else self.proba[rows]
        return Scores(self.task, self.y[rows], self.pred[rows], proba, self.classes)


def vectorised_metrics(scores: Scores) -> tuple[str, ...]:
    """The metrics `metric_values` (and so the bootstrap) computes for these predictions."""
    if scores.task == "regression":
        return ("rmse", "mae", "r2")
    names = ("accuracy", "precision", "recall", "f1") if scores.task == "binary" else ("accuracy",)
    if scores.proba is None:
        return names
    proba_names = ("roc_auc", "log_loss", "ece") if scores.task == "binary" else ("log_loss", "ece")
    return names + proba_names


def point_metrics(scores: Scores) -> dict[str, float]:
    """Every metric defined for these predictions; undefined ones (one class only) are left out."""
    ones = np.ones((1, len(scores)), dtype=np.int64)
    out = {name: float(metric_values(name, scores, ones)[0]) for name in vectorised_metrics(scores)}
    if scores.task == "multiclass":
        out.update(_multiclass_extras(scores))
    return {k: v for k, v in out.items() if np.isfinite(v)}


def metric_values(name: str, scores: Scores, counts: np.ndarray) -> np.ndarray:
    """``name`` on each resample given by ``counts`` (resamples x rows); NaN where undefined.

    Raises:
        ValidationError: the metric is unknown or not computed for this task this way.
    """
    if name not in vectorised_metrics(scores):
        known = ", ".join(vectorised_metrics(scores))
        no_proba = name in _PROBA_METRICS and scores.proba is None
        need = " (it needs predict_proba)" if no_proba else ""
        raise ValidationError(
            "metric", f"{name!r} is not available for {scores.task} predictions{need}; use {known}"
        )
    return _METRICS[name](scores, counts if name == "roc_auc" else counts.astype(np.float64))


def paired_bootstrap(
    name: str, first: Scores, second: Scores, *, n_bootstrap: int, seed: int
) -> np.ndarray:
    """``name`` of ``first`` minus ``name`` of ``second`` on the same resamples of the rows.

    Resamples are drawn as an index matrix with ``numpy.random.default_rng(seed)``, in
    chunks of at most 2 million cells, and turned into count matrices; both models are
    scored on the same counts, so the difference is paired. NaN marks resamples where
    the metric is undefined (a single class drawn, for ROC AUC).
    """
    n = len(first)
    if len(second) != n:
        raise ValidationError("champion", "must be scored on the same rows as the candidate")
    rng = np.random.default_rng(seed)
    out = np.empty(n_bootstrap)
    per_chunk = max(1, _MAX_CELLS // max(n, 1))
    for start in range(0, n_bootstrap, per_chunk):
        size = min(per_chunk, n_bootstrap - start)
        index = rng.integers(0, n, size=(size, n))
        offsets = (np.arange(size) * n)[:, None]
        counts = np.bincount((index + offsets).ravel(), minlength=size * n).reshape(size, n)
        # ROC AUC works on integer counts; the others multiply matrices: convert once.
        counts = counts.astype(np.int32 if name == "roc_auc" else np.float64)
        diff = _METRICS[name](first, counts) - _METRICS[name](second, counts)
        out[start : start + size] = diff
    return out


# -- the metrics, as weighted sums --------------------------------------------


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _mean(counts: np.ndarray, values: np.ndarray) -> np.ndarray:
    return _divide(counts @ values, counts.sum(axis=1))


def _accuracy(s: Scores, c: np.ndarray) -> np.ndarray:
    return _mean(c, (s.pred == s.y).astype(np.float64))


def _confusion(s: Scores, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    truth, pred = s.y.astype(bool), s.pred.astype(bool)
    tp = c @ (truth & pred).astype(np.float64)
    fp = c @ (~truth & pred).astype(np.float64)
    fn = c @ (truth & ~pred).astype(np.float64)
    return tp, fp, fn


def _zero_nan(values: np.ndarray) -> np.ndarray:
    # As scikit-learn with zero_division=0: no predicted (or actual) positives scores 0.
    return np.asarray(np.nan_to_num(values, nan=0.0))


def _precision(s: Scores, c: np.ndarray) -> np.ndarray:
    tp, fp, _ = _confusion(s, c)
    return _zero_nan(_divide(tp, tp + fp))


def _recall(s: Scores, c: np.ndarray) -> np.ndarray:
    tp, _, fn = _confusion(s, c)
    return _zero_nan(_divide(tp, tp + fn))


def _f1(s: Scores, c: np.ndarray) -> np.ndarray:
    tp, fp, fn = _confusion(s, c)
    return _zero_nan(_divide(2 * tp, 2 * tp + fp + fn))


def _roc_auc(s: Scores, c: np.ndarray) -> np.ndarray:
    """The Mann-Whitney statistic, ties counted half, from cumulative negative counts.

    For each positive row, the (resampled) negatives scored below it plus half of those
    tied with it are read off the running count of negatives sorted by score.
    """
    assert s.proba is not None
    truth = s.y.astype(bool)
    negatives = np.flatnonzero(~truth)
    negatives = negatives[np.argsort(s.proba[negatives], kind="mergesort")]
    positives = np.flatnonzero(truth)
    neg_scores = s.proba[negatives]
    below = np.searchsorted(neg_scores, s.proba[positives], side="left")
    up_to = np.searchsorted(neg_scores, s.proba[positives], side="right")
    # Integer counts: exact, and int32 halves the memory traffic of the big matrices.
    counts = c.astype(np.int32, copy=False) if c.dtype.kind in "iu" else c
    running = np.zeros((counts.shape[0], len(negatives) + 1), dtype=counts.dtype)
    np.cumsum(counts[:, negatives], axis=1, out=running[:, 1:])
    twice = (
        2 * running[:, below] if (up_to == below).all() else running[:, below] + running[:, up_to]
    )
    pos_counts = counts[:, positives]
    wins = 0.5 * np.einsum("ij,ij->i", pos_counts, twice, dtype=np.float64)
    return _divide(wins, pos_counts.sum(axis=1, dtype=np.float64) * running[:, -1])


def _row_log_loss(s: Scores) -> np.ndarray:
    assert s.proba is not None
    eps = np.finfo(np.float64).eps
    if s.task == "binary":
        p = np.clip(s.proba, eps, 1 - eps)
        return np.asarray(-(s.y * np.log(p) + (1 - s.y) * np.log1p(-p)))
    picked = s.proba[np.arange(len(s.y)), s.y.astype(np.int64)]
    total = s.proba.sum(axis=1)
    return np.asarray(-np.log(np.clip(picked / total, eps, 1 - eps)))


def _log_loss(s: Scores, c: np.ndarray) -> np.ndarray:
    return _mean(c, _row_log_loss(s))


def _ece(s: Scores, c: np.ndarray) -> np.ndarray:
    """Expected calibration error over 10 equal-width bins.

    Binary: of P(positive) against the positive rate. Multiclass: of the top label's
    probability against its accuracy.
    """
    assert s.proba is not None
    if s.task == "binary":
        prob, hit = s.proba, s.y.astype(np.float64)
    else:
        prob, hit = s.proba.max(axis=1), (s.pred == s.y).astype(np.float64)
    bins = np.minimum((prob * ECE_BINS).astype(np.int64), ECE_BINS - 1)
    member = np.eye(ECE_BINS)[bins]  # rows x bins, one-hot
    gap = c @ (member * hit[:, None]) - c @ (member * prob[:, None])
    return _divide(np.abs(gap).sum(axis=1), c.sum(axis=1))


def _rmse(s: Scores, c: np.ndarray) -> np.ndarray:
    return np.asarray(np.sqrt(_mean(c, (s.pred - s.y) ** 2)))


def _mae(s: Scores, c: np.ndarray) -> np.ndarray:
    return _mean(c, np.abs(s.pred - s.y))


def _r2(s: Scores, c: np.ndarray) -> np.ndarray:
    weight = c.sum(axis=1)
    residual = c @ (s.pred - s.y) ** 2
    total = c @ s.y**2 - _divide((c @ s.y) ** 2, weight)
    return np.where(weight >= 2, 1 - _divide(residual, total), np.nan)


_METRICS: dict[str, Callable[[Scores, np.ndarray], np.ndarray]] = {
    "accuracy": _accuracy,
    "precision": _precision,
    "recall": _recall,
    "f1": _f1,
    "roc_auc": _roc_auc,
    "log_loss": _log_loss,
    "ece": _ece,
    "rmse": _rmse,
    "mae": _mae,
    "r2": _r2,
}


def _multiclass_extras(s: Scores) -> dict[str, float]:
    """Macro precision, recall and F1, and one-vs-rest ROC AUC (point estimates only)."""
    from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

    labels = np.arange(len(s.classes))
    precision, recall, f1, _ = precision_recall_fscore_support(
        s.y, s.pred, labels=labels, average="macro", zero_division=0
    )
    out = {"precision": float(precision), "recall": float(recall), "f1": float(f1)}
    if s.proba is not None and len(np.unique(s.y)) == len(labels):
        out["roc_auc"] = float(roc_auc_score(s.y, s.proba, multi_class="ovr", labels=labels))
    return out
