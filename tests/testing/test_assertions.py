"""The CI helpers users call from their own tests: each passes on good input and fails clearly."""

import math

import numpy as np
import pandas as pd
import pytest

from conveyor import fluent
from conveyor.core.pipeline import pipeline
from conveyor.core.step import step
from conveyor.errors import NotFoundError, ValidationError
from conveyor.lifecycle import analyze
from conveyor.lifecycle.schema import ColumnSchema, Schema
from conveyor.testing.assertions import (
    assert_converges,
    assert_matches_schema,
    assert_no_nan,
    assert_pipeline_smoke,
    recording,
    temporary_store,
)

# -- assert_no_nan -------------------------------------------------------------


def test_no_nan_passes_clean_features_predictions_and_losses():
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"], "c": [True, False]})
    assert_no_nan(frame, name="features")
    assert_no_nan(np.array([[0.1, 0.9], [0.4, 0.6]]), name="predictions")
    assert_no_nan(0.25, name="loss")
    assert_no_nan({"train": [0.5, 0.4], "valid": 0.45}, name="losses")
    assert_no_nan(np.array([1, 2, 3]))  # ints hold no NaN


def test_no_nan_names_the_column_and_row_of_the_first_bad_value():
    frame = pd.DataFrame(
        {"temp": [1.0, 2.0, 3.0, np.nan], "wind": [0.0, np.inf, 1.0, np.nan], "ok": [1, 2, 3, 4]},
        index=[10, 11, 12, 13],
    )
    with pytest.raises(AssertionError) as caught:
        assert_no_nan(frame, name="features")
    text = str(caught.value)
    assert "features: column 'wind' has 2 NaN/inf value(s) of 4" in text
    assert "the first at row 1 (index 11): inf" in text
    assert "also in 'temp' (1)" in text


def test_no_nan_counts_missing_text_and_checks_only_chosen_columns():
    frame = pd.DataFrame({"carrier": ["UA", None], "x": [1.0, np.nan]})
    with pytest.raises(AssertionError, match="column 'carrier' has 1 NaN/inf value"):
        assert_no_nan(frame, columns=["carrier"])
    assert_no_nan(frame.dropna(subset=["x"]), columns=["x"])
    with pytest.raises(ValidationError, match="columns"):
        assert_no_nan(frame, columns=["nope"])


def test_no_nan_finds_the_row_and_column_in_an_array_and_names_a_bad_loss():
    predictions = np.array([[0.1, 0.9], [0.2, np.nan], [np.nan, 0.5]])
    with pytest.raises(
        AssertionError,
        match=r"predictions: 2 NaN/inf value\(s\) of 6; the first at row 1, column 1",
    ):
        assert_no_nan(predictions, name="predictions")
    with pytest.raises(AssertionError, match="loss is nan"):
        assert_no_nan(math.nan, name="loss")
    with pytest.raises(AssertionError, match=r"losses\['valid'\]: 1 NaN/inf"):
        assert_no_nan({"train": [0.5], "valid": [0.4, math.inf]}, name="losses")
    with pytest.raises(AssertionError, match="row 0"):
        assert_no_nan(pd.Series([np.nan, 1.0], name="p"), name="scores")


# -- assert_converges ------------------------------------------------------------


@pytest.fixture(scope="module")
def cancer() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    return data.frame.rename(columns={"target": "label"})


def test_a_boosted_model_converges_with_more_rounds(cancer):
    from lightgbm import LGBMClassifier

    result = assert_converges(
        LGBMClassifier(verbose=-1, n_jobs=1, random_state=0), cancer, target="label"
    )
    assert result.metric == "log_loss"
    assert result.budgets == ["n_estimators=2", "n_estimators=40"]
    assert result.values[1] < result.values[0]
    assert result.improvement > 0


def test_the_budget_is_found_inside_a_pipeline_and_a_custom_metric_is_used(cancer):
    from sklearn.linear_model import SGDRegressor
    from sklearn.metrics import mean_absolute_error
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), SGDRegressor(random_state=0, tol=None))
    result = assert_converges(
        model, cancer, target="label", budgets=(1, 20), metric=mean_absolute_error
    )
    assert result.budgets[0] == "sgdregressor__max_iter=1"
    assert result.metric == "mean_absolute_error"


def test_a_model_that_learns_too_little_fails_with_the_losses(cancer):
    from lightgbm import LGBMClassifier

    slow = LGBMClassifier(verbose=-1, n_jobs=1, learning_rate=0.001, random_state=0)
    with pytest.raises(AssertionError) as caught:
        assert_converges(slow, cancer, target="label", budgets=(2, 5), min_improvement=0.1)
    text = str(caught.value)
    assert text.startswith("did not converge: log_loss: 0.6")
    assert "(n_estimators=2) -> " in text
    assert "(n_estimators=5); expected log_loss to fall by more than 0.1" in text


def test_a_recorded_curve_must_fall_and_be_finite():
    assert assert_converges(lambda data: [0.9, 0.7, 0.5], None).improvement == pytest.approx(0.4)
    with pytest.raises(AssertionError, match=r"expected loss to fall by more than 0\.5"):
        assert_converges(lambda data: [0.9, 0.7, 0.5], None, min_improvement=0.5)
    with pytest.raises(AssertionError, match="loss is nan at point 1"):
        assert_converges(lambda data: [0.9, math.nan, 0.5], None)
    assert assert_converges(lambda data: [0.6, 0.8], None, greater_is_better=True).improvement > 0


