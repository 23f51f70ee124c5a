import logging
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from conveyor.core.pipeline import pipeline
from conveyor.core.step import step
from conveyor.errors import DataValidationError, ValidationError
from conveyor.lifecycle import (
    Prepared,
    analyze,
    extract,
    load_flights,
    make_model_pipeline,
    prepare,
    split_frame,
)
from conveyor.lifecycle.transform import UNKNOWN
from conveyor.runtime.runner import run_pipeline
from conveyor.stores.backends import open_artifact_store, open_metadata_store
from conveyor.tracking.tracker import Tracker


@pytest.fixture(scope="module")
def flights() -> pd.DataFrame:
    return load_flights([1]).sample(6000, random_state=0).reset_index(drop=True)


@pytest.fixture(scope="module")
def cancer() -> pd.DataFrame:
    return load_breast_cancer(as_frame=True).frame


def groups_frame(rows: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "patient": rng.integers(0, 40, rows),
            "x": rng.normal(size=rows),
            "label": np.tile([0, 1], rows // 2),
        }
    )


def test_flights_prepared_with_a_time_split_train_a_served_model(flights):
    _, schema = analyze(flights)
    prepared = prepare(
        flights, schema, target="late", split="time", time_column="time_hour", scale=True
    )
    assert isinstance(prepared, Prepared)
    assert prepared.train["time_hour"].max() < prepared.test["time_hour"].min()
    assert len(prepared.test) == pytest.approx(0.2 * len(flights), abs=60)
    assert "late" not in prepared.features
    assert "time_hour" not in prepared.features
    assert prepared.features[:3] == ["carrier", "origin", "dest"]
    model = make_model_pipeline(prepared.transform, LogisticRegression(max_iter=500))
    model.fit(prepared.X_train, prepared.y_train)
    assert 0.5 < model.score(prepared.X_test, prepared.y_test) <= 1
    assert prepared.report.ok


def test_a_random_split_is_seeded(cancer):
    _, schema = analyze(cancer)
    a = prepare(cancer, schema, target="target", test_size=0.25, seed=3)
    b = prepare(cancer, schema, target="target", test_size=0.25, seed=3)
    c = prepare(cancer, schema, target="target", test_size=0.25, seed=4)
    assert len(a.test) == 143
    assert len(a.train) == 426
    pd.testing.assert_frame_equal(a.test, b.test)
    assert not a.test.equals(c.test)


def test_a_stratified_split_keeps_the_class_shares(cancer):
    _, schema = analyze(cancer)
    prepared = prepare(cancer, schema, target="target", split="stratified", seed=5)
    overall = cancer["target"].mean()
    assert prepared.y_train.mean() == pytest.approx(overall, abs=0.005)
    assert prepared.y_test.mean() == pytest.approx(overall, abs=0.005)


def test_a_group_split_keeps_groups_apart():
    frame = groups_frame()
    _, schema = analyze(frame)
    prepared = prepare(frame, schema, target="label", split="group", group_column="patient")
    assert set(prepared.train["patient"]).isdisjoint(prepared.test["patient"])
    assert "patient" not in prepared.features
    assert len(prepared.train) + len(prepared.test) == len(frame)


def test_the_transform_is_fitted_on_the_training_split_only():
    frame = pd.DataFrame(
        {
            "t": np.arange(10),
            "colour": ["red", "blue"] * 4 + ["green", "green"],  # green: only the latest rows
            "y": [0, 1] * 5,
        }
    )
    _, schema = analyze(frame)
    prepared = prepare(frame, schema, target="y", split="time", time_column="t", test_size=0.2)
    assert set(prepared.test["colour"]) == {"green"}
    encoded = prepared.transform.transform(prepared.X_test)
    colour = prepared.features.index("colour")
    assert (encoded[:, colour] == UNKNOWN).all()


def test_rows_without_a_target_are_dropped(cancer):
    frame = cancer.assign(target=cancer["target"].astype("float64"))
    frame.loc[:9, "target"] = np.nan
    _, schema = analyze(frame)
    prepared = prepare(frame, schema, target="target", policy="warn")
    assert len(prepared.train) + len(prepared.test) == len(cancer) - 10
    assert not prepared.y_train.isna().any()


def test_data_breaking_the_schema_stops_prepare_with_the_column_rule_and_examples(cancer):
    _, schema = analyze(cancer)
    broken = cancer.assign(**{"mean radius": cancer["mean radius"].astype("str")})
    broken.loc[0, "mean radius"] = "n/a"
    with pytest.raises(DataValidationError) as info:
        prepare(broken, schema, target="target")
    assert (info.value.column, info.value.rule) == ("mean radius", "type_change")
    assert "mean radius: type_change (fail)" in str(info.value)
    assert "'n/a'" in str(info.value)


def test_policy_warn_logs_cleans_and_goes_on(cancer, caplog):
    _, schema = analyze(cancer)
    broken = cancer.assign(**{"mean radius": cancer["mean radius"].astype("str")})
    broken.loc[0, "mean radius"] = "n/a"
    with caplog.at_level(logging.WARNING, logger="conveyor.lifecycle._prepare"):
        prepared = prepare(broken, schema, target="target", policy="warn", seed=1)
    assert not prepared.report.ok
    assert "mean radius: type_change" in caplog.text
    both = pd.concat([prepared.train, prepared.test])
    assert both["mean radius"].dtype == np.float64  # coerced to the schema's type
    assert both["mean radius"].isna().sum() == 1


