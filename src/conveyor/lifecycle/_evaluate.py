"""`evaluate`: a model's metrics on a test set, overall and per slice, with plots.

The model predicts once on the whole test set; slices are groups of those rows,
so slicing by ten columns costs no extra prediction. Classification metrics use
the probability of the positive class and ``threshold``; regression metrics use the
predictions. A model whose predictions contain NaN is an error, never a metric.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from conveyor.core.step import step
from conveyor.errors import ValidationError
from conveyor.lifecycle._train import Trained, check_predictions
from conveyor.lifecycle.metrics import ECE_BINS, Scores, point_metrics

if TYPE_CHECKING:
    from conveyor.tracking.tracker import ActiveRun

__all__ = ["Evaluation", "evaluate", "model_scores", "slice_rows", "unwrap_model"]

SliceSpec = Mapping[str, Sequence[float] | None]
MAX_SLICE_VALUES = 200
MISSING = "(missing)"
OUTSIDE = "(outside)"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Evaluation:
    """A model's metrics on one test set.

    Attributes:
        task: ``classification`` or ``regression``.
        metrics: the metrics on the whole test set (undefined ones left out).
        slices: per slice column, per value or bin label (``"UA"``, ``"[0,500)"``,
            ``"(missing)"``), that slice's metrics and its ``rows``.
        confusion: counts, rows the true class and columns the predicted one (in
            ``labels`` order); empty for regression.
        labels: the class labels, as text, in the confusion matrix's order.
        plots: PNG images by name (``roc``, ``pr``, ``calibration``, ``residuals``).
        threshold: the probability from which a row is predicted positive (binary).
        rows: the number of test rows.
    """

    task: str
    metrics: dict[str, float]
    slices: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    confusion: list[list[int]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    plots: dict[str, bytes] = field(default_factory=dict)
    threshold: float = 0.5
    rows: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Everything but the plots, as JSON-able values."""
        return {
            "task": self.task,
            "metrics": self.metrics,
            "slices": self.slices,
            "confusion": self.confusion,
            "labels": self.labels,
            "threshold": self.threshold,
            "rows": self.rows,
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], plots: Mapping[str, bytes] | None = None
    ) -> Evaluation:
        """The evaluation `to_dict` gave, with its plots."""
        return cls(plots=dict(plots or {}), **dict(data))

    def flat_metrics(self) -> dict[str, float]:
        """The metrics and the slice metrics (as ``slice.<column>=<value>.<metric>``)."""
        out = dict(self.metrics)
        for column, groups in self.slices.items():
            for label, values in groups.items():
                out.update({f"slice.{column}={label}.{k}": v for k, v in values.items()})
        return out

    def log_to(self, run: ActiveRun, prefix: str = "") -> None:
        """Log the metrics, slice metrics and plots (as ``evaluation/<name>.png``) to ``run``.

        Args:
            run: the run to log to.
            prefix: put before every metric key (e.g. ``"test."``).
        """
        run.log_metrics({f"{prefix}{k}": v for k, v in self.flat_metrics().items()})
        summary = json.dumps(self.to_dict(), sort_keys=True, indent=1).encode()
        run.log_bytes(summary, "evaluation/evaluation.json", "application/json")
        for name, png in sorted(self.plots.items()):
            run.log_bytes(png, f"evaluation/{name}.png", "image/png")


