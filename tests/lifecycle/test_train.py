import math

import numpy as np
import pytest
import scipy.sparse
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from conveyor.core.step import Step
from conveyor.errors import TrainingError, ValidationError
from conveyor.lifecycle._train import Trained, train
from conveyor.stores.backends import open_artifact_store, open_metadata_store
from conveyor.tracking.tracker import Tracker


@pytest.fixture(scope="module")
def cancer():
    return load_breast_cancer(return_X_y=True, as_frame=True)


@pytest.fixture(scope="module")
def diabetes():
    return load_diabetes(return_X_y=True, as_frame=True)


@pytest.fixture
def tracker(tmp_path):
    t = Tracker(
        open_metadata_store(f"sqlite:///{tmp_path}/c.db"), open_artifact_store(str(tmp_path / "a"))
    )
    yield t
    t.close()
    t.runs.close()


class MeanModel:
    """A `Trainer` that is not a scikit-learn estimator."""

    def __init__(self, losses=(3.0, 2.0, 1.0), answer=None):
        self.loss_history = list(losses)
        self.answer = answer

    def fit(self, X, y):
        self.mean_ = float(np.mean(y))
        return self

    def predict(self, X):
        value = self.mean_ if self.answer is None else self.answer
        return np.full(len(X), value)


def test_train_is_a_step_and_a_plain_function(cancer):
    X, y = cancer
    assert isinstance(train, Step)
    trained = train(make_pipeline(StandardScaler(), LogisticRegression()), X, y)
    assert isinstance(trained, Trained)
    assert trained.converged
    assert trained.warnings == ()
    assert trained.fit_seconds > 0
    assert trained.model.score(X, y) > 0.95


def test_the_estimator_is_cloned_and_seeded(cancer):
    X, y = cancer
    forest = RandomForestClassifier(n_estimators=5)
    trained = train(forest, X, y, seed=7)
    assert trained.model is not forest
    assert forest.random_state is None
    assert not hasattr(forest, "estimators_")
    assert trained.model.random_state == 7
    assert trained.seed == 7
    assert trained.params["random_state"] == 7
    again = train(forest, X, y, seed=7)
    np.testing.assert_array_equal(again.model.predict_proba(X), trained.model.predict_proba(X))


def test_a_random_state_set_by_the_user_is_kept(cancer):
    X, y = cancer
    pipeline = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=3))
    trained = train(pipeline, X, y, seed=3)
    assert trained.model.get_params()["randomforestclassifier__random_state"] == 3
    kept = train(RandomForestClassifier(n_estimators=3, random_state=11), X, y, seed=3)
    assert kept.model.random_state == 11


def test_nan_and_inf_in_features_name_columns_and_counts(cancer):
    X, y = cancer
    bad = X.copy()
    bad.loc[bad.index[:3], "mean radius"] = np.nan
    bad.loc[bad.index[5], "worst area"] = np.inf
    with pytest.raises(TrainingError) as info:
        train(LogisticRegression(), bad, y)
    message = str(info.value)
    assert "'mean radius' (3 NaN)" in message
    assert "'worst area' (1 infinite)" in message
    assert info.value.field == "X"


def test_allow_missing_lets_nan_through_but_never_inf(cancer):
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = cancer
    holes = X.copy()
    holes.iloc[:10, 0] = np.nan
    trained = train(HistGradientBoostingClassifier(max_iter=5), holes, y, allow_missing=True)
    assert trained.converged
    holes.iloc[20, 1] = -np.inf
    with pytest.raises(TrainingError, match="1 infinite"):
        train(HistGradientBoostingClassifier(max_iter=5), holes, y, allow_missing=True)


def test_nan_in_arrays_sparse_matrices_targets_and_weights():
    X = np.ones((6, 3))
    X[2, 1] = np.nan
    with pytest.raises(TrainingError, match=r"'column 1' \(1 NaN\)"):
        train(Ridge(), X, np.arange(6.0))
    sparse = scipy.sparse.csr_matrix(np.eye(6, 3))
    sparse.data[0] = np.inf
    with pytest.raises(TrainingError, match="'column 0' \\(1 infinite\\)"):
        train(Ridge(), sparse, np.arange(6.0))
    with pytest.raises(TrainingError, match="y has 1 NaN of 6 rows"):
        train(Ridge(), np.ones((6, 2)), [1, 2, np.nan, 4, 5, 6])
    with pytest.raises(TrainingError, match="sample_weight"):
        train(Ridge(), np.ones((6, 2)), np.arange(6.0), sample_weight=[1, 1, 1, np.inf, 1, 1])