def test_a_missing_target_is_named(cancer):
    _, schema = analyze(cancer)
    with pytest.raises(ValidationError, match="'label' is not a column") as info:
        prepare(cancer, schema, target="label")
    assert info.value.field == "target"


def test_a_constant_target_is_refused(cancer):
    frame = cancer.assign(target=1)
    _, schema = analyze(frame)
    with pytest.raises(ValidationError, match=r"constant .*nothing to learn") as info:
        prepare(frame, schema, target="target")
    assert info.value.field == "target"


def test_a_split_that_empties_a_class_is_refused():
    frame = pd.DataFrame({"t": np.arange(20), "x": np.arange(20.0), "y": ["no"] * 15 + ["yes"] * 5})
    _, schema = analyze(frame)
    with pytest.raises(ValidationError, match="class 'yes' of 'y' with no rows in the training"):
        prepare(frame, schema, target="y", split="time", time_column="t", test_size=0.25)


def test_a_class_too_small_to_stratify_is_named():
    frame = pd.DataFrame({"x": np.arange(20.0), "y": ["a"] * 10 + ["b"] * 9 + ["c"]})
    _, schema = analyze(frame)
    with pytest.raises(ValidationError, match="class 'c' of 'y' has 1 row"):
        prepare(frame, schema, target="y", split="stratified")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"split": "time"}, "time_column"),
        ({"split": "group"}, "group_column"),
        ({"split": "time", "time_column": "nope"}, "time_column"),
        ({"split": "weekly"}, "split"),
        ({"policy": "ignore"}, "policy"),
        ({"test_size": 0}, "test_size"),
        ({"test_size": 1.5}, "test_size"),
        ({"features": ["label"]}, "features"),
        ({"features": ["nope"]}, "features"),
    ],
)
def test_bad_arguments_are_named(kwargs, field):
    frame = groups_frame(40)
    _, schema = analyze(frame)
    with pytest.raises(ValidationError) as info:
        prepare(frame, schema, target="label", **kwargs)
    assert info.value.field == field


def test_a_time_column_with_gaps_is_refused():
    frame = groups_frame(40).assign(t=[np.nan, *list(range(39))])
    with pytest.raises(ValidationError, match="1 missing value"):
        split_frame(frame, "label", split="time", time_column="t")


def test_regression_targets_split_without_class_checks(cancer):
    train, test = split_frame(cancer, "mean area", test_size=0.1)
    assert len(test) == 57
    assert len(train) == 512
    with pytest.raises(ValidationError, match="classification target"):
        split_frame(cancer, "mean area", split="stratified")


def test_prepared_data_round_trips_through_its_bytes(cancer):
    _, schema = analyze(cancer)
    prepared = prepare(cancer, schema, target="target", scale=True)
    back = Prepared.from_bytes(prepared.to_bytes())
    pd.testing.assert_frame_equal(back.train, prepared.train)
    pd.testing.assert_frame_equal(back.test, prepared.test)
    assert (back.target, back.features, back.report) == (
        prepared.target,
        prepared.features,
        prepared.report,
    )
    np.testing.assert_array_equal(
        back.transform.transform(back.X_test), prepared.transform.transform(prepared.X_test)
    )


# --- the data stages as one tracked pipeline ----------------------------------------


@pytest.fixture
def tracker(tmp_path) -> Iterator[Tracker]:
    t = Tracker(
        open_metadata_store(f"sqlite:///{tmp_path}/c.db"), open_artifact_store(str(tmp_path / "a"))
    )
    yield t
    t.close()
    t.runs.close()


@step
def fit_model(prepared: Prepared) -> float:
    model = make_model_pipeline(prepared.transform, HistGradientBoostingClassifier(max_iter=20))
    model.fit(prepared.X_train, prepared.y_train)
    return float(model.score(prepared.X_test, prepared.y_test))


@pipeline
def data_stages(pattern: str):
    ds = extract(pattern)
    _, schema = analyze(ds)
    prepared = prepare(ds, schema, target="late", split="time", time_column="time_hour")
    fit_model(prepared)


def test_extract_analyze_prepare_and_a_model_as_a_tracked_pipeline(tracker, tmp_path, flights):
    flights.to_parquet(tmp_path / "flights.parquet", index=False)
    result = run_pipeline(data_stages, {"pattern": str(tmp_path / "*.parquet")}, tracker=tracker)
    assert 0.5 < result.steps["fit_model"].output <= 1
    run = tracker.get_run(result.steps["prepare"].run_id)
    record = next(a for a in run.artifacts if a.path == "outputs/output.zip")
    stored = Prepared.from_bytes(tracker.artifacts.get_bytes(record.sha256))
    assert len(stored.train) + len(stored.test) == len(flights)
    assert stored.train["time_hour"].max() < stored.test["time_hour"].min()