@step
def evaluate(
    model: Any,
    X_test: Any,
    y_test: Any,
    *,
    task: Literal["classification", "regression"] | None = None,
    slices: SliceSpec | None = None,
    threshold: float = 0.5,
    plots: bool = True,
    run: ActiveRun | None = None,
) -> Evaluation:
    """Score ``model`` on a test set, overall and per slice.

    Classification (binary): accuracy, precision, recall, F1 (of the positive class,
    the second of the model's ``classes_``), ROC AUC, log loss and expected calibration
    error (10 equal-width bins). Multiclass: accuracy, macro precision/recall/F1,
    one-vs-rest ROC AUC, log loss, top-label ECE. Regression: RMSE, MAE, R².

    Args:
        model: a fitted model, a `Trained`, a `Tuned` or a registry `LoadedModel`.
        X_test: the test features; a DataFrame when slicing. Columns the model was not
            fitted on are left out of what it is given (so slice columns may be extra).
        y_test: the truth.
        task: ``classification`` or ``regression``; inferred when None (a model with
            ``predict_proba`` classifies; otherwise a float target means regression).
        slices: columns to slice by: ``None`` for each value (at most 200), or bin
            edges such as ``[0, 500, 1000, 5000]`` (bins ``[0,500)``, …, ``[1000,5000]``).
        threshold: the probability of the positive class from which a row is positive.
        plots: draw ROC, precision-recall and calibration (binary) or residual plots.
        run: a run to log the metrics, slice metrics and plots to.

    Raises:
        TrainingError: the model's predictions contain NaN or infinity.
        ValidationError: a slice column is missing or its bins are malformed, or the
            truth holds labels the model does not know.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValidationError("threshold", f"must be between 0 and 1, got {threshold}")
    groups = slice_rows(X_test, slices or {})  # malformed slices fail before predicting
    scores = model_scores(model, X_test, y_test, task=task, threshold=threshold)
    evaluation = Evaluation(
        task="regression" if scores.task == "regression" else "classification",
        metrics=point_metrics(scores),
        slices={
            column: {label: _slice_metrics(scores, rows) for label, rows in by_label.items()}
            for column, by_label in groups.items()
        },
        confusion=_confusion(scores),
        labels=[str(c) for c in scores.classes],
        plots=_plots(scores) if plots else {},
        threshold=threshold,
        rows=len(scores),
    )
    if run is not None:
        evaluation.log_to(run)
    return evaluation


def _slice_metrics(scores: Scores, rows: np.ndarray) -> dict[str, float]:
    metrics = point_metrics(scores.take(rows)) if len(rows) else {}
    return {"rows": float(len(rows)), **metrics}


# -- predictions ---------------------------------------------------------------


def unwrap_model(model: Any) -> Any:
    """The fitted model inside a `Trained` or a `Tuned`; anything else as it is."""
    from conveyor.lifecycle._tune import Tuned

    if isinstance(model, Trained):
        return model.model
    if isinstance(model, Tuned):
        return model.best_model
    return model


def _is_loaded(model: Any) -> bool:
    from conveyor.registry.loaded import LoadedModel

    return isinstance(model, LoadedModel)


def _has_proba(model: Any) -> bool:
    return bool(model.has_predict_proba) if _is_loaded(model) else hasattr(model, "predict_proba")


def model_inputs(model: Any, X: Any) -> Any:
    """``X`` with only the columns the model was fitted on, in their order (if it says)."""
    names = None if _is_loaded(model) else getattr(model, "feature_names_in_", None)
    columns = getattr(X, "columns", None)
    if names is None or columns is None:
        return X
    wanted = list(names)
    if wanted == list(columns) or not set(wanted) <= set(columns):
        return X  # the model reports a mismatch itself, naming the columns
    return X[wanted]


def model_scores(
    model: Any,
    X: Any,
    y: Any,
    *,
    task: Literal["classification", "regression"] | None = None,
    threshold: float = 0.5,
) -> Scores:
    """Predict once on ``X`` and code the predictions and the truth for the metrics.

    Raises:
        TrainingError: a prediction or probability is NaN or infinite.
        ValidationError: ``y`` holds labels the model does not know, or lengths differ.
    """
    fitted = unwrap_model(model)
    truth = np.asarray(y).ravel()
    inputs = model_inputs(fitted, X)
    if len(truth) != (inputs.shape[0] if hasattr(inputs, "shape") else len(inputs)):
        raise ValidationError("y", f"has {len(truth)} rows but X has {len(inputs)}")
    chosen = task or _infer_task(fitted, truth)
    if chosen == "regression":
        pred = np.asarray(fitted.predict(inputs), dtype=np.float64).ravel()
        check_predictions(pred, f"{_name(fitted)}'s predictions")
        return Scores("regression", truth.astype(np.float64), pred)
    if chosen != "classification":
        raise ValidationError("task", f"must be 'classification' or 'regression', got {task!r}")
    return _classification_scores(fitted, inputs, truth, threshold)


def _classification_scores(model: Any, X: Any, truth: np.ndarray, threshold: float) -> Scores:
    import pandas as pd

    proba = np.asarray(model.predict_proba(X), dtype=np.float64) if _has_proba(model) else None
    if proba is not None:
        check_predictions(proba, f"{_name(model)}'s probabilities")
    classes = _classes(model, truth, proba)
    codes = pd.Index(classes).get_indexer(truth)
    if (codes < 0).any():
        unknown = sorted({str(v) for v in truth[codes < 0]})[:5]
        known = [str(c) for c in classes]
        raise ValidationError("y", f"has labels the model does not know: {unknown} (known {known})")
    binary = len(classes) == 2
    if proba is None:
        labels = np.asarray(model.predict(X)).ravel()
        pred = pd.Index(classes).get_indexer(labels).astype(np.float64)
    elif binary:
        proba = proba[:, 1] if proba.ndim == 2 else proba
        pred = (proba >= threshold).astype(np.float64)
    else:
        pred = proba.argmax(axis=1).astype(np.float64)
    task: Literal["binary", "multiclass"] = "binary" if binary else "multiclass"
    return Scores(task, codes.astype(np.float64), pred, proba, tuple(classes))


def _classes(model: Any, truth: np.ndarray, proba: np.ndarray | None) -> list[Any]:
    inner = model.model if _is_loaded(model) else model
    found = getattr(inner, "classes_", None)
    if found is not None:
        return list(np.asarray(found))
    classes = sorted(set(truth.tolist()))
    width = proba.shape[1] if proba is not None and proba.ndim == 2 else len(classes)
    if len(classes) != width:
        raise ValidationError(
            "model", "has no classes_ and the test labels do not match its probability columns"
        )
    return classes


def _infer_task(model: Any, truth: np.ndarray) -> str:
    if _has_proba(model):
        return "classification"
    if truth.dtype.kind == "f":
        return "regression"
    if truth.dtype.kind in "iu" and len(np.unique(truth)) > 20:
        return "regression"
    return "classification"


def _name(model: Any) -> str:
    return repr(model) if _is_loaded(model) else type(model).__name__


# -- slices --------------------------------------------------------------------


def slice_rows(X: Any, slices: SliceSpec) -> dict[str, dict[str, np.ndarray]]:
    """The row positions of each slice, by column and by value or bin label.

    Raises:
        ValidationError: ``X`` is not a DataFrame, a column is missing, a column
            sliced by value has more than 200 values, or bin edges are malformed.
    """
    import pandas as pd

    if not slices:
        return {}
    if not isinstance(X, pd.DataFrame):
        raise ValidationError("slices", "need the test features as a DataFrame")
    out: dict[str, dict[str, np.ndarray]] = {}
    for column, edges in slices.items():
        if column not in X.columns:
            raise ValidationError(
                f"slices[{column!r}]", f"is not a column of the test data ({list(X.columns)})"
            )
        values = X[column]
        out[column] = _by_value(column, values) if edges is None else _by_bin(column, values, edges)
    return out


def _label(value: Any) -> str:
    return _CONTROL.sub(" ", str(value))


def _by_value(column: str, values: Any) -> dict[str, np.ndarray]:
    import pandas as pd

    codes, uniques = pd.factorize(values, sort=True)
    if len(uniques) > MAX_SLICE_VALUES:
        raise ValidationError(
            f"slices[{column!r}]",
            f"has {len(uniques)} distinct values (at most {MAX_SLICE_VALUES}); give bin edges",
        )
    out = {_label(u): np.flatnonzero(codes == i) for i, u in enumerate(uniques)}
    missing = np.flatnonzero(codes < 0)
    if missing.size:
        out[MISSING] = missing
    return out


def _by_bin(column: str, values: Any, edges: Sequence[float]) -> dict[str, np.ndarray]:
    import pandas as pd

    try:
        cuts = np.asarray(edges, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"slices[{column!r}]", f"bin edges must be numbers: {exc}") from exc
    if cuts.ndim != 1 or len(cuts) < 2 or not np.all(np.diff(cuts) > 0):
        raise ValidationError(
            f"slices[{column!r}]", "bin edges must be at least two strictly increasing numbers"
        )
    if not pd.api.types.is_numeric_dtype(values):
        raise ValidationError(f"slices[{column!r}]", "bins need a numeric column")
    numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
    index = np.searchsorted(cuts, numbers, side="right") - 1
    index[numbers == cuts[-1]] = len(cuts) - 2  # the last bin is closed on the right
    out: dict[str, np.ndarray] = {}
    for i in range(len(cuts) - 1):
        close = "]" if i == len(cuts) - 2 else ")"
        out[f"[{cuts[i]:g},{cuts[i + 1]:g}{close}"] = np.flatnonzero(index == i)
    nan = np.isnan(numbers)
    outside = np.flatnonzero(~nan & ((index < 0) | (index > len(cuts) - 2)))
    if outside.size:
        out[OUTSIDE] = outside
    if nan.any():
        out[MISSING] = np.flatnonzero(nan)
    return out


# -- confusion and plots -------------------------------------------------------


def _confusion(scores: Scores) -> list[list[int]]:
    if scores.task == "regression":
        return []
    k = len(scores.classes)
    truth, pred = scores.y.astype(np.int64), scores.pred.astype(np.int64)
    known = pred >= 0  # a label the model predicts but the classes do not list is left out
    cells = np.bincount(truth[known] * k + pred[known], minlength=k * k)
    return [[int(v) for v in row] for row in cells.reshape(k, k)]


def _plots(scores: Scores) -> dict[str, bytes]:
    from conveyor.lifecycle import plots

    if scores.task == "regression":
        return {"residuals": plots.residuals_png(scores.y, scores.pred)}
    if scores.task != "binary" or scores.proba is None or len(np.unique(scores.y)) < 2:
        return {}
    auc = point_metrics(scores).get("roc_auc")
    return {
        "roc": plots.roc_png(scores.y, scores.proba, None if auc is None else float(auc)),
        "pr": plots.pr_png(scores.y, scores.proba),
        "calibration": plots.calibration_png(scores.y, scores.proba, ECE_BINS),
    }


def finite(metrics: Mapping[str, float]) -> dict[str, float]:
    """The metrics that are finite numbers (what a registry or a tag can hold)."""
    return {k: float(v) for k, v in metrics.items() if math.isfinite(float(v))}
