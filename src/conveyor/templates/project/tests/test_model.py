"""Model code: it learns on a small sample, and its predictions hold no NaN."""

import pandas as pd
from training import FEATURES, TARGET

from conftest import feature_transform
from conveyor import lifecycle as lc
from conveyor.testing import assert_converges, assert_no_nan


def make_model(schema: lc.Schema) -> object:
    """The model training tunes, at fixed hyperparameters."""
    from lightgbm import LGBMClassifier

    estimator = LGBMClassifier(verbose=-1, n_jobs=2, random_state=0)
    return lc.make_model_pipeline(feature_transform(schema), estimator)


def test_the_model_converges(flights: pd.DataFrame, schema: lc.Schema) -> None:
    """More boosting rounds lower the training log loss."""
    assert_converges(make_model(schema), flights[[*FEATURES, TARGET]], target=TARGET)


def test_predictions_have_no_nan(flights: pd.DataFrame, schema: lc.Schema) -> None:
    """Probabilities for every flight, including those with missing weather."""
    model = make_model(schema)
    model.fit(flights[FEATURES], flights[TARGET])  # type: ignore[attr-defined]
    assert_no_nan(model.predict_proba(flights[FEATURES]), name="predictions")  # type: ignore[attr-defined]
