import numpy as np
import optuna
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from conveyor.core.entities import RunStatus
from conveyor.errors import TrainingError, ValidationError
from conveyor.lifecycle._tune import Tuned, check_search_space, tune
from conveyor.stores.backends import open_artifact_store, open_metadata_store
from conveyor.tracking.tracker import Tracker

SPACE = {
    "n_estimators": ("int", 3, 12),
    "learning_rate": ("float", 0.05, 0.3, "log"),
    "num_leaves": ("categorical", [4, 8]),
}


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return X.iloc[::2], y.iloc[::2]  # 285 rows keep each trial quick


@pytest.fixture
def tracker(tmp_path):
    t = Tracker(
        open_metadata_store(f"sqlite:///{tmp_path}/c.db"), open_artifact_store(str(tmp_path / "a"))
    )
    yield t
    t.close()
    t.runs.close()


def lgbm():
    import lightgbm

    return lightgbm.LGBMClassifier(verbose=-1, n_jobs=1)


def logistic(trial):
    c = trial.suggest_float("C", 1e-3, 10.0, log=True)
    return make_pipeline(StandardScaler(), LogisticRegression(C=c))


def test_a_search_space_dict_with_lightgbm(cancer):
    X, y = cancer
    tuned = tune(SPACE, X, y, estimator=lgbm(), n_trials=4, cv=2, seed=1)
    assert isinstance(tuned, Tuned)
    assert set(tuned.best_params) == set(SPACE)
    assert len(tuned.trials) == 4
    params, score, state = tuned.trials[0][:3]
    assert state == "COMPLETE"
    assert 0.5 < score <= 1.0
    assert set(params) == set(SPACE)
    completed = [t.score for t in tuned.trials if t.state == "COMPLETE"]
    assert tuned.best_score == max(completed)
    assert tuned.direction == "maximize"
    assert tuned.metric == "roc_auc"
    # Refitted on all the data with the best parameters and the seed.
    assert tuned.best_model.get_params()["n_estimators"] == tuned.best_params["n_estimators"]
    assert tuned.best_model.get_params()["random_state"] == 1
    assert tuned.best_model.predict(X).shape == (len(X),)


def test_the_same_seed_gives_the_same_search(cancer):
    X, y = cancer
    first = tune(logistic, X, y, n_trials=3, cv=2, seed=4)
    second = tune(logistic, X, y, n_trials=3, cv=2, seed=4)
    assert [t.params for t in first.trials] == [t.params for t in second.trials]
    assert [t.score for t in first.trials] == [t.score for t in second.trials]
    assert first.best_params == second.best_params


def test_a_regression_metric_is_minimised_on_a_held_out_fraction():
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    tuned = tune(
        {"alpha": ("float", 1e-3, 10.0, "log")},
        X,
        y,
        estimator=Ridge(),
        metric="rmse",
        n_trials=3,
        cv=0.25,
    )
    assert tuned.direction == "minimize"
    assert tuned.best_score == min(t.score for t in tuned.trials)
    assert 40 < tuned.best_score < 80


def test_trials_are_child_runs_of_the_tuning_run(cancer, tracker):
    X, y = cancer
    with tracker.start_run("tuning", name="tune") as parent:
        tuned = tune(logistic, X, y, n_trials=3, cv=2, tracker=tracker, run=parent)
    children = tracker.search_runs("tuning", filter="tags.`conveyor.kind` = 'trial'")
    assert len(children) == 3
    assert {c.parent_run_id for c in children} == {parent.id}
    by_id = {c.id: c for c in children}
    for trial in tuned.trials:
        run = by_id[trial.run_id]
        assert run.status is RunStatus.FINISHED
        assert float(run.params["C"]) == pytest.approx(trial.params["C"])
        assert run.metrics["roc_auc"] == pytest.approx(trial.score)
        assert run.tags["optuna.state"] == "COMPLETE"
        assert len(tracker.runs.metric_history(run.id, "fold.roc_auc")) == 2
    stored = tracker.get_run(parent.id)
    assert float(stored.params["best.C"]) == pytest.approx(tuned.best_params["C"])
    assert stored.metrics["best.roc_auc"] == pytest.approx(tuned.best_score)


