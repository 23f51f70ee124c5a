"""`train`: fit a model once, with the checks CI relies on (no NaN in or out, convergence).

Features, target and weights must be finite before the fit; the loss curves the
library records and the fitted model's predictions must be finite after it; the
seed and whether the fit converged are recorded. scikit-learn estimators and
pipelines, LightGBM and XGBoost (their scikit-learn APIs) are cloned before fitting,
so the estimator passed in is never changed; anything else that follows the small
`Trainer` protocol is fitted as given.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from conveyor.core.step import step
from conveyor.errors import TrainingError, ValidationError

if TYPE_CHECKING:
    from conveyor.tracking.tracker import ActiveRun

__all__ = ["Trained", "Trainer", "check_finite", "train"]

log = logging.getLogger("conveyor.lifecycle")

_PREDICTION_PROBE_ROWS = 1000
# Python 3.11 keeps warning filters per process: one capture at a time (see ADR 11).
_CAPTURE_LOCK = threading.Lock()


@runtime_checkable
class Trainer(Protocol):
    """What `train` needs from a model that is not a scikit-learn-style estimator.

    ``fit(X, y)`` returns the trainer itself and ``predict(X)`` gives predictions. An
    optional ``loss_history`` (a sequence of floats, or a method returning one) is
    checked for NaN and infinity.
    """

    def fit(self, X: Any, y: Any) -> Any:
        """Fit on features ``X`` and target ``y``; return self."""
        ...

    def predict(self, X: Any) -> Any:
        """Predictions for ``X``."""
        ...


@dataclass(frozen=True)
class Trained:
    """A fitted model and how it was fitted.

    Attributes:
        model: the fitted model (a clone of the estimator given, for scikit-learn APIs).
        seed: the seed given; ``random_state`` parameters that were None were set to it.
        fit_seconds: wall-clock seconds spent in ``fit``.
        warnings: the warnings raised while fitting, once each (``Category: message``).
        converged: False when the library reported that the fit did not converge.
        params: the estimator's simple parameters (numbers, strings, booleans, None).
    """

    model: Any
    seed: int
    fit_seconds: float
    warnings: tuple[str, ...] = ()
    converged: bool = True
    params: Mapping[str, Any] = field(default_factory=dict)


@step
def train(
    estimator: Any,
    X: Any,
    y: Any,
    *,
    seed: int = 0,
    sample_weight: Any = None,
    fit_params: Mapping[str, Any] | None = None,
    strict: bool = False,
    allow_missing: bool = False,
    run: ActiveRun | None = None,
) -> Trained:
    """Fit ``estimator`` on ``X`` and ``y``, refusing NaN and infinity before and after.

    Args:
        estimator: a scikit-learn estimator or pipeline, a LightGBM or XGBoost
            scikit-learn model (cloned, never changed), or any `Trainer` (fitted as given).
        X: the features (a DataFrame, an array or a sparse matrix).
        y: the target.
        seed: set on every ``random_state`` parameter that is None, and recorded.
        sample_weight: weights per row (routed to a pipeline's last step).
        fit_params: more keyword arguments for ``fit`` (e.g. an evaluation set).
        strict: raise when the fit did not converge, instead of recording it.
        allow_missing: allow NaN (never infinity) in features, for models that
            handle missing values (LightGBM, XGBoost, HistGradientBoosting).
        run: a run to log the parameters, the fit time, the loss and convergence to.

    Returns:
        The fitted model with its seed, fit time, warnings and convergence.

    Raises:
        TrainingError: NaN or infinity in the features (naming the columns and counts),
            the target, the weights, the loss or the fitted model's predictions; or, with
            ``strict``, a fit that did not converge.
        ValidationError: ``X`` and ``y`` differ in length.
    """
    check_finite(X, y, sample_weight, allow_missing=allow_missing)
    model = prepare_estimator(estimator, seed)
    with capture_warnings() as caught:
        started = time.perf_counter()
        fit_model(model, X, y, sample_weight, fit_params)
        seconds = time.perf_counter() - started
        probe = _probe_predictions(model, X)
    losses = loss_series(model)
    check_losses(losses)
    check_predictions(probe, "the fitted model's predictions")
    messages = _messages(caught)
    converged = not any(_is_convergence(w.category) for w in caught)
    if converged and _hit_max_iter(model):
        converged = False
        messages.append("ConvergenceWarning: stopped at max_iter without converging")
    if not converged:
        if strict:
            raise TrainingError(
                "fit",
                "must converge (strict=True)",
                "the fit did not converge: " + "; ".join(messages),
            )
        log.warning("%s did not converge: %s", type(model).__name__, "; ".join(messages))
    trained = Trained(model, seed, seconds, tuple(messages), converged, simple_params(model))
    if run is not None:
        _log_to(run, trained, losses)
    return trained


# -- guards ---------------------------------------------------------------------


def check_finite(X: Any, y: Any, sample_weight: Any = None, *, allow_missing: bool = False) -> None:
    """Refuse NaN or infinity in numeric features, the target and the weights.

    Raises:
        TrainingError: naming each offending column and its NaN and infinity counts.
        ValidationError: ``X``, ``y`` and the weights differ in length.
    """
    rows = _n_rows(X)
    for name, other in (("y", y), ("sample_weight", sample_weight)):
        if other is not None and len(other) != rows:
            raise ValidationError(name, f"has {len(other)} rows but X has {rows}")
    bad = [
        f"{col!r} ({_count_text(nan, inf)})"
        for col, nan, inf in _nonfinite_columns(X)
        if inf or (nan and not allow_missing)
    ]
    if bad:
        hint = "" if allow_missing else " (or pass allow_missing=True for a model that takes NaN)"
        raise TrainingError(
            "X",
            "numeric features must be finite",
            f"X has NaN or infinite values in {len(bad)} column(s): {', '.join(bad)}; "
            f"impute or drop them before training{hint}",
        )
    for name, values in (("y", y), ("sample_weight", sample_weight)):
        if values is not None:
            _check_vector(name, values)


def _nonfinite_columns(X: Any) -> list[tuple[Any, int, int]]:
    """(column, NaN count, infinity count) for each numeric column that has either."""
    import pandas as pd

    if isinstance(X, pd.DataFrame):
        numeric = X.select_dtypes(include="number")
        names: list[Any] = list(numeric.columns)
        values = numeric.to_numpy(dtype=np.float64, na_value=np.nan)
    elif hasattr(X, "tocsc"):  # a scipy sparse matrix: only stored values can be bad
        return _nonfinite_sparse(X)
    else:
        array = np.asarray(X)
        if array.dtype.kind not in "fiu":
            return []
        values = array.reshape(len(array), -1).astype(np.float64, copy=False)
        names = [f"column {i}" for i in range(values.shape[1])]
    nan = np.isnan(values).sum(axis=0)
    inf = np.isinf(values).sum(axis=0)
    return [(names[i], int(nan[i]), int(inf[i])) for i in np.flatnonzero(nan + inf)]


def _nonfinite_sparse(X: Any) -> list[tuple[Any, int, int]]:
    csc = X.tocsc()
    width = csc.shape[1]
    column = np.repeat(np.arange(width), np.diff(csc.indptr))
    nan = np.bincount(column[np.isnan(csc.data)], minlength=width)
    inf = np.bincount(column[np.isinf(csc.data)], minlength=width)
    return [(f"column {i}", int(nan[i]), int(inf[i])) for i in np.flatnonzero(nan + inf)]


def _n_rows(X: Any) -> int:
    shape = getattr(X, "shape", None)
    return int(shape[0]) if shape is not None else len(X)


def _check_vector(name: str, values: Any) -> None:
    import pandas as pd

    series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values).ravel())
    label = f"{name} ({series.name!r})" if series.name is not None else name
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        array = series.to_numpy(dtype=np.float64, na_value=np.nan)
        nan, inf = int(np.isnan(array).sum()), int(np.isinf(array).sum())
    else:
        nan, inf = int(series.isna().sum()), 0
    if nan or inf:
        raise TrainingError(
            name,
            "must be finite and not missing",
            f"{label} has {_count_text(nan, inf)} of {len(series)} rows; "
            "drop or fill those rows before training",
        )


def _count_text(nan: int, inf: int) -> str:
    parts = [f"{nan} NaN"] if nan else []
    return ", ".join([*parts, f"{inf} infinite"] if inf else parts)


def check_losses(losses: Mapping[str, np.ndarray]) -> None:
    """Refuse a loss curve that went NaN or infinite, naming the curve and the iteration."""
    for name, values in losses.items():
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise TrainingError(
                "loss",
                "must stay finite",
                f"the training loss {name!r} became {values[bad[0]]} at iteration {bad[0]} "
                f"({bad.size} of {values.size} values not finite); lower the learning rate, "
                "scale the features or check the target",
            )


def check_predictions(predictions: Any, what: str) -> None:
    """Refuse predictions with NaN or infinity (a model that cannot be used or registered)."""
    array = np.asarray(predictions)
    if array.dtype.kind not in "fc":
        return
    bad = int((~np.isfinite(array)).reshape(len(array), -1).any(axis=1).sum()) if array.size else 0
    if bad:
        raise TrainingError(
            "predictions",
            "must be finite",
            f"{what} are NaN or infinite for {bad} of {len(array)} rows",
        )


def _probe_predictions(model: Any, X: Any) -> Any:
    head = X.iloc[:_PREDICTION_PROBE_ROWS] if hasattr(X, "iloc") else X[:_PREDICTION_PROBE_ROWS]
    return model.predict(head)


# -- fitting -------------------------------------------------------------------


def _class_names(obj: object) -> set[str]:
    return {f"{c.__module__}.{c.__qualname__}" for c in type(obj).__mro__}


def is_sklearn_api(estimator: Any) -> bool:
    """Whether ``estimator`` follows scikit-learn's API (LightGBM's and XGBoost's wrappers do)."""
    return "sklearn.base.BaseEstimator" in _class_names(estimator)


def prepare_estimator(estimator: Any, seed: int) -> Any:
    """A clone of a scikit-learn-style estimator with unset ``random_state`` set to ``seed``.

    A `Trainer` is returned as it is.

    Raises:
        ValidationError: the object has neither ``fit`` nor ``predict``.
    """
    if not isinstance(estimator, Trainer):
        raise ValidationError(
            "estimator", f"{type(estimator).__name__} has no fit(X, y) and predict(X) methods"
        )
    if not is_sklearn_api(estimator):
        return estimator
    from sklearn.base import clone

    model = clone(estimator)
    unset = {
        key: seed
        for key, value in model.get_params(deep=True).items()
        if (key == "random_state" or key.endswith("__random_state")) and value is None
    }
    if unset:
        model.set_params(**unset)
    return model


def fit_model(
    model: Any,
    X: Any,
    y: Any,
    sample_weight: Any = None,
    fit_params: Mapping[str, Any] | None = None,
) -> None:
    """``model.fit(X, y, ...)``, with the weights routed to a pipeline's last step."""
    kwargs = dict(fit_params or {})
    if sample_weight is not None:
        if "sklearn.pipeline.Pipeline" in _class_names(model):
            kwargs[f"{model.steps[-1][0]}__sample_weight"] = sample_weight
        else:
            kwargs["sample_weight"] = sample_weight
    model.fit(X, y, **kwargs)


@contextlib.contextmanager
def capture_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Record every warning (repeats included) raised in this block, from any thread.

    Warning filters are global to the process in Python 3.11, so captures take turns.
    """
    with _CAPTURE_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def _messages(caught: list[warnings.WarningMessage]) -> list[str]:
    seen: dict[str, None] = {}
    for w in caught:
        seen.setdefault(warning_text(w), None)
    return list(seen)


def warning_text(caught: warnings.WarningMessage) -> str:
    """``Category: first line of the message`` (library warnings run to many lines of advice)."""
    first = str(caught.message).strip().splitlines()[:1] or [""]
    return f"{caught.category.__name__}: {first[0]}"


def _is_convergence(category: type[Warning]) -> bool:
    return any(c.__name__ == "ConvergenceWarning" for c in category.__mro__)


def final_estimator(model: Any) -> Any:
    """The last step of a scikit-learn pipeline, or the model itself."""
    steps = getattr(model, "steps", None)
    if "sklearn.pipeline.Pipeline" in _class_names(model) and steps:
        return final_estimator(steps[-1][1])
    return model


def _hit_max_iter(model: Any) -> bool:
    """An iterative solver that used all of ``max_iter`` (ensembles do so by design)."""
    final = final_estimator(model)
    if not is_sklearn_api(final) or type(final).__module__.startswith("sklearn.ensemble"):
        return False
    params = final.get_params(deep=False)
    n_iter = getattr(final, "n_iter_", None)
    max_iter = params.get("max_iter")
    if "tol" not in params or n_iter is None or not isinstance(max_iter, int) or max_iter <= 0:
        return False
    return bool(np.max(n_iter) >= max_iter)


def loss_series(model: Any) -> dict[str, np.ndarray]:
    """Each loss or score curve the library records, by name.

    scikit-learn's ``loss_curve_`` and ``train_score_``, LightGBM's and XGBoost's
    ``evals_result_`` (present when ``eval_set`` was given), and a `Trainer`'s
    ``loss_history``.
    """
    final = final_estimator(model)
    out: dict[str, np.ndarray] = {}
    for attr in ("loss_curve_", "train_score_"):
        values = getattr(final, attr, None)
        if values is not None:
            out[attr.rstrip("_")] = np.asarray(values, dtype=np.float64).ravel()
    evals = getattr(final, "evals_result_", None)
    if isinstance(evals, Mapping):
        for data, curves in evals.items():
            for metric, values in dict(curves).items():
                out[f"{data}.{metric}"] = np.asarray(values, dtype=np.float64).ravel()
    history = getattr(model, "loss_history", None)
    if callable(history):
        history = history()
    if history is not None:
        out["loss_history"] = np.asarray(history, dtype=np.float64).ravel()
    return out


def simple_params(model: Any) -> dict[str, Any]:
    """The estimator's parameters that are numbers, strings, booleans or None."""
    get_params = getattr(model, "get_params", None)
    if not callable(get_params):
        return {}
    deep = "sklearn.pipeline.Pipeline" in _class_names(model)
    params: dict[str, Any] = get_params(deep=deep)
    return {
        k: v
        for k, v in sorted(params.items())
        if v is None or isinstance(v, (bool, int, float, str))
    }


def _log_to(run: ActiveRun, trained: Trained, losses: Mapping[str, np.ndarray]) -> None:
    model = trained.model
    run.log_params(
        {"estimator": f"{type(model).__module__}.{type(model).__qualname__}", "seed": trained.seed}
    )
    run.log_params(trained.params)
    run.log_metric("fit_seconds", trained.fit_seconds)
    for name, values in losses.items():
        for i, value in enumerate(values):
            run.log_metric(f"train.{name}", float(value), step=i)
    run.set_tag("conveyor.converged", str(trained.converged).lower())
