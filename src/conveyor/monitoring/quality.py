"""Model quality from captured predictions and the labels that came back later.

The labelled rows of a window (captured rows joined with feedback by request id
and row) give the task's metrics; every window also reports label coverage
(labelled rows / rows) and label delay (label arrival - request time), so a
window evaluated before its labels arrived reads as "not yet known", not as bad.

Classification: ``accuracy``, ``positive_rate`` (of predictions) and, for two
classes, ``precision``, ``recall``, ``f1`` of the positive class and, with a
score output, ``roc_auc`` (ties averaged, as scikit-learn), ``log_loss`` and
``brier``. Regression: ``mae``, ``rmse``, ``r2``, ``mape`` (rows whose label is
not 0) and ``bias`` (mean prediction - label). Undefined metrics are None.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["Quality", "classification_metrics", "quality_of", "regression_metrics"]

FloatArray = npt.NDArray[np.float64]
MAX_SLICE_VALUES = 10
_EPS = 1e-15


@dataclass(frozen=True)
class Quality:
    """Quality of one window: metrics over the labelled rows, coverage and delay."""

    rows: int
    labelled: int
    metrics: dict[str, float | None] = field(default_factory=dict)
    delay_ms: dict[str, float | None] = field(default_factory=dict)
    slices: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def coverage(self) -> float | None:
        """Labelled rows / rows (None for an empty window)."""
        return self.labelled / self.rows if self.rows else None


def _clean(value: float) -> float | None:
    return None if not math.isfinite(value) else float(value)


def _positive(labels: npt.NDArray[Any], preds: npt.NDArray[Any], given: Any) -> Any:
    if given is not None:
        return given
    values = set(np.unique(labels).tolist()) | set(np.unique(preds).tolist())
    for candidate in (True, 1):
        if candidate in values:
            return candidate
    return max(values, key=lambda v: (type(v).__name__, v)) if values else None


def _roc_auc(truth: npt.NDArray[np.bool_], score: FloatArray) -> float | None:
    positives = int(truth.sum())
    negatives = truth.size - positives
    if not positives or not negatives:
        return None
    from scipy.stats import rankdata

    ranks = rankdata(score)
    return float((ranks[truth].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def classification_metrics(
    labels: npt.NDArray[Any],
    preds: npt.NDArray[Any],
    score: FloatArray | None = None,
    positive: Any = None,
) -> dict[str, float | None]:
    """Classification metrics of predictions (and a positive-class score) against labels."""
    if not labels.size:
        return {}
    out: dict[str, float | None] = {"accuracy": float(np.mean(labels == preds))}
    pos = _positive(labels, preds, positive)
    truth = labels == pos
    guess = preds == pos
    out["positive_rate"] = float(np.mean(guess))
    tp = int(np.sum(truth & guess))
    precision = tp / int(guess.sum()) if guess.any() else None
    recall = tp / int(truth.sum()) if truth.any() else None
    out["precision"], out["recall"] = precision, recall
    both = precision is not None and recall is not None and precision + recall > 0
    out["f1"] = 2 * precision * recall / (precision + recall) if both else None  # type: ignore[operator]
    if score is not None and score.size == labels.size:
        finite = np.isfinite(score)
        s, t = score[finite], truth[finite]
        out["roc_auc"] = _roc_auc(t, s)
        p = np.clip(s, _EPS, 1 - _EPS)
        out["log_loss"] = _clean(float(-np.mean(t * np.log(p) + (~t) * np.log(1 - p))))
        out["brier"] = _clean(float(np.mean((s - t) ** 2)))
    return out


def regression_metrics(labels: FloatArray, preds: FloatArray) -> dict[str, float | None]:
    """Regression metrics of predictions against labels (non-finite pairs left out)."""
    keep = np.isfinite(labels) & np.isfinite(preds)
    y, p = labels[keep], preds[keep]
    if not y.size:
        return {}
    err = p - y
    total = float(np.sum((y - y.mean()) ** 2))
    nonzero = y != 0
    return {
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "r2": 1 - float(np.sum(err**2)) / total if total > 0 else None,
        "mape": float(np.mean(np.abs(err[nonzero] / y[nonzero]))) if nonzero.any() else None,
        "bias": float(np.mean(err)),
    }


def _numpy(column: pa.ChunkedArray | pa.Array) -> npt.NDArray[Any]:
    import pyarrow as pa

    if pa.types.is_boolean(column.type):
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=bool)
    return np.asarray(column.to_numpy(zero_copy_only=False))


def _score(table: pa.Table, name: str | None) -> FloatArray | None:
    """The positive class's score: a float column, or the last item of a list column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if name is None:
        for candidate in ("out.probability", "out.score", "out.proba"):
            if candidate in table.column_names:
                name = candidate
                break
        else:
            return None
    elif not name.startswith("out."):
        name = f"out.{name}"
    if name not in table.column_names:
        return None
    column = table.column(name)
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        # Binary classifiers answer [p(negative), p(positive)]: the last item is the score.
        sizes = pc.drop_null(pc.list_value_length(column))
        column = pc.list_element(column, max(int(sizes[0].as_py()) - 1, 0) if len(sizes) else 0)
    if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
        return None
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)


