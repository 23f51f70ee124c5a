"""`tune`: search hyperparameters with Optuna, each trial cross-validated and recorded.

The search space is code (a function of an Optuna trial that returns an estimator)
or configuration (a dict of ``name: ("int", 2, 8)``-style entries applied to a base
estimator). Trials are sampled by a seeded TPE sampler, report each fold's running
mean so Optuna's median pruner can stop hopeless ones, run in parallel threads
through Optuna's ``n_jobs``, and, given a tracker, each becomes a child run of the
tuning run. The best parameters are refitted on all the training data with `train`.
Optuna is imported only when `tune` runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np

from conveyor.core.step import step
from conveyor.errors import TrainingError, ValidationError
from conveyor.lifecycle._evaluate import model_scores
from conveyor.lifecycle._train import (
    Trained,
    capture_warnings,
    check_finite,
    fit_model,
    prepare_estimator,
    train,
    warning_text,
)
from conveyor.lifecycle.metrics import GREATER_IS_BETTER, point_metrics

if TYPE_CHECKING:
    from conveyor.tracking.tracker import ActiveRun, Tracker

__all__ = ["TrialRecord", "Tuned", "check_search_space", "tune"]

Direction = Literal["maximize", "minimize"]
_KINDS = ("int", "float", "categorical")


class TrialRecord(NamedTuple):
    """One trial: its parameters, its cross-validated score and how it ended.

    ``state`` is Optuna's: ``COMPLETE``, ``PRUNED`` or ``FAIL``. ``score`` is the mean over
    the folds; for a pruned trial, the running mean at the fold where it was stopped (as
    Optuna records it); None for a failed one. ``run_id`` is its child run, if recorded.
    """

    params: dict[str, Any]
    score: float | None
    state: str
    number: int
    run_id: str | None = None


@dataclass(frozen=True)
class Tuned:
    """The outcome of a search.

    Attributes:
        best_params: the parameters of the best trial.
        best_score: its mean cross-validated score.
        trained: the best estimator refitted on all the training data (see `Trained`).
        trials: every trial, in the order they started.
        metric: the metric optimised.
        direction: ``maximize`` or ``minimize``.
        warnings: the warnings raised during the trials, once each.
    """

    best_params: dict[str, Any]
    best_score: float
    trained: Trained
    trials: list[TrialRecord]
    metric: str
    direction: str
    warnings: tuple[str, ...] = field(default=())

    @property
    def best_model(self) -> Any:
        """The refitted best model."""
        return self.trained.model


@step(cache=False)
def tune(
    search: Callable[[Any], Any] | Mapping[str, Any],
    X: Any,
    y: Any,
    *,
    estimator: Any = None,
    metric: str = "roc_auc",
    direction: Direction | None = None,
    n_trials: int = 20,
    cv: Any = 3,
    timeout: float | None = None,
    seed: int = 0,
    n_jobs: int = 1,
    pruning: Any = True,
    allow_missing: bool = False,
    tracker: Tracker | None = None,
    parent_run_id: str | None = None,
    run: ActiveRun | None = None,
) -> Tuned:
    """Find the hyperparameters that score best in cross-validation, and refit with them.

    Args:
        search: a function of an ``optuna.Trial`` returning an unfitted estimator, or a
            search space for ``estimator``: ``{"max_depth": ("int", 2, 8),
            "learning_rate": ("float", 0.01, 0.3, "log"), "num_leaves": ("categorical",
            [15, 31, 63])}``.
        X: the training features.
        y: the training target.
        estimator: the base estimator a search-space dict sets parameters on.
        metric: what to optimise: ``roc_auc``, ``accuracy``, ``f1``, ``log_loss``,
            ``rmse``, ``r2``… (as `evaluate` names them), or a scikit-learn scorer name.
        direction: ``maximize`` or ``minimize``; by default, from the metric.
        n_trials: how many trials to run.
        cv: folds (an int, stratified for classification), a held-out fraction (a float
            in (0, 1)), or a scikit-learn splitter. Always shuffled with ``seed``.
        timeout: stop starting trials after this many seconds.
        seed: seeds the sampler, the folds and every estimator's unset ``random_state``.
        n_jobs: trials run at once, in threads.
        pruning: True for Optuna's median pruner over fold scores, False for none, or
            an Optuna pruner.
        allow_missing: allow NaN (never infinity) in the features, for an estimator
            that imputes (a pipeline starting with the prepared transform) or takes NaN.
        tracker: records each trial as a child run of ``parent_run_id``.
        parent_run_id: the tuning run (``run``'s id by default).
        run: a run to log the best parameters and score to.

    Returns:
        The best parameters and score, the refitted model, and every trial.

    Raises:
        ValidationError: the search space, metric, direction or ``cv`` is malformed.
        TrainingError: NaN or infinity in the data, or no trial completed (the first
            trial's error is raised when they all failed).
    """
    import optuna

    # Each trial is recorded (child runs, `Tuned.trials`); Optuna's own line per trial is noise.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = None if callable(search) else check_search_space(search)
    if space is not None and estimator is None:
        raise ValidationError("estimator", "is required when the search space is a dict")
    chosen = _direction(metric, direction)
    if n_trials < 1 or n_jobs == 0:
        raise ValidationError("n_trials", "n_trials must be at least 1 and n_jobs not 0")
    parent = run.id if run is not None and parent_run_id is None else parent_run_id
    if tracker is not None and parent is None:
        raise ValidationError("parent_run_id", "is required with a tracker (trials are children)")
    check_finite(X, y, allow_missing=allow_missing)
    folds = _folds(X, y, cv, seed)

    def build(trial: Any) -> Any:
        if space is None:
            assert callable(search)
            return search(trial)
        from sklearn.base import clone

        return clone(estimator).set_params(**suggest(trial, space))

    objective = _Objective(build, X, y, folds, metric, seed, _TrialRuns.open(tracker, parent))
    study = optuna.create_study(
        direction=chosen, sampler=optuna.samplers.TPESampler(seed=seed), pruner=_pruner(pruning)
    )
    with capture_warnings() as caught:
        study.optimize(
            objective, n_trials=n_trials, timeout=timeout, n_jobs=n_jobs, catch=(Exception,)
        )
    if tracker is not None:
        tracker.flush()
    trials = [_record(t) for t in study.trials]
    if not any(t.state == "COMPLETE" for t in trials):
        if objective.errors:
            raise objective.errors[0]
        raise TrainingError(
            "tune", "at least one trial must complete", "every trial was pruned or scored NaN"
        )
    best = study.best_trial
    refit = train(
        build(optuna.trial.FixedTrial(best.params)), X, y, seed=seed, allow_missing=allow_missing
    )
    messages = tuple(dict.fromkeys(warning_text(w) for w in caught))
    tuned = Tuned(
        dict(best.params), float(study.best_value), refit, trials, metric, chosen, messages
    )
    if run is not None:
        run.log_params({f"best.{k}": v for k, v in tuned.best_params.items()})
        run.log_metric(f"best.{metric}", tuned.best_score)
        run.set_tag("conveyor.tune.trials", len(trials))
    return tuned


# -- the search space ----------------------------------------------------------


def check_search_space(space: Mapping[str, Any]) -> dict[str, tuple[Any, ...]]:
    """The search space, checked: each entry a known kind with valid bounds or choices.

    Raises:
        ValidationError: naming the key of the first malformed entry.
    """
    if not isinstance(space, Mapping) or not space:
        raise ValidationError("search", "must be a function of a trial or a non-empty dict")
    return {str(key): _check_entry(str(key), spec) for key, spec in space.items()}


def _check_entry(key: str, spec: Any) -> tuple[Any, ...]:
    field_name = f"search[{key!r}]"
    if not isinstance(spec, (tuple, list)) or not spec:
        raise ValidationError(field_name, "must be a tuple such as ('int', 2, 8)")
    kind = spec[0]
    if kind not in _KINDS:
        raise ValidationError(field_name, f"unknown kind {kind!r}; use one of {list(_KINDS)}")
    if kind == "categorical":
        if len(spec) != 2 or not isinstance(spec[1], (list, tuple)) or not spec[1]:
            raise ValidationError(field_name, "must be ('categorical', [choice, ...])")
        return ("categorical", list(spec[1]))
    if len(spec) not in (3, 4) or (len(spec) == 4 and spec[3] != "log"):
        raise ValidationError(field_name, f"must be ({kind!r}, low, high) or with 'log' after")
    low, high, log = spec[1], spec[2], len(spec) == 4
    number = int if kind == "int" else (int, float)
    if any(isinstance(v, bool) or not isinstance(v, number) for v in (low, high)):
        raise ValidationError(
            field_name, f"bounds must be {'integers' if kind == 'int' else 'numbers'}"
        )
    if low > high or (log and low <= 0):
        raise ValidationError(field_name, "needs low <= high (and low > 0 on a log scale)")
    return (kind, low, high, log)


def suggest(trial: Any, space: Mapping[str, tuple[Any, ...]]) -> dict[str, Any]:
    """Draw one value of every parameter of a checked search space from ``trial``."""
    params: dict[str, Any] = {}
    for key, spec in space.items():
        if spec[0] == "categorical":
            params[key] = trial.suggest_categorical(key, spec[1])
        elif spec[0] == "int":
            params[key] = trial.suggest_int(key, spec[1], spec[2], log=spec[3])
        else:
            params[key] = trial.suggest_float(key, spec[1], spec[2], log=spec[3])
    return params


def _direction(metric: str, direction: str | None) -> Direction:
    if direction is None:
        return "maximize" if GREATER_IS_BETTER.get(metric, True) else "minimize"
    if direction not in ("maximize", "minimize"):
        raise ValidationError("direction", f"must be 'maximize' or 'minimize', got {direction!r}")
    return "maximize" if direction == "maximize" else "minimize"


def _pruner(pruning: Any) -> Any:
    import optuna

    if pruning is True:
        return optuna.pruners.MedianPruner()
    if pruning is False or pruning is None:
        return optuna.pruners.NopPruner()
    if not isinstance(pruning, optuna.pruners.BasePruner):
        raise ValidationError("pruning", "must be True, False or an Optuna pruner")
    return pruning


# -- folds and scoring -----------------------------------------------------------

Fold = tuple[np.ndarray, np.ndarray]


def _folds(X: Any, y: Any, cv: Any, seed: int) -> list[Fold]:
    from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

    rows = np.arange(len(y))
    truth = np.asarray(y).ravel()
    stratify = _stratifiable(truth, 2)
    if isinstance(cv, bool) or cv is None:
        raise ValidationError("cv", "must be a number of folds, a fraction or a splitter")
    if isinstance(cv, int):
        if not 2 <= cv <= len(rows):
            raise ValidationError("cv", f"needs 2 to {len(rows)} folds, got {cv}")
        kind = StratifiedKFold if _stratifiable(truth, cv) else KFold
        return [(a, b) for a, b in kind(cv, shuffle=True, random_state=seed).split(rows, truth)]
    if isinstance(cv, float):
        if not 0.0 < cv < 1.0:
            raise ValidationError("cv", f"a held-out fraction must be in (0, 1), got {cv}")
        fit, held = train_test_split(
            rows, test_size=cv, random_state=seed, stratify=truth if stratify else None
        )
        return [(np.asarray(fit), np.asarray(held))]
    if hasattr(cv, "split"):
        return [(np.asarray(a), np.asarray(b)) for a, b in cv.split(X, truth)]
    raise ValidationError("cv", f"must be an int, a float or a splitter, got {type(cv).__name__}")


def _stratifiable(truth: np.ndarray, folds: int) -> bool:
    if truth.dtype.kind == "f":
        return False
    _, counts = np.unique(truth, return_counts=True)
    return len(counts) <= 20 and bool(counts.min() >= folds)


def _rows(data: Any, index: np.ndarray) -> Any:
    return data.iloc[index] if hasattr(data, "iloc") else np.asarray(data)[index]


def cv_score(model: Any, X: Any, y: Any, metric: str) -> float:
    """``metric`` of a fitted model on held-out data (as `evaluate` computes it)."""
    if metric in GREATER_IS_BETTER:
        scores = model_scores(model, X, y)
        values = point_metrics(scores)
        if metric not in values:
            raise ValidationError(
                "metric", f"{metric!r} is undefined for this {scores.task} model and fold"
            )
        return values[metric]
    from sklearn.metrics import get_scorer

    try:
        scorer = get_scorer(metric)
    except ValueError as exc:
        raise ValidationError("metric", f"unknown metric {metric!r}: {exc}") from exc
    return float(scorer(model, X, y))


class _TrialRuns:
    """Starts a child run per trial under the tuning run, in the parent's experiment."""

    def __init__(self, tracker: Tracker, parent: str) -> None:
        self.tracker = tracker
        self.parent = tracker.get_run(parent)
        experiments = {e.id: e.name for e in tracker.runs.list_experiments()}
        self.experiment = experiments[self.parent.experiment_id]

    @classmethod
    def open(cls, tracker: Tracker | None, parent: str | None) -> _TrialRuns | None:
        return None if tracker is None or parent is None else cls(tracker, parent)

    def start(self, number: int) -> ActiveRun:
        return self.tracker.start_run(
            self.experiment,
            name=f"trial-{number}",
            tags={"conveyor.kind": "trial", "optuna.trial": number},
            parent_run_id=self.parent.id,
            source=self.parent.source,
        )


class _Objective:
    """Cross-validates one trial's estimator, reporting fold by fold to the pruner."""

    def __init__(
        self,
        build: Callable[[Any], Any],
        X: Any,
        y: Any,
        folds: list[Fold],
        metric: str,
        seed: int,
        runs: _TrialRuns | None,
    ) -> None:
        self.build, self.X, self.y, self.folds = build, X, y, folds
        self.metric, self.seed, self.runs = metric, seed, runs
        self.errors: list[BaseException] = []

    def __call__(self, trial: Any) -> float:
        import optuna

        run = None if self.runs is None else self.runs.start(trial.number)
        if run is not None:
            trial.set_user_attr("run_id", run.id)
        state, scores = "FAIL", []
        try:
            estimator = self.build(trial)
            for step_number, (fit_rows, held_rows) in enumerate(self.folds):
                model = prepare_estimator(estimator, self.seed)
                fit_model(model, _rows(self.X, fit_rows), _rows(self.y, fit_rows))
                held_x, held_y = _rows(self.X, held_rows), _rows(self.y, held_rows)
                scores.append(cv_score(model, held_x, held_y, self.metric))
                trial.report(float(np.mean(scores)), step_number)
                if trial.should_prune():
                    state = "PRUNED"
                    raise optuna.TrialPruned()
            state = "COMPLETE"
            return float(np.mean(scores))
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            self.errors.append(exc)
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            raise
        finally:
            if run is not None:
                _end_trial_run(run, trial, scores, self.metric, state)


def _end_trial_run(
    run: ActiveRun, trial: Any, scores: list[float], metric: str, state: str
) -> None:
    run.log_params(trial.params)
    for i, score in enumerate(scores):
        run.log_metric(f"fold.{metric}", score, step=i)
    if state == "COMPLETE" and scores and math.isfinite(float(np.mean(scores))):
        run.log_metric(metric, float(np.mean(scores)))
    run.set_tag("optuna.state", state)
    error = trial.user_attrs.get("error")
    if error:
        run.set_tag("conveyor.error", str(error)[:5000])
    run.end("FAILED" if state == "FAIL" else "FINISHED", flush=False)


def _record(trial: Any) -> TrialRecord:
    value = None if trial.value is None else float(trial.value)
    run_id = trial.user_attrs.get("run_id")
    return TrialRecord(dict(trial.params), value, trial.state.name, trial.number, run_id)