class PruneOddTrials(optuna.pruners.BasePruner):
    def prune(self, study, trial):
        return trial.number % 2 == 1


def test_pruned_trials_stop_after_their_first_fold(cancer, tracker):
    X, y = cancer
    with tracker.start_run("tuning") as parent:
        tuned = tune(
            logistic,
            X,
            y,
            n_trials=4,
            cv=3,
            pruning=PruneOddTrials(),
            tracker=tracker,
            parent_run_id=parent.id,
        )
    assert [t.state for t in tuned.trials] == ["COMPLETE", "PRUNED", "COMPLETE", "PRUNED"]
    # A pruned trial's score is its first fold's: where it was stopped.
    assert tuned.trials[1].score is not None
    pruned = tracker.get_run(tuned.trials[1].run_id)
    assert pruned.tags["optuna.state"] == "PRUNED"
    assert len(tracker.runs.metric_history(pruned.id, "fold.roc_auc")) == 1


def test_trials_in_parallel_threads(cancer):
    X, y = cancer
    tuned = tune(SPACE, X, y, estimator=lgbm(), n_trials=4, cv=2, n_jobs=2)
    assert sorted(t.number for t in tuned.trials) == [0, 1, 2, 3]
    assert all(t.state == "COMPLETE" for t in tuned.trials)


def test_convergence_warnings_in_trials_are_recorded(cancer):
    X, y = cancer

    def slow(trial):
        trial.suggest_int("max_iter", 1, 2)
        return LogisticRegression(max_iter=1)

    tuned = tune(slow, X, y, n_trials=2, cv=2, pruning=False)
    assert any(w.startswith("ConvergenceWarning") for w in tuned.warnings)
    assert not tuned.trained.converged


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"depth": ("integer", 2, 8)}, r"search\['depth'\]: unknown kind 'integer'"),
        ({"depth": ("int", 8, 2)}, r"search\['depth'\]: needs low <= high"),
        ({"depth": ("int", 2.5, 8)}, r"search\['depth'\]: bounds must be integers"),
        ({"lr": ("float", 0.0, 1.0, "log")}, r"search\['lr'\]: .*low > 0"),
        ({"lr": ("float", 0.1, 1.0, "ln")}, r"search\['lr'\]: must be"),
        ({"leaves": ("categorical", [])}, r"search\['leaves'\]: must be \('categorical'"),
        ({"leaves": 31}, r"search\['leaves'\]: must be a tuple"),
        ({}, "search: must be a function"),
    ],
)
def test_malformed_search_spaces_name_the_key(space, message):
    with pytest.raises(ValidationError, match=message):
        check_search_space(space)


def test_bad_arguments(cancer, tracker):
    X, y = cancer
    with pytest.raises(ValidationError, match="estimator"):
        tune(SPACE, X, y)
    with pytest.raises(ValidationError, match="direction"):
        tune(logistic, X, y, direction="up")
    with pytest.raises(ValidationError, match="parent_run_id"):
        tune(logistic, X, y, tracker=tracker)
    with pytest.raises(ValidationError, match="cv"):
        tune(logistic, X, y, cv=1)
    bad = X.copy()
    bad.iloc[0, 0] = np.nan
    with pytest.raises(TrainingError, match="'mean radius' \\(1 NaN\\)"):
        tune(logistic, bad, y)


def test_when_every_trial_fails_the_first_error_is_raised(cancer):
    X, y = cancer
    with pytest.raises(ValidationError, match="'rmse' is undefined"):
        tune(logistic, X, y, metric="rmse", n_trials=2, cv=2)
