import json

import numpy as np
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from conveyor.errors import UnsupportedModelError
from conveyor.lifecycle import serialization as s
from conveyor.lifecycle._evaluate import evaluate
from conveyor.lifecycle._train import train
from conveyor.lifecycle._tune import tune
from conveyor.lifecycle._validate import validate


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return X.iloc[::2], y.iloc[::2]


class Identity(BaseEstimator, TransformerMixin):
    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return X


def test_a_trained_sklearn_model_round_trips_without_pickle(cancer):
    X, y = cancer
    trained = train(make_pipeline(StandardScaler(), LogisticRegression()), X, y, seed=3)
    data = s.dump_trained(trained)
    back = s.load_trained(data)
    assert (back.seed, back.converged, back.warnings) == (3, True, ())
    assert back.params == trained.params
    np.testing.assert_allclose(back.model.predict_proba(X), trained.model.predict_proba(X))


def test_lightgbm_and_xgboost_models_round_trip(cancer):
    import lightgbm
    import xgboost

    X, y = cancer
    for estimator in (
        lightgbm.LGBMClassifier(n_estimators=5, verbose=-1),
        xgboost.XGBClassifier(n_estimators=5),
    ):
        model = train(estimator, X, y).model
        data = s.dump_model(model)
        assert data == s.dump_model(model)  # stable bytes: one artifact per model
        back = s.load_model(data)
        np.testing.assert_allclose(back.predict_proba(X), model.predict_proba(X), rtol=1e-6)
        np.testing.assert_array_equal(back.predict(X), model.predict(X))


def test_models_outside_the_safe_libraries_are_left_to_other_serializers():
    assert s.is_safe_model(make_pipeline(StandardScaler(), LogisticRegression()))
    assert not s.is_safe_model(make_pipeline(Identity(), LogisticRegression()))
    with pytest.raises(UnsupportedModelError):
        s.dump_model(make_pipeline(Identity(), LogisticRegression()))


def test_tuned_evaluation_and_decision_round_trip(cancer):
    X, y = cancer
    tuned = tune(
        {"C": ("float", 0.01, 10.0, "log")},
        X,
        y,
        estimator=LogisticRegression(max_iter=5000),
        n_trials=2,
        cv=2,
    )
    back = s.load_tuned(s.dump_tuned(tuned))
    assert back.best_params == tuned.best_params
    assert back.trials == tuned.trials
    assert back.best_score == tuned.best_score
    assert back.trained.seed == tuned.trained.seed

    evaluation = evaluate(tuned, X, y, slices={"mean radius": [0, 15, 30]})
    assert s.load_evaluation(s.dump_evaluation(evaluation)) == evaluation

    decision = validate(tuned, X.assign(target=y), "target", champion=tuned, n_bootstrap=100)
    data = s.dump_decision(decision)
    assert json.loads(data)["passed"] is True
    assert s.load_decision(data) == decision


def test_specs_name_targets_and_unique_serializers():
    names = [spec.name for spec in s.SERIALIZERS]
    assert len(set(names) - {"conveyor.model"}) == len(names) - 3
    assert all(":" in spec.target for spec in s.SERIALIZERS)
