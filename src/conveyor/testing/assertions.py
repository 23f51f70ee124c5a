"""Assertions for users' ML CI: no NaN, convergence, a pipeline smoke run, data contracts.

These are the tests MLOps level 2 names for every change of code::

    from conveyor.testing import assert_converges, assert_no_nan

    def test_features_have_no_nan(sample):
        assert_no_nan(build_features(sample), name="features")

    def test_the_model_learns(sample):
        assert_converges(make_model(), sample, target="late")

A failed check raises `AssertionError` with a message that says where and why
(the column and row of the first NaN, the loss at each budget, the failing step,
the broken schema rule); a helper used wrongly raises `ValidationError`.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import ValidationError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from conveyor.core.pipeline import Pipeline
    from conveyor.lifecycle.schema import AnomalyReport, Schema
    from conveyor.runtime.results import PipelineResult
    from conveyor.settings import Settings

__all__ = [
    "BUDGET_PARAMS",
    "Convergence",
    "assert_converges",
    "assert_matches_schema",
    "assert_no_nan",
    "assert_pipeline_smoke",
    "recording",
    "temporary_store",
]

# The hyperparameters that say how long a model trains, in the order they are looked for.
BUDGET_PARAMS = ("n_estimators", "max_iter", "num_boost_round", "num_iterations", "epochs")
# What the plugin listens to: the helpers each test calls (see `recording`).
_recorder: list[str] | None = None


@contextmanager
def recording() -> Iterator[list[str]]:
    """Collect the names of the helpers called inside the block (``no_nan``, ``converges``…).

    The pytest plugin uses it to say which kind of check each test is.
    """
    global _recorder
    outer, _recorder = _recorder, []
    try:
        yield _recorder
    finally:
        _recorder = outer


def _record(check: str) -> None:
    if _recorder is not None:
        _recorder.append(check)


# -- no NaN ------------------------------------------------------------------


def assert_no_nan(
    values: Any, name: str = "values", *, columns: Sequence[str] | None = None
) -> None:
    """Fail if ``values`` hold a NaN, an infinity or (in text columns) a missing value.

    Args:
        values: features (a DataFrame, Series or array), predictions, a loss curve, a
            single loss, or a mapping of names to any of these (metrics, losses).
        name: what the values are, for the message (``features``, ``predictions``…).
        columns: for a DataFrame, only these columns (all by default).

    Raises:
        AssertionError: naming the column and the row of the first bad value, and how
            many there are.
        ValidationError: ``columns`` names a column the frame lacks.
    """
    import pandas as pd

    _record("no_nan")
    if isinstance(values, Mapping):
        for key, value in values.items():
            assert_no_nan(value, f"{name}[{key!r}]")
        return
    if isinstance(values, pd.DataFrame):
        _frame_no_nan(values, name, columns)
    elif isinstance(values, pd.Series):
        _frame_no_nan(values.to_frame(str(values.name or name)), name, None)
    elif isinstance(values, int | float) and not isinstance(values, bool):
        if not math.isfinite(values):
            raise AssertionError(f"{name} is {values}")
    else:
        _array_no_nan(values, name)


def _frame_no_nan(frame: pd.DataFrame, name: str, columns: Sequence[str] | None) -> None:
    chosen = list(frame.columns) if columns is None else list(columns)
    missing = [c for c in chosen if c not in frame.columns]
    if missing:
        raise ValidationError("columns", f"not columns of {name}: {missing}")
    bad: list[tuple[str, int, int]] = []  # column, count, first row position
    for column in chosen:
        mask = _bad_mask(frame[column])
        if mask.any():
            bad.append((str(column), int(mask.sum()), int(mask.argmax())))
    if not bad:
        return
    column, count, row = min(bad, key=lambda found: found[2])
    value = frame[column].iloc[row]
    text = (
        f"{name}: column {column!r} has {count} NaN/inf value(s) of {len(frame)}; the first "
        f"at row {row} (index {_plain(frame.index[row])!r}): {_plain(value)!r}"
    )
    others = [f"{c!r} ({n})" for c, n, _ in bad if c != column]
    if others:
        text += "; also in " + ", ".join(others)
    raise AssertionError(text)


def _bad_mask(series: pd.Series) -> np.ndarray:
    import numpy as np
    from pandas.api import types as ptypes

    if ptypes.is_bool_dtype(series.dtype):
        return np.asarray(series.isna().to_numpy(), dtype=bool)
    if ptypes.is_numeric_dtype(series.dtype):
        numbers = series.to_numpy(dtype=np.float64, na_value=np.nan)
        return np.asarray(~np.isfinite(numbers), dtype=bool)
    return np.asarray(series.isna().to_numpy(), dtype=bool)


def _array_no_nan(values: Any, name: str) -> None:
    import numpy as np
    import pandas as pd

    array = np.asarray(values)
    if array.dtype.kind in "fc":
        bad = ~np.isfinite(array)
    elif array.dtype.kind == "O":
        bad = np.asarray(pd.isna(array), dtype=bool) | _object_infinities(array)
    else:
        return  # ints, bools and strings hold no NaN
    if not bad.any():
        return
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    where = f"row {first[0]}" if len(first) == 1 else f"row {first[0]}, column {first[1]}"
    if not first:
        where = "the value"
    raise AssertionError(
        f"{name}: {int(bad.sum())} NaN/inf value(s) of {array.size}; "
        f"the first at {where}: {_plain(array[first])!r}"
    )


def _plain(value: Any) -> Any:
    """Numpy scalars as plain Python, so messages read ``nan``, not ``np.float64(nan)``."""
    return value.item() if hasattr(value, "item") and getattr(value, "ndim", 1) == 0 else value


def _object_infinities(array: np.ndarray) -> np.ndarray:
    import numpy as np

    def infinite(value: Any) -> bool:
        return isinstance(value, float) and math.isinf(value)

    return np.vectorize(infinite, otypes=[bool])(array) if array.size else array.astype(bool)


# -- convergence ---------------------------------------------------------------


@dataclass(frozen=True)
class Convergence:
    """How a model's loss moved as its training budget grew (or along its recorded curve).

    Attributes:
        metric: the loss or metric's name.
        values: its value at each budget (or each point of the curve).
        budgets: the budgets trained with, as ``param=value`` labels (the curve's
            positions for a recorded curve).
        greater_is_better: whether a higher value is better (a metric, not a loss).
    """

    metric: str
    values: list[float]
    budgets: list[str]
    greater_is_better: bool = False

    @property
    def improvement(self) -> float:
        """How much better the last value is than the first (positive when it improved)."""
        change = self.values[-1] - self.values[0]
        return change if self.greater_is_better else -change

    def __str__(self) -> str:
        steps = " -> ".join(
            f"{v:.6g} ({b})" for v, b in zip(self.values, self.budgets, strict=True)
        )
        return f"{self.metric}: {steps}"


def assert_converges(
    trainer: Any,
    data: Any,
    *,
    target: str | None = None,
    budget: str | None = None,
    budgets: Sequence[int] = (2, 40),
    metric: Callable[[Any, Any], float] | None = None,
    greater_is_better: bool = False,
    min_improvement: float = 0.0,
    sample: int | None = 2000,
    seed: int = 0,
) -> Convergence:
    """Fail unless training on a small sample makes the loss go down (or the metric up).

    Two ways to say what training is:

    * an estimator (anything with ``fit``, such as a scikit-learn pipeline around a
      LightGBM model): it is trained once per budget in ``budgets`` (the value of the
      ``budget`` hyperparameter: ``n_estimators``, ``max_iter``…, found by itself when
      not given) and scored on the sample; the last budget must beat the first;
    * a function ``trainer(data) -> Sequence[float]`` returning the training curve it
      recorded (a loss per epoch or round): its last value must beat its first.

    Args:
        trainer: an estimator, or a function returning its training curve.
        data: a DataFrame holding ``target``, or an ``(X, y)`` pair (estimators); anything
            the function takes (curves).
        target: the label column of a DataFrame ``data``.
        budget: the hyperparameter that sets how long the estimator trains.
        budgets: its values, smallest first (at least two).
        metric: ``metric(y_true, prediction) -> float``; by default log loss of
            ``predict_proba`` for classifiers, mean squared error of ``predict`` otherwise.
        greater_is_better: the metric is a score to raise, not a loss to lower.
        min_improvement: how much better than the first value the last must be.
        sample: train on at most this many rows (None: all).
        seed: for the sample.

    Returns:
        The values at each budget or along the curve (for further checks).

    Raises:
        AssertionError: the loss did not improve by more than ``min_improvement``, or a
            value is NaN or infinite.
        ValidationError: the arguments do not fit (no budget hyperparameter, no target…).
    """
    _record("converges")
    if hasattr(trainer, "fit"):
        result = _by_budget(
            trainer, data, target, budget, budgets, metric, greater_is_better, sample, seed
        )
    elif callable(trainer):
        result = _by_curve(trainer, data, greater_is_better)
    else:
        raise ValidationError("trainer", "must be an estimator with fit() or a function")
    _check_improved(result, min_improvement)
    return result


def _by_curve(trainer: Callable[[Any], Any], data: Any, greater: bool) -> Convergence:
    curve = trainer(data)
    try:
        values = [float(v) for v in curve]
    except (TypeError, ValueError):
        raise ValidationError(
            "trainer", f"must return its training curve as numbers, got {type(curve).__name__}"
        ) from None
    if len(values) < 2:
        raise ValidationError("trainer", "must return a curve of at least two values")
    name = "metric" if greater else "loss"
    return Convergence(name, values, [f"point {i}" for i in range(len(values))], greater)


def _by_budget(
    estimator: Any,
    data: Any,
    target: str | None,
    budget: str | None,
    budgets: Sequence[int],
    metric: Callable[[Any, Any], float] | None,
    greater: bool,
    sample: int | None,
    seed: int,
) -> Convergence:
    from sklearn.base import clone

    if len(budgets) < 2 or list(budgets) != sorted(budgets) or budgets[0] < 1:
        raise ValidationError("budgets", "must be at least two increasing whole numbers from 1")
    X, y = _xy(data, target, sample, seed)
    param = _budget_param(estimator, budget)
    score, name = _metric(estimator, metric)
    values = []
    for amount in budgets:
        model = clone(estimator).set_params(**{param: int(amount)})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a tiny budget is meant not to converge
            model.fit(X, y)
        values.append(float(score(model, X, y)))
    labels = [f"{param}={amount}" for amount in budgets]
    return Convergence(name, values, labels, greater)


def _xy(data: Any, target: str | None, sample: int | None, seed: int) -> tuple[Any, Any]:
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        if target is None or target not in data.columns:
            raise ValidationError("target", "name the label column of the DataFrame data")
        if sample is not None and len(data) > sample:
            data = data.sample(sample, random_state=seed)
        return data.drop(columns=[target]), data[target]
    if isinstance(data, tuple) and len(data) == 2:
        X, y = data
        if sample is not None and len(X) > sample:
            X, y = X[:sample], y[:sample]
        return X, y
    raise ValidationError("data", "must be a DataFrame with the target column or an (X, y) pair")


def _budget_param(estimator: Any, budget: str | None) -> str:
    params = estimator.get_params(deep=True)
    if budget is not None:
        found = [k for k in params if k == budget or k.endswith(f"__{budget}")]
    else:
        found = [
            k for name in BUDGET_PARAMS for k in params if k == name or k.endswith(f"__{name}")
        ]
    if not found:
        wanted = budget or " or ".join(BUDGET_PARAMS)
        raise ValidationError("budget", f"the estimator has no hyperparameter {wanted}; name it")
    return str(found[0])


def _metric(
    estimator: Any, metric: Callable[[Any, Any], float] | None
) -> tuple[Callable[[Any, Any, Any], float], str]:
    if metric is not None:
        name = getattr(metric, "__name__", "metric")
        return (lambda model, X, y: metric(y, model.predict(X))), name
    if hasattr(estimator, "predict_proba"):
        from sklearn.metrics import log_loss

        return (lambda model, X, y: log_loss(y, model.predict_proba(X), labels=model.classes_)), (
            "log_loss"
        )
    from sklearn.metrics import mean_squared_error

    return (lambda model, X, y: mean_squared_error(y, model.predict(X))), "mean_squared_error"


def _check_improved(result: Convergence, min_improvement: float) -> None:
    for value, label in zip(result.values, result.budgets, strict=True):
        if not math.isfinite(value):
            raise AssertionError(f"{result.metric} is {value} at {label}: {result}")
    if not result.improvement > min_improvement:
        way = "rise" if result.greater_is_better else "fall"
        raise AssertionError(
            f"did not converge: {result}; expected {result.metric} to {way} by more than "
            f"{min_improvement:g}, it changed by {result.values[-1] - result.values[0]:+.6g}"
        )


# -- data contracts ---------------------------------------------------------------


def assert_matches_schema(
    data: Any, schema: Schema | str | os.PathLike[str], *, strict: bool = False
) -> AnomalyReport:
    """Fail if ``data`` breaks its frozen schema (the one `analyze` inferred, edited and saved).

    Args:
        data: a DataFrame or a `Dataset`.
        schema: a `Schema`, or the path of its YAML file (``schema.yaml``).
        strict: fail on warnings too (out-of-range values, unseen categories…), not
            only on the rules whose severity is ``fail``.

    Returns:
        The report (with the warnings, when they do not fail).

    Raises:
        AssertionError: listing each broken rule with its column and examples.
        ValidationError: the schema file is missing or invalid.
    """
    from conveyor.lifecycle._check import check
    from conveyor.lifecycle.schema import Schema

    _record("matches_schema")
    frozen = schema if isinstance(schema, Schema) else Schema.load(schema)
    report: AnomalyReport = check(data, frozen)
    broken = report.anomalies if strict else report.failures
    if broken:
        lines = "\n".join(f"  {a}" for a in broken)
        raise AssertionError(
            f"data breaks its schema ({len(broken)} rule(s), {report.rows} rows):\n{lines}"
        )
    return report


# -- pipeline smoke test ---------------------------------------------------------------


@contextmanager
def temporary_store(folder: str | os.PathLike[str]) -> Iterator[Settings]:
    """Point the top-level API (`conveyor.run_pipeline`, the registry) at a store in ``folder``.

    A SQLite file and an artifact folder are made there; on exit the stores in force
    before are restored, so a test leaves nothing behind in the project's store.
    """
    from conveyor import fluent

    root = Path(folder).resolve()
    root.mkdir(parents=True, exist_ok=True)
    previous: Settings | None = getattr(fluent, "_settings", None)
    settings = fluent.configure(
        metadata_uri=f"sqlite:///{root / 'conveyor.db'}",
        artifact_uri=str(root / "artifacts"),
        project=root,
    )
    try:
        yield settings
    finally:
        if previous is None:
            fluent.configure()
        else:
            fluent.configure(previous.metadata_uri, previous.artifact_uri, previous.project)


def assert_pipeline_smoke(
    pipeline: Pipeline,
    data: Any = None,
    *,
    sample: int | None = 2000,
    data_param: str = "data",
    params: Mapping[str, Any] | None = None,
    store: str | os.PathLike[str] | None = None,
    seed: int = 0,
) -> PipelineResult:
    """Run ``pipeline`` on a sample of the data in a temporary store; fail if a step fails.

    Args:
        pipeline: a ``@pipeline``.
        data: a DataFrame, or a Parquet file or glob; a sample of it is written to a
            Parquet file whose path is passed as the ``data_param`` parameter. None: the
            pipeline reads what ``params`` say.
        sample: at most this many rows of ``data`` (None: all).
        data_param: the pipeline's parameter that takes the data's path.
        params: the other parameters (a small search budget, say).
        store: the folder of the temporary store (a new temporary folder by default).
        seed: for the sample.

    Returns:
        The pipeline's result (each step's outputs, for further checks).

    Raises:
        AssertionError: a step failed (named, with its error) or did not start.
        ValidationError: ``data`` is of a kind this helper cannot sample.
    """
    _record("pipeline_smoke")
    with tempfile.TemporaryDirectory(prefix="conveyor-smoke-") as scratch:
        root = Path(store) if store is not None else Path(scratch)
        chosen = dict(params or {})
        if data is not None:
            path = root / "sample" / "sample.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            _sample_of(data, sample, seed).to_parquet(path, index=False)
            chosen[data_param] = str(path)
        with temporary_store(root / "store"):
            from conveyor.fluent import run_pipeline

            result = run_pipeline(pipeline, chosen, cache=False)
    _check_finished(result)
    return result


def _sample_of(data: Any, sample: int | None, seed: int) -> pd.DataFrame:
    import glob

    import pandas as pd

    if isinstance(data, str | os.PathLike):
        files = sorted(glob.glob(os.fspath(data)))
        if not files:
            raise ValidationError("data", f"no Parquet file matches {os.fspath(data)!r}")
        data = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    if not isinstance(data, pd.DataFrame):
        raise ValidationError("data", "must be a DataFrame or a Parquet file or glob")
    if sample is not None and len(data) > sample:
        return data.sample(sample, random_state=seed)
    return data


def _check_finished(result: PipelineResult) -> None:
    if result.status.value == "FINISHED":
        return
    lines = [
        f"  {step.name}: {type(step.error).__name__}: {step.error}"
        for step in result.failed
        if step.error is not None
    ]
    if result.not_started:
        lines.append(f"  not started: {', '.join(result.not_started)}")
    detail = "\n".join(lines) or "  (no step failed: the run was interrupted)"
    raise AssertionError(f"pipeline {result.pipeline} ended {result.status.value}:\n{detail}")