def _task_metrics(
    task: str,
    labels: npt.NDArray[Any],
    preds: npt.NDArray[Any],
    score: FloatArray | None,
    positive: Any,
) -> dict[str, float | None]:
    if task == "regression":
        return regression_metrics(labels.astype(np.float64), preds.astype(np.float64))
    if labels.dtype != preds.dtype and labels.dtype.kind in "biuf" and preds.dtype.kind in "biuf":
        labels, preds = labels.astype(np.float64), preds.astype(np.float64)
    return classification_metrics(labels, preds, score, positive)


def quality_of(
    joined: pa.Table,
    *,
    task: str,
    prediction: str = "prediction",
    score: str | None = None,
    positive: Any = None,
    slices: tuple[str, ...] = (),
) -> Quality:
    """Quality of captured rows joined with their labels (`conveyor.stores.capture.join_feedback`).

    Args:
        joined: captured rows with ``label``, ``label_delay_ms`` and ``out.<prediction>``.
        task: ``classification`` or ``regression``.
        prediction: the output column holding the prediction.
        score: the output column holding the positive class's score (None: guessed).
        positive: the positive class (None: 1/True, else the largest value).
        slices: input columns to report the metrics by (their most frequent values).
    """
    import pyarrow.compute as pc

    rows = joined.num_rows
    pred_name = prediction if prediction.startswith("out.") else f"out.{prediction}"
    if rows == 0 or "label" not in joined.column_names:
        return Quality(rows, 0)
    labelled_table = joined.filter(pc.is_valid(joined.column("label")))
    labelled = labelled_table.num_rows
    delay = _delays(labelled_table)
    if not labelled or pred_name not in joined.column_names:
        return Quality(rows, labelled, {}, delay)
    labels = _numpy(labelled_table.column("label"))
    preds = _numpy(labelled_table.column(pred_name))
    scores = _score(labelled_table, score) if task == "classification" else None
    metrics = _task_metrics(task, labels, preds, scores, positive)
    by_slice = {
        name: _slice_metrics(labelled_table, name, task, labels, preds, scores, positive)
        for name in slices
        if f"in.{name}" in labelled_table.column_names
    }
    return Quality(rows, labelled, metrics, delay, by_slice)


def _delays(labelled: pa.Table) -> dict[str, float | None]:
    if not labelled.num_rows or "label_delay_ms" not in labelled.column_names:
        return {}
    d = np.asarray(labelled.column("label_delay_ms").to_numpy(zero_copy_only=False), np.float64)
    d = d[np.isfinite(d)]
    if not d.size:
        return {}
    p50, p95 = np.quantile(d, [0.5, 0.95])
    return {"p50": float(p50), "p95": float(p95), "max": float(d.max())}


def _slice_metrics(
    table: pa.Table,
    name: str,
    task: str,
    labels: npt.NDArray[Any],
    preds: npt.NDArray[Any],
    scores: FloatArray | None,
    positive: Any,
) -> dict[str, Any]:
    values = np.asarray(table.column(f"in.{name}").to_numpy(zero_copy_only=False), dtype=object)
    keys, counts = np.unique(values.astype(str), return_counts=True)
    top = keys[np.argsort(-counts, kind="stable")[:MAX_SLICE_VALUES]]
    as_text = values.astype(str)
    out: dict[str, Any] = {}
    for key in top.tolist():
        mask = as_text == key
        score = None if scores is None else scores[mask]
        metrics = _task_metrics(task, labels[mask], preds[mask], score, positive)
        out[key] = {"rows": int(mask.sum()), **metrics}
    return out
