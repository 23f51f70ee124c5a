"""Frames drawn from a schema meet it, so property-based feature tests start from valid data."""

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings

from conveyor.errors import ValidationError
from conveyor.lifecycle import check
from conveyor.lifecycle.schema import ColumnSchema, Schema
from conveyor.testing.strategies import column_values, frames

SCHEMA = Schema(
    {
        "carrier": ColumnSchema("category", categories=["AA", "B6", "UA"]),
        "distance": ColumnSchema("int", min=17, max=4983),
        "temp": ColumnSchema("float", required=False, null_rate=0.2, min=-10.0, max=40.0),
        "tailnum": ColumnSchema("string", required=False, null_rate=0.01),
        "cancelled": ColumnSchema("bool"),
        "time_hour": ColumnSchema("datetime"),
    }
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames(SCHEMA, max_rows=15))
def test_every_drawn_frame_meets_the_schema_strictly(frame):
    assert list(frame.columns) == list(SCHEMA.columns)
    report = check(frame, SCHEMA)
    assert report.anomalies == [], str(report)


@settings(max_examples=30, deadline=None)
@given(frames(SCHEMA, min_rows=20, max_rows=20, columns=["temp"]))
def test_nulls_stay_within_the_rate_and_tolerance(frame):
    assert len(frame) == 20
    assert frame["temp"].isna().sum() <= int((0.2 + SCHEMA.null_rate_tolerance) * 20)


@settings(max_examples=10, deadline=None)
@given(frames(SCHEMA, columns=["temp"], nulls=False))
def test_nulls_can_be_left_out(frame):
    assert not frame["temp"].isna().any()


@given(column_values(ColumnSchema("int", min=0, max=3)))
def test_values_respect_ranges(value):
    assert 0 <= value <= 3


def test_a_feature_bug_is_found_by_drawing_frames():
    def features(frame: pd.DataFrame) -> pd.Series:
        return 1.0 / (frame["distance"] - 17)  # divides by zero at the shortest flight

    found = []

    @settings(max_examples=200, deadline=None, database=None)
    @given(frames(SCHEMA, columns=["distance"]))
    def probe(frame):
        if (features(frame).abs() == float("inf")).any():
            found.append(frame)
            raise AssertionError("inf")

    with pytest.raises(AssertionError):
        probe()
    assert found
    assert (found[-1]["distance"] == 17).any()


def test_bad_arguments_are_refused():
    with pytest.raises(ValidationError, match="nope"):
        frames(SCHEMA, columns=["nope"])
    with pytest.raises(ValidationError, match="min_rows"):
        frames(SCHEMA, min_rows=5, max_rows=2)
    with pytest.raises(ValidationError, match="categories"):
        column_values(ColumnSchema("category", categories=[]))


@settings(max_examples=10, deadline=None)
@given(
    frames(Schema({"x": ColumnSchema("float"), "n": ColumnSchema("int")}), min_rows=3, max_rows=3)
)
def test_a_schema_without_bounds_still_draws(frame):
    assert len(frame) == 3
    assert frame["x"].abs().max() <= 1e9