def test_a_missing_label_is_refused_with_the_target_name(cancer):
    X, y = cancer
    labels = y.map({0: "benign", 1: "malignant"}).astype(object)
    labels.iloc[4] = None
    with pytest.raises(TrainingError, match=r"y \('target'\) has 1 NaN"):
        train(LogisticRegression(), X, labels)


def test_lengths_must_match(cancer):
    X, y = cancer
    with pytest.raises(ValidationError, match="y: has 568 rows but X has 569"):
        train(LogisticRegression(), X, y.iloc[1:])


def test_a_convergence_warning_is_recorded_not_raised(cancer):
    X, y = cancer
    trained = train(LogisticRegression(max_iter=5), X, y)
    assert not trained.converged
    assert len(trained.warnings) == 1
    assert trained.warnings[0].startswith("ConvergenceWarning: lbfgs failed to converge")
    with pytest.raises(TrainingError, match="did not converge: ConvergenceWarning"):
        train(LogisticRegression(max_iter=5), X, y, strict=True)


def test_warnings_repeat_in_every_fit(cancer):
    # A warning shown once per location must still be seen by the second fit.
    X, y = cancer
    first = train(LogisticRegression(max_iter=5), X, y)
    second = train(LogisticRegression(max_iter=5), X, y)
    assert not first.converged
    assert not second.converged


def test_a_trainer_is_fitted_as_given_and_its_loss_checked(diabetes):
    X, y = diabetes
    model = MeanModel()
    trained = train(model, X, y)
    assert trained.model is model
    assert math.isclose(model.mean_, float(y.mean()))
    with pytest.raises(TrainingError, match="'loss_history' became nan at iteration 1"):
        train(MeanModel(losses=[1.0, float("nan"), 0.5]), X, y)


def test_nan_predictions_are_refused(diabetes):
    X, y = diabetes
    with pytest.raises(TrainingError, match="predictions are NaN or infinite for 442 of 442"):
        train(MeanModel(answer=float("nan")), X, y)


def test_not_a_model_is_a_validation_error(diabetes):
    X, y = diabetes
    with pytest.raises(ValidationError, match="has no fit"):
        train(object(), X, y)


def test_lightgbm_eval_curves_are_checked_and_logged(cancer, tracker):
    import lightgbm

    X, y = cancer
    model = lightgbm.LGBMClassifier(n_estimators=8, verbose=-1)
    with tracker.start_run("lifecycle") as run:
        held = {"eval_X": X.iloc[:100], "eval_y": y.iloc[:100]}
        trained = train(model, X, y, seed=5, fit_params=held, run=run)
    assert trained.model.get_params()["random_state"] == 5
    stored = tracker.get_run(run.id)
    assert stored.params["estimator"] == "lightgbm.sklearn.LGBMClassifier"
    assert stored.params["seed"] == "5"
    assert stored.params["n_estimators"] == "8"
    assert stored.tags["conveyor.converged"] == "true"
    assert "fit_seconds" in stored.metrics
    history = tracker.runs.metric_history(run.id, "train.valid_0.binary_logloss")
    assert [m.step for m in history] == list(range(8))


def test_xgboost_and_sample_weights_through_a_pipeline(cancer):
    import xgboost

    X, y = cancer
    trained = train(xgboost.XGBClassifier(n_estimators=5), X, y, seed=2)
    assert trained.model.get_params()["random_state"] == 2
    weights = np.where(y == 1, 1.0, 3.0)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression())
    weighted = train(pipeline, X, y, sample_weight=weights)
    plain = train(pipeline, X, y)
    assert weighted.model.predict_proba(X)[:, 1].mean() < plain.model.predict_proba(X)[:, 1].mean()


def test_regression(diabetes):
    X, y = diabetes
    trained = train(Ridge(alpha=0.1), X, y)
    assert trained.params["alpha"] == 0.1
    assert trained.model.score(X, y) > 0.4