def test_converges_refuses_what_it_cannot_use(cancer):
    from sklearn.linear_model import LinearRegression

    with pytest.raises(ValidationError, match="no hyperparameter n_estimators or max_iter"):
        assert_converges(LinearRegression(), cancer, target="label")
    with pytest.raises(ValidationError, match="target"):
        assert_converges(LinearRegression(), cancer, budget="fit_intercept")
    with pytest.raises(ValidationError, match="budgets"):
        assert_converges(LinearRegression(), cancer, target="label", budgets=(5, 2))
    with pytest.raises(ValidationError, match="training curve as numbers"):
        assert_converges(lambda data: "falls", None)
    with pytest.raises(ValidationError, match="trainer"):
        assert_converges(42, None)


# -- assert_matches_schema -------------------------------------------------------


SCHEMA = Schema(
    {
        "carrier": ColumnSchema("category", categories=["AA", "UA"]),
        "distance": ColumnSchema("int", min=0, max=5000),
        "temp": ColumnSchema("float", required=False, null_rate=0.5),
    }
)


def test_data_that_meets_its_schema_passes_and_warnings_fail_only_when_strict(tmp_path):
    good = pd.DataFrame({"carrier": ["AA", "UA"], "distance": [100, 2000], "temp": [1.0, None]})
    assert assert_matches_schema(good, SCHEMA).ok
    path = tmp_path / "schema.yaml"
    SCHEMA.save(path)
    drifted = good.assign(carrier=["AA", "DL"])
    report = assert_matches_schema(drifted, path)  # an unseen category only warns
    assert [a.rule for a in report.warnings] == ["unseen_category"]
    with pytest.raises(AssertionError, match="carrier: unseen_category"):
        assert_matches_schema(drifted, path, strict=True)


def test_broken_data_fails_naming_the_column_and_rule():
    bad = pd.DataFrame({"carrier": ["AA", "UA"], "distance": [None, 3.5], "temp": [1.0, 2.0]})
    with pytest.raises(AssertionError) as caught:
        assert_matches_schema(bad, SCHEMA)
    assert "distance: required_nulls (fail)" in str(caught.value)
    with pytest.raises(ValidationError, match="no such schema file"):
        assert_matches_schema(bad, "missing.yaml")


def test_the_schema_analyze_infers_is_a_contract_its_own_data_meets():
    frame = pd.DataFrame({"x": [1, 2, 3], "kind": ["a", "b", "a"]})
    _, schema = analyze(frame)
    assert_matches_schema(frame, schema, strict=True)
    with pytest.raises(AssertionError, match="x: missing_column"):
        assert_matches_schema(frame[["kind"]], schema)


# -- assert_pipeline_smoke and temporary_store -------------------------------------


@step
def load(data: str) -> pd.DataFrame:
    return pd.read_parquet(data)


@step
def fit(frame: pd.DataFrame, fail: bool = False) -> dict:
    if fail:
        raise ValueError("the model exploded")
    return {"rows": len(frame), "mean": float(frame["x"].mean())}


@pipeline
def tiny(data: str = "missing.parquet", fail: bool = False):
    fit(load(data), fail=fail)


def test_a_pipeline_runs_on_a_sample_in_a_temporary_store(tmp_path):
    frame = pd.DataFrame({"x": np.arange(1000.0)})
    result = assert_pipeline_smoke(tiny, frame, sample=100, store=tmp_path / "smoke")
    assert result.outputs["fit"]["rows"] == 100
    assert (tmp_path / "smoke" / "store" / "conveyor.db").is_file()
    frame.to_parquet(tmp_path / "part-1.parquet")
    result = assert_pipeline_smoke(tiny, str(tmp_path / "part-*.parquet"), sample=None)
    assert result.outputs["fit"]["rows"] == 1000


def test_a_failing_step_fails_the_smoke_test_naming_it():
    frame = pd.DataFrame({"x": [1.0, 2.0]})
    with pytest.raises(AssertionError, match="fit: ValueError: the model exploded"):
        assert_pipeline_smoke(tiny, frame, params={"fail": True})
    with pytest.raises(ValidationError, match="no Parquet file matches"):
        assert_pipeline_smoke(tiny, "nowhere/*.parquet")
    with pytest.raises(ValidationError, match="data"):
        assert_pipeline_smoke(tiny, [1, 2, 3])


def test_temporary_store_restores_the_stores_before_it(tmp_path):
    before = fluent.configure(
        metadata_uri=f"sqlite:///{tmp_path / 'mine.db'}", artifact_uri=str(tmp_path / "mine")
    )
    try:
        with temporary_store(tmp_path / "scratch") as inside:
            assert inside.metadata_uri == f"sqlite:///{tmp_path / 'scratch' / 'conveyor.db'}"
            with fluent.start_run("scratch-only"):
                fluent.log_metric("m", 1.0)
            assert len(fluent.search_runs("scratch-only")) == 1
        assert fluent._settings.metadata_uri == before.metadata_uri
        with pytest.raises(NotFoundError):  # the run stayed in the scratch store
            fluent.search_runs("scratch-only")
    finally:
        fluent.configure()


def test_recording_names_the_helpers_called():
    with recording() as calls:
        assert_no_nan([1.0])
        assert_converges(lambda data: [1.0, 0.5], None)
    assert calls == ["no_nan", "converges"]
    assert_no_nan([1.0])  # outside a recording nothing is kept
    assert calls == ["no_nan", "converges"]
